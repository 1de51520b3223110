"""Background responses' work (``accounts/background.py``): queued with its stored response, claimed by one runner
at a time, taken over once its runner goes quiet or hands it back, and answered or cancelled, never both: the
first of the two wins and the other changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import background, responses
from accounts.models import BackgroundResponse, BackgroundState, StoredResponse

STALE = 60.0


def _queued(tenant, response_id: str = "resp_bg") -> StoredResponse:
    response = {"id": response_id, "object": "response", "created_at": int(timezone.now().timestamp()),
                "model": "chat-small", "status": "in_progress", "background": True, "output": []}  # fmt: skip
    item = {"id": "msg_in", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    return background.create(tenant_id=tenant.id, api_key_id=None, history=[], input_items=[item],
                             response=response, request={"model": "chat-small", "input": "hi"})  # fmt: skip


def _answer(response_id: str) -> dict:
    return {"id": response_id, "object": "response", "status": "completed", "background": True,
            "output": [{"id": "msg_out", "type": "message", "role": "assistant", "content": []}]}  # fmt: skip


def _status(response_id: str) -> str:
    return StoredResponse.objects.get(pk=response_id).response["status"]


def test_queued_then_claimed_by_one_runner_at_a_time(acme):
    row = _queued(acme.tenant)
    assert row.response["status"] == "queued" and responses.find(acme.tenant.id, "resp_bg") == row
    work = background.claim("resp_bg", "one", STALE)
    assert (work.state, work.runner, work.attempts, _status("resp_bg")) == ("in_progress", "one", 1, "in_progress")
    assert background.claim("resp_bg", "two", STALE) is None  # the first shows life
    assert background.heartbeat("resp_bg", "one") and not background.heartbeat("resp_bg", "two")
    assert background.stale(STALE) == []


def test_a_quiet_runners_work_is_taken_over_and_work_handed_back_is_found_at_once(acme):
    _queued(acme.tenant)
    background.claim("resp_bg", "one", STALE)
    BackgroundResponse.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=STALE + 1))
    assert background.stale(STALE) == ["resp_bg"]
    work = background.claim("resp_bg", "two", STALE)
    assert (work.runner, work.attempts) == ("two", 2)
    assert not background.heartbeat("resp_bg", "one")  # the old runner learns it lost the work
    background.release("resp_bg", "two")
    assert (_status("resp_bg"), background.stale(STALE)) == ("queued", ["resp_bg"])
    background.release("resp_bg", "two")  # once only: not its runner's any more
    assert BackgroundResponse.objects.get().state == BackgroundState.QUEUED


def test_a_start_that_was_lost_is_found_once_stale(acme):
    _queued(acme.tenant)
    assert background.stale(STALE) == []  # just queued: its start is on its way
    BackgroundResponse.objects.update(created_at=timezone.now() - timedelta(seconds=STALE + 1))
    assert background.stale(STALE) == ["resp_bg"]


def test_the_answer_is_written_with_the_context_it_answered(acme):
    _queued(acme.tenant)
    background.claim("resp_bg", "one", STALE)
    item = {"id": "msg_again", "type": "message", "role": "user", "content": []}
    assert background.answer("resp_bg", _answer("resp_bg"), [], [item], {"fs_1": []})
    assert background.heartbeat("resp_bg", "one")  # still its run's: it sends its last events, ends its request
    row = StoredResponse.objects.get(pk="resp_bg")
    assert (row.response["status"], row.input_items, row.search_results) == ("completed", [item], {"fs_1": []})
    assert background.cancel(acme.tenant.id, "resp_bg")["status"] == "completed"  # ended: left as it is
    assert not background.answer("resp_bg", {**_answer("resp_bg"), "status": "failed"}, [], [])
    assert background.claim("resp_bg", "two", STALE) is None and background.stale(0) == []


def test_a_cancel_wins_over_a_later_answer_and_stops_the_heartbeat(acme):
    _queued(acme.tenant)
    background.claim("resp_bg", "one", STALE)
    assert background.cancel(acme.tenant.id, "resp_bg")["status"] == "cancelled"
    assert not background.heartbeat("resp_bg", "one")
    assert not background.answer("resp_bg", _answer("resp_bg"), [], [])
    assert not background.fail("resp_bg", "server_error", "late")
    assert _status("resp_bg") == "cancelled" and background.stale(0) == []


def test_a_queued_response_is_cancelled_before_it_runs(acme):
    _queued(acme.tenant)
    assert background.cancel(acme.tenant.id, "resp_bg")["status"] == "cancelled"
    assert background.claim("resp_bg", "one", STALE) is None


def test_cancel_is_for_the_tenants_background_responses_only(acme, globex):
    _queued(acme.tenant)
    assert background.cancel(globex.tenant.id, "resp_bg") is None
    assert background.cancel(acme.tenant.id, "resp_none") is None
    responses.save(tenant_id=acme.tenant.id, api_key_id=None, history=[], input_items=[],
                   response={**_answer("resp_fg"), "created_at": 0, "model": "chat-small"})  # fmt: skip
    with pytest.raises(background.NotBackground):
        background.cancel(acme.tenant.id, "resp_fg")


def test_a_failure_is_openais_error_object_and_deleting_the_response_drops_its_work(acme):
    _queued(acme.tenant)
    background.claim("resp_bg", "one", STALE)
    assert background.fail("resp_bg", "context_length_exceeded", "Too long.")
    stored = StoredResponse.objects.get(pk="resp_bg").response
    assert (stored["status"], stored["error"]) == (
        "failed",
        {"code": "context_length_exceeded", "message": "Too long."},
    )
    _queued(acme.tenant, "resp_gone")
    background.claim("resp_gone", "one", STALE)
    assert responses.delete(acme.tenant.id, "resp_gone")
    assert not BackgroundResponse.objects.filter(pk="resp_gone").exists()
    assert not background.heartbeat("resp_gone", "one") and not background.answer("resp_gone", _answer("x"), [], [])
