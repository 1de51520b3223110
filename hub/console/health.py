"""Live health of the model deployments, for the operator's overview.

One probe per service, all at once, each bounded by ``PROBE_TIMEOUT``: our inference service answers
``GET /health`` with the models it serves and their running / waiting sequences; an external
OpenAI-compatible API is asked ``GET /models`` with its key. The page shows the result when it renders
and ``console.js`` polls ``/console/health.json`` to keep the badges current.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import httpx

from accounts.models import Deployment

PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Health:
    state: str  # "up", "down", "missing" (the service is up but does not serve the model) or "disabled"
    detail: str
    latency_ms: int | None = None
    running: int | None = None
    waiting: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _probe(client: httpx.Client, url: str, api_key: str) -> tuple[int | None, dict | None, str]:
    """(latency in ms, the JSON answer, an error text). ``client`` is made before the clock starts: making one
    loads the certificate authorities (~22 ms), which a latency of its own would have counted."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    started = time.monotonic()
    try:
        response = client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        return None, None, f"unreachable: {exc.__class__.__name__}"
    latency = int((time.monotonic() - started) * 1000)
    if response.status_code != 200:
        return latency, None, f"answered {response.status_code}"
    try:
        return latency, response.json(), ""
    except ValueError:
        return latency, None, "answered something other than JSON"


def _probe_url(deployment: Deployment) -> str:
    base = deployment.base_url.rstrip("/")
    if deployment.external:
        return f"{base}/models"
    return f"{base.removesuffix('/v1')}/health"  # our service: /health beside /v1


def _judge(deployment: Deployment, latency: int | None, answer: dict | None, error: str) -> Health:
    if answer is None:
        return Health("down", error, latency)
    name = deployment.upstream_model or deployment.model_id
    if deployment.external:
        served = {m.get("id") for m in answer.get("data") or [] if isinstance(m, dict)}
        if served and name not in served:
            return Health("missing", f"the API does not list {name}", latency)
        return Health("up", "models listed", latency)
    model = (answer.get("models") or {}).get(name)
    if not isinstance(model, dict):
        return Health("missing", f"the service does not serve {name}", latency)
    running, waiting = model.get("running"), model.get("waiting")
    return Health("up", f"{running} running, {waiting} waiting", latency, running, waiting)


def check(deployments: list[Deployment]) -> dict[int, Health]:
    """Each deployment's health, probing every distinct service once, in parallel."""
    out: dict[int, Health] = {d.pk: Health("disabled", "disabled by an operator") for d in deployments if not d.enabled}
    live = [d for d in deployments if d.enabled]
    probes = {(_probe_url(d), d.api_key) for d in live}
    if probes:
        with (
            httpx.Client(timeout=PROBE_TIMEOUT, follow_redirects=False) as client,
            ThreadPoolExecutor(max_workers=min(16, len(probes))) as pool,
        ):
            answers = dict(zip(probes, pool.map(lambda p: _probe(client, *p), probes), strict=True))
        for d in live:
            out[d.pk] = _judge(d, *answers[(_probe_url(d), d.api_key)])
    return out
