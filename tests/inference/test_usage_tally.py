"""What the inference service tallies under a hub call's ``x-usage-id`` (``inference/server/tally.py``): the same
counts as the usage it answers, an aborted stream's tokens up to its abort, several calls of one id added up, and
``GET /v1/requests/{usage_id}``: what the hub's reaper meters a dead hub process's requests from."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from inference.env import ConfigError
from inference.server.journal import Journal, _flush
from inference.server.tally import Ledger
from tests.support.inference import inference_service, model_flags

CHAT, EMBED = "smollm2", "minilm"
MESSAGES = [{"role": "user", "content": "Tell me a long story about a lighthouse."}]


def test_a_ledger_keeps_the_newest_entries_and_forgets_ended_ones_after_its_time():
    ledger = Ledger(entries=2, seconds=3600)
    for name in ("a", "b", "c"):
        ledger.close(ledger.open(name))
    assert ledger.get("a") is None and ledger.get("b") is not None and len(ledger) == 2

    ledger = Ledger(entries=10, seconds=0.0)
    running = ledger.open("running")
    ledger.close(ledger.open("ended"))
    assert ledger.get("ended") is None  # past its time
    assert ledger.get("running") is running and running.answer()["running"]  # kept while it runs
    ledger.close(running)
    assert ledger.get("running") is None


def test_a_tally_adds_prompts_and_keeps_each_sequences_running_total():
    tally = Ledger().open("u")
    tally.prompt(10)
    tally.prompt(7, audio_seconds=1.25)
    tally.output("run-1", 0, 3, cached=4)
    tally.output("run-1", 0, 5, cached=4)  # a running total replaces the last
    tally.output("run-1", 1, 2)
    tally.output("run-2", 0, 1)
    assert tally.answer() == {
        "id": "u",
        "object": "usage_tally",
        "prompt_tokens": 17,
        "completion_tokens": 8,
        "total_tokens": 25,
        "cached_tokens": 4,
        "audio_seconds": 1.25,
        "running": True,
    }


def test_the_journal_writes_what_ran_or_ended_and_a_new_ledger_reads_it_back_as_ended(tmp_path):
    """``server.tally_path``: the calls running or ended since the last write are written; a ledger started on the
    file (a service started again) answers them as ended, with their counts; those past the ledger's time are not
    read back."""
    ledger, journal = Ledger(journaled=True), Journal(tmp_path / "tally.sqlite3")
    running, ended, quiet = ledger.open("running"), ledger.open("ended"), ledger.open("quiet")
    running.prompt(12)
    running.output("run", 0, 5, cached=4)
    ended.prompt(3, audio_seconds=0.5)
    ledger.close(ended)
    ledger.close(quiet)
    asyncio.run(_flush(ledger, journal))  # what ``keep`` does every second: all three
    assert {t.usage_id for t in ledger.changed()} == {"running"}  # the ended ones were written once
    running.output("run", 0, 9, cached=4)
    asyncio.run(_flush(ledger, journal))
    journal.close()

    restarted = Ledger()
    assert Journal(tmp_path / "tally.sqlite3").load(restarted) == 3
    assert restarted.get("running").answer() == {
        "id": "running", "object": "usage_tally", "prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21,
        "cached_tokens": 4, "audio_seconds": 0.0, "running": False,
    }  # fmt: skip
    assert restarted.get("ended").answer()["audio_seconds"] == 0.5 and restarted.changed() == []
    assert Journal(tmp_path / "tally.sqlite3", seconds=0.0).load(Ledger()) == 0  # past the ledger's time
    unjournaled = Ledger()  # a service without a journal keeps nothing for one
    unjournaled.close(unjournaled.open("u"))
    assert unjournaled.changed() == []


def test_a_journal_where_none_can_be_kept_is_a_config_error_naming_it(tmp_path):
    (tmp_path / "file").write_text("")  # a file where its directory should be
    with pytest.raises(ConfigError, match="server.tally_path .*file/tally.sqlite3: cannot keep the tally journal"):
        Journal(tmp_path / "file" / "tally.sqlite3")


def test_a_journal_that_cannot_be_written_leaves_the_ledger_answering(tmp_path, caplog):
    ledger, journal = Ledger(journaled=True), Journal(tmp_path / "tally.sqlite3")
    ledger.open("u").prompt(4)
    journal.close()  # every write now fails, as on a full or vanished disk
    asyncio.run(_flush(ledger, journal))
    assert "could not write the tally journal" in caplog.text and ledger.get("u").answer()["prompt_tokens"] == 4


@pytest.fixture(scope="module")
def service():
    with inference_service(*model_flags(f"{CHAT}=packaged:smollm2:chat", f"{EMBED}=packaged:minilm:embedding")) as url:
        yield url


def _tally(service: str, usage_id: str, ended: bool = True) -> httpx.Response:
    """The tally, once its calls ended (the service notices a client gone within a step or so)."""
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(f"{service}/v1/requests/{usage_id}", timeout=10)
        if not ended or answer.status_code != 200 or not answer.json()["running"] or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def _counts(usage: dict) -> tuple[int, int, int]:
    return usage["prompt_tokens"], usage["completion_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


@pytest.mark.real_model
@pytest.mark.live
def test_an_answer_and_a_stream_are_tallied_as_their_usage(service):
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 12, "n": 2, "temperature": 1, "seed": 3}
    answer = httpx.post(f"{service}/v1/chat/completions", json=body, headers={"x-usage-id": "whole"}, timeout=120)
    tally = _tally(service, "whole").json()
    assert tally["running"] is False
    assert (tally["prompt_tokens"], tally["completion_tokens"], tally["cached_tokens"]) == _counts(
        answer.json()["usage"]
    )

    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{service}/v1/chat/completions", json=streamed, headers={"x-usage-id": "stream"},
                      timeout=120) as response:  # fmt: skip
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    usage = httpx.Response(200, content=lines[-1][6:]).json()["usage"]
    tally = _tally(service, "stream").json()
    assert (tally["prompt_tokens"], tally["completion_tokens"], tally["cached_tokens"]) == _counts(usage)
    assert tally["total_tokens"] == usage["total_tokens"]


@pytest.mark.real_model
@pytest.mark.live
def test_a_stream_whose_client_left_is_tallied_to_where_it_was_aborted(service):
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 400, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True}}  # fmt: skip
    seen = None
    with httpx.stream("POST", f"{service}/v1/chat/completions", json=body, headers={"x-usage-id": "left"},
                      timeout=120) as response:  # fmt: skip
        for line in response.iter_lines():
            if line.startswith("data: {"):
                seen = httpx.Response(200, content=line[6:]).json()["usage"]
                if seen["completion_tokens"] >= 5:
                    assert _tally(service, "left", ended=False).json()["running"] is True
                    break  # the client goes: the service aborts the generation
    tally = _tally(service, "left").json()
    assert tally["running"] is False
    assert tally["prompt_tokens"] == seen["prompt_tokens"]
    assert seen["completion_tokens"] <= tally["completion_tokens"] < 400  # it sampled on until it saw the client go


@pytest.mark.real_model
@pytest.mark.live
def test_calls_of_one_usage_id_add_up_and_embeddings_count_their_inputs(service):
    body = {"model": CHAT, "messages": MESSAGES, "max_tokens": 3}
    usages = [httpx.post(f"{service}/v1/chat/completions", json=body, headers={"x-usage-id": "rounds"},
                         timeout=120).json()["usage"] for _ in range(2)]  # fmt: skip
    tally = _tally(service, "rounds").json()
    assert tally["prompt_tokens"] == sum(u["prompt_tokens"] for u in usages)
    assert tally["completion_tokens"] == sum(u["completion_tokens"] for u in usages)

    body = {"model": EMBED, "input": ["a lighthouse", "a keeper of the light at sea"]}
    usage = httpx.post(f"{service}/v1/embeddings", json=body, headers={"x-usage-id": "embed"}, timeout=60).json()
    tally = _tally(service, "embed").json()
    assert (tally["prompt_tokens"], tally["completion_tokens"]) == (usage["usage"]["prompt_tokens"], 0)


@pytest.mark.real_model
@pytest.mark.live
def test_an_unknown_usage_id_is_an_openai_error_and_calls_without_one_are_not_tallied(service):
    httpx.post(f"{service}/v1/chat/completions", json={"model": CHAT, "messages": MESSAGES, "max_tokens": 1},
               timeout=60).raise_for_status()  # fmt: skip
    answer = httpx.get(f"{service}/v1/requests/never-sent", timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": {"message": "No call with usage id 'never-sent' is known here.",
                                       "type": "invalid_request_error", "param": "usage_id",
                                       "code": "usage_id_not_found"}}  # fmt: skip
    # a header that is no usage id (too long, odd characters) is not tallied either
    bad = "x" * 65
    httpx.post(f"{service}/v1/chat/completions", json={"model": CHAT, "messages": MESSAGES, "max_tokens": 1},
               headers={"x-usage-id": bad}, timeout=60).raise_for_status()  # fmt: skip
    assert httpx.get(f"{service}/v1/requests/{bad}", timeout=10).status_code == 404
