"""`make run`'s server command on the embedded default: first start sets up a demo and prints
the key once; the printed snippet's values work with the OpenAI SDK; a restart prints no key."""

import os
import re

import pytest
from openai import OpenAI

from tests.conftest import start_hub, stop_hub

pytestmark = pytest.mark.live


def test_first_start_prints_a_working_key_and_snippet(tmp_path):
    # The embedded default: no database or Redis URL, a fresh data directory.
    env = {"HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_REDIS_URL": "", "HUB_ADMIN_PASSWORD": ""}
    saved = {k: os.environ.pop(k) for k in ("HUB_DATABASE_URL", "HUB_REDIS_URL") if k in os.environ}
    try:
        process, url = start_hub(env, timeout=120)
        try:
            client_check(url, process)
        finally:
            first_output = stop_hub(process)
        process, url = start_hub(env, timeout=120)
        second_output = stop_hub(process)
    finally:
        os.environ.update(saved)
    secret = re.search(r"api_key\s+(sk-hub-\S+)", first_output).group(1)
    assert f'api_key="{secret}"' in first_output  # the snippet carries the key
    assert "base_url     http://127.0.0.1:" in first_output and "password" in first_output
    assert "sk-hub-" not in second_output  # shown once, never again
    assert (tmp_path / "db.sqlite3").exists()
    assert "Traceback" not in first_output + second_output


def client_check(url, process):
    from tests.conftest import hub_output

    output = hub_output(process)
    secret = re.search(r"api_key\s+(sk-hub-\S+)", output).group(1)
    base_url = re.search(r"base_url\s+(\S+)", output).group(1)
    assert base_url == f"{url}/v1"
    client = OpenAI(base_url=base_url, api_key=secret, max_retries=0)
    ids = [m.id for m in client.models.list().data]
    assert ids == ["all-minilm-l6-v2", "gemma-3-270m", "smollm2-135m-instruct"]
    assert client.models.retrieve("smollm2-135m-instruct").meta_data["max_sequence_length"] == 8192
