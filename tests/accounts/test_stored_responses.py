"""Stored Responses API answers: found only by their own tenant, deleted once, expired by the beat's task after
``HUB_RESPONSES_RETENTION_DAYS`` (0 keeps them), and read back as written, NUL characters included (PostgreSQL's
jsonb refuses them)."""

from __future__ import annotations

import importlib
import json
from datetime import timedelta

from django.apps import apps
from django.db import connection
from django.utils import timezone

from accounts import responses, tasks
from accounts.json_nul import WRAPPER
from accounts.models import StoredResponse, StoredResponseItem


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


# texts a request may send and a model may write: NUL, and the private-use character the storage escapes with,
# alone and followed by what its escapes look like
AWKWARD = ["a\x00b", "\x00", "\ue000", "\ue0000", "\ue0001\x00", "\x00\ue000\x00\ue0001", "plain"]


def test_nul_characters_are_stored_and_read_back(acme):
    stored = _store(acme.tenant, "resp_nul")
    history = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]} for t in AWKWARD]
    response = {**stored.response, "metadata": {f"k{t}": t for t in AWKWARD}}
    response["output"][0]["content"][0]["text"] = "".join(AWKWARD)
    StoredResponse.objects.filter(pk="resp_nul").delete()
    responses.save(tenant_id=acme.tenant.id, api_key_id=None, history=history, input_items=stored.input_items,
                   response=response)  # fmt: skip
    found = responses.find(acme.tenant.id, "resp_nul")
    assert (found.history, found.input_items, found.response) == (history, stored.input_items, response)
    assert found.context()[-1]["content"][0]["text"] == "".join(AWKWARD)


def test_values_without_nul_are_stored_as_they_are(acme):
    """Rows written before the NUL-safe fields (or without a NUL) read back unchanged, escape-like text and all."""
    _store(acme.tenant, "resp_plain")
    text = "\ue0000 \ue0001"  # what an escape looks like, in a value that was never escaped
    StoredResponse.objects.filter(pk="resp_plain").update(history=[{"text": text}])
    with connection.cursor() as cursor:
        cursor.execute("SELECT history, response FROM accounts_storedresponse WHERE id = %s", ["resp_plain"])
        history, response = (json.loads(v) if isinstance(v, str) else v for v in cursor.fetchone())
    assert history == [{"text": text}] and WRAPPER not in response
    assert responses.find(acme.tenant.id, "resp_plain").history == [{"text": text}]


def test_search_results_the_client_did_not_see_are_in_the_context_only(acme):
    """A file_search_call shown without its results (no ``include``) keeps them for the responses continuing it."""
    found = [{"file_id": "file-1", "filename": "a.txt", "score": 0.9, "text": "Bees make honey.", "attributes": {}}]
    response = _response("resp_s", timedelta(0))
    response["output"].insert(0, {"id": "fs_1", "type": "file_search_call", "status": "completed",
                                  "queries": ["bees"], "results": None})  # fmt: skip
    stored = responses.save(tenant_id=acme.tenant.id, api_key_id=None, history=[], input_items=[], response=response,
                            search_results={"fs_1": found})  # fmt: skip
    stored.refresh_from_db()
    assert stored.response["output"][0]["results"] is None  # as the client got it
    assert stored.context()[0] == {**response["output"][0], "results": found}


def test_items_are_found_by_id_among_the_tenants_stored_responses(acme, globex):
    _store(acme.tenant, "resp_a")
    _store(globex.tenant, "resp_g")
    found = responses.items_by_id(acme.tenant.id, {"in_resp_a", "msg_resp_a", "msg_resp_g", "nope", "msg_\x00"})
    assert {k: v["type"] for k, v in found.items()} == {"in_resp_a": "message", "msg_resp_a": "message"}
    assert found["msg_resp_a"]["content"][0]["text"] == "hi"
    # an item sent again in a later response: the latest one's
    later = _response("resp_b", timedelta(0))
    later["output"][0]["content"][0]["text"] = "again"
    later["output"][0]["id"] = "msg_resp_a"
    responses.save(tenant_id=acme.tenant.id, api_key_id=None, history=[], input_items=[], response=later)
    assert responses.items_by_id(acme.tenant.id, {"msg_resp_a"})["msg_resp_a"]["content"][0]["text"] == "again"
    assert responses.delete(acme.tenant.id, "resp_b") and responses.delete(acme.tenant.id, "resp_a")
    assert responses.items_by_id(acme.tenant.id, {"in_resp_a", "msg_resp_a"}) == {}


def test_the_migration_indexes_the_items_of_the_responses_stored_before(acme):
    _store(acme.tenant, "resp_before")
    StoredResponseItem.objects.all().delete()  # as 0030 left them: no index
    migration = importlib.import_module("accounts.migrations.0031_stored_response_items")
    migration.index_stored_items(apps, None)
    assert set(responses.items_by_id(acme.tenant.id, {"in_resp_before", "msg_resp_before"})) == {
        "in_resp_before", "msg_resp_before"}  # fmt: skip
