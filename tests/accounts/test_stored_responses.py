"""Stored Responses API answers: found only by their own tenant, deleted once, and expired by the beat's task
after ``HUB_RESPONSES_RETENTION_DAYS`` (0 keeps them)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts import responses, tasks
from accounts.models import StoredResponse


def _response(response_id: str, age: timedelta) -> dict:
    created = int((timezone.now() - age).timestamp())
    return {"id": response_id, "object": "response", "created_at": created, "model": "chat-small", "output": [
        {"id": f"msg_{response_id}", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "hi", "annotations": [], "logprobs": []}]}]}  # fmt: skip


def _store(tenant, response_id: str, age: timedelta = timedelta(0)) -> StoredResponse:
    item = {"id": f"in_{response_id}", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": "hello"}]}  # fmt: skip
    return responses.save(tenant_id=tenant.id, api_key_id=None, history=[], input_items=[item],
                          response=_response(response_id, age))  # fmt: skip


def test_a_response_is_its_tenants_only(acme, globex):
    stored = _store(acme.tenant, "resp_a")
    assert responses.find(acme.tenant.id, "resp_a") == stored
    assert responses.find(globex.tenant.id, "resp_a") is None
    assert responses.find(acme.tenant.id, "resp_\x00") is None
    assert [i["id"] for i in stored.context()] == ["in_resp_a", "msg_resp_a"]
    assert not responses.delete(globex.tenant.id, "resp_a")
    assert responses.delete(acme.tenant.id, "resp_a") and not responses.delete(acme.tenant.id, "resp_a")


def test_expired_responses_are_deleted_by_the_task(acme, settings):
    settings.HUB_RESPONSES_RETENTION_DAYS = 30
    _store(acme.tenant, "resp_old", timedelta(days=31))
    _store(acme.tenant, "resp_new", timedelta(days=29))
    assert tasks.expire_responses.apply().get() == 1
    assert list(StoredResponse.objects.values_list("id", flat=True)) == ["resp_new"]


def test_retention_zero_keeps_them(acme, settings):
    settings.HUB_RESPONSES_RETENTION_DAYS = 0
    _store(acme.tenant, "resp_ancient", timedelta(days=3650))
    assert tasks.expire_responses.apply().get() == 0 and StoredResponse.objects.count() == 1
