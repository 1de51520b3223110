"""`make run`'s command (`manage.py serve --with-inference`) on the embedded default: it starts the
inference service, syncs the catalog from the loaded models, sets up a demo and prints the key
once; the printed snippet's values work with the OpenAI SDK; a restart prints no key."""

import os
import re
import time

import httpx
import pytest
from openai import OpenAI

from tests.conftest import free_port, start_hub, stop_hub

pytestmark = pytest.mark.live


def test_first_start_prints_a_working_key_and_snippet(tmp_path):
    # The embedded default: no database or Redis URL, a fresh data directory.
    inference_url = f"http://127.0.0.1:{free_port()}/v1"
    env = {"HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_REDIS_URL": "", "HUB_ADMIN_PASSWORD": ""}
    env["HUB_INFERENCE_URL"] = inference_url
    saved = {k: os.environ.pop(k) for k in ("HUB_DATABASE_URL", "HUB_REDIS_URL") if k in os.environ}
    try:
        process, url = start_hub(env, "--with-inference", timeout=600)
        try:
            client_check(url, process, inference_url)
        finally:
            first_output = stop_hub(process)
        assert inference_stops(inference_url), "the inference service outlived the hub"
        process, url = start_hub(env, timeout=120)  # a restart (without inference this time)
        second_output = stop_hub(process)
    finally:
        os.environ.update(saved)
    secret = re.search(r"api_key\s+(sk-hub-\S+)", first_output).group(1)
    assert f'api_key="{secret}"' in first_output  # the snippet carries the key
    assert "base_url     http://127.0.0.1:" in first_output and "password" in first_output
    assert "sk-hub-" not in second_output  # shown once, never again
    assert (tmp_path / "db.sqlite3").exists()
    assert "Traceback" not in first_output + second_output


def inference_stops(inference_url: str, within: float = 60) -> bool:
    """The child service gets SIGTERM when the hub dies; its graceful shutdown takes a moment."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            httpx.get(inference_url.removesuffix("/v1") + "/health", timeout=2)
        except httpx.HTTPError:
            return True
        time.sleep(0.25)
    return False


def client_check(url, process, inference_url):
    from tests.conftest import hub_output

    output = hub_output(process)
    secret = re.search(r"api_key\s+(sk-hub-\S+)", output).group(1)
    base_url = re.search(r"base_url\s+(\S+)", output).group(1)
    assert base_url == f"{url}/v1"
    client = OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    hub_models = {m.id: m.meta_data for m in client.models.list().data}
    assert sorted(hub_models) == ["all-minilm-l6-v2", "gemma-3-270m", "smollm2-135m-instruct"]
    # the catalog's limits are the ones the inference service measured on the loaded models
    served = {m["id"]: m["meta_data"] for m in httpx.get(f"{inference_url}/models").json()["data"]}
    assert hub_models == served
    assert served["all-minilm-l6-v2"]["hidden_size"] == 384
