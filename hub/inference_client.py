"""Talking to an inference service from the control plane: readiness and its model catalog."""

from __future__ import annotations

import time

import httpx


class InferenceUnavailable(RuntimeError):
    pass


def root_of(base_url: str) -> str:
    """``http://host:8100/v1`` -> ``http://host:8100`` (health lives at the root)."""
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def wait_ready(base_url: str, timeout: float, is_alive=lambda: True, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:  # one for every poll: each new one loads the CA bundle (~22 ms of CPU)
        while time.monotonic() < deadline:
            if not is_alive():
                raise InferenceUnavailable("the inference service exited while starting")
            try:
                if client.get(f"{root_of(base_url)}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(poll)
    raise InferenceUnavailable(f"no answer from {base_url} within {timeout:.0f}s")


def load_times(base_url: str) -> dict[str, float]:
    """How long the service took to load each model (its ``/health``); empty if it does not say."""
    try:
        models = httpx.get(f"{root_of(base_url)}/health", timeout=5).json().get("models", {})
        return {name: float(m["load_seconds"]) for name, m in models.items() if "load_seconds" in m}
    except (httpx.HTTPError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def model_cards(base_url: str, api_key: str = "") -> list[dict]:
    """The service's ``/v1/models`` cards; ``api_key``: its shared secret (INFERENCE_API_KEY), if it has one."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/models", headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()["data"]
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        raise InferenceUnavailable(f"cannot read {base_url}/models: {exc}") from None
