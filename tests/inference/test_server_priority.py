"""vLLM's ``priority`` over HTTP, on SmolLM2 as ``make run`` serves it, with room for one sequence at a time: a
request of a lower priority waits behind one of a higher priority that arrived after it, and a higher one takes the
running request's place (preempted, then recomputed to the same answer). How the hub sets ``priority`` from
OpenAI's ``service_tier``: ``tests/e2e/test_service_tiers.py``."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from openai import OpenAI

from tests.support.inference import inference_service

pytestmark = [pytest.mark.real_model, pytest.mark.live]

CHAT = "smollm2"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    config = tmp_path_factory.mktemp("priority") / "service.toml"
    config.write_text(f'[engine]\nmax_num_seqs = 1\n\n[[models]]\nid = "{CHAT}"\nsource = "packaged:smollm2"\n'
                      'kind = "chat"\n')  # fmt: skip
    with inference_service("--config", str(config)) as url:
        yield url


def _waiting(url: str) -> int:
    return httpx.get(f"{url}/health", timeout=10).json()["models"][CHAT]["waiting"]


def _until(check, what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _ask(client: OpenAI, text: str, priority: int, max_tokens: int) -> str:
    response = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0,
        extra_body={"priority": priority, "ignore_eos": True},
    )  # fmt: skip
    return response.choices[0].message.content


def test_a_later_request_of_a_higher_priority_runs_first(service):
    client = OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)
    finished: list[str] = []
    first = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Tell me a story."}], max_tokens=48, temperature=0,
        stream=True, extra_body={"ignore_eos": True},
    )  # fmt: skip
    next(iter(first))  # running: the only slot is taken

    def ask(name: str, priority: int) -> None:
        _ask(client, f"Say {name}.", priority, 4)
        finished.append(name)

    low = threading.Thread(target=ask, args=("low", 5))
    low.start()
    _until(lambda: _waiting(service) == 1, "the low-priority request never queued")
    high = threading.Thread(target=ask, args=("high", 0))
    high.start()
    _until(lambda: _waiting(service) == 2, "the second request never queued")
    for _ in first:  # the first request ends; the slot goes to the later request of the higher priority
        pass
    low.join(60)
    high.join(60)
    assert finished == ["high", "low"]


def test_a_higher_priority_takes_the_running_requests_place_and_both_answers_stay_exact(service):
    client = OpenAI(base_url=f"{service}/v1", api_key="unused", max_retries=0)
    alone = {name: _ask(client, f"Count from {name}.", 0, 96) for name in ("one", "ten")}
    answers: dict[str, str] = {}
    finished: list[str] = []

    def ask(name: str, priority: int) -> None:
        answers[name] = _ask(client, f"Count from {name}.", priority, 96)
        finished.append(name)

    batch = threading.Thread(target=ask, args=("one", 2))
    batch.start()
    _until(lambda: httpx.get(f"{service}/health", timeout=10).json()["models"][CHAT]["running"] == 1, "not running")
    interactive = threading.Thread(target=ask, args=("ten", 0))
    interactive.start()
    batch.join(120)
    interactive.join(120)
    assert finished == ["ten", "one"]  # the running request was preempted for the more urgent one
    assert answers == alone  # and recomputed to the same tokens


def test_a_bad_priority_is_an_openai_error(service):
    for priority in ("high", 1.5, 10**7):
        body = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "priority": priority}
        response = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "priority"
