"""Stored chat completions (``store: true``): found only by their own tenant; listed in pages in the order they
were stored (either way, after a cursor, by model and by metadata, a key with ``__`` in it taken whole); given new
metadata; deleted once; expired by the beat's task after ``HUB_CHAT_COMPLETIONS_RETENTION_DAYS`` (0 keeps them);
NUL characters in the messages and the answer read back as written."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts import chat_completions as stored
from accounts import stored as generic
from accounts import tasks
from accounts.models import StoredChatCompletion


def _completion(completion_id: str, model: str = "chat-small", text: str = "hi") -> dict:
    message = {"role": "assistant", "content": text, "refusal": None}
    return {"id": completion_id, "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}  # fmt: skip


def _store(tenant, completion_id: str, model: str = "chat-small", metadata: dict | None = None, **kw):
    return stored.save(tenant_id=tenant.id, api_key_id=None, messages=[{"role": "user", "content": "hello"}],
                       metadata=metadata or {}, completion=_completion(completion_id, model, **kw))  # fmt: skip


def _ids(tenant, **kw) -> tuple[list[str], bool]:
    args = {"model": None, "metadata": {}, "after": None, "limit": 20, "descending": False, **kw}
    page = stored.page(tenant.id, **args)
    return [row.pk for row in page.rows], page.has_more


def test_a_completion_is_its_tenants_only(acme, globex):
    row = _store(acme.tenant, "chatcmpl-a", metadata={"team": "x"})
    assert stored.find(acme.tenant.id, "chatcmpl-a") == row and row.answer()["metadata"] == {"team": "x"}
    assert stored.find(globex.tenant.id, "chatcmpl-a") is None
    assert stored.find(acme.tenant.id, "chatcmpl-\x00") is None
    assert _ids(globex.tenant) == ([], False)
    assert stored.set_metadata(globex.tenant.id, "chatcmpl-a", {"team": "y"}) is None
    assert stored.find(acme.tenant.id, "chatcmpl-a").metadata == {"team": "x"}
    assert not stored.delete(globex.tenant.id, "chatcmpl-a")
    assert stored.delete(acme.tenant.id, "chatcmpl-a") and not stored.delete(acme.tenant.id, "chatcmpl-a")


def test_pages_in_either_order_after_a_cursor(acme):
    rows = [_store(acme.tenant, f"chatcmpl-{i}") for i in (3, 1, 2, 0)]  # stored in this order, ids unordered
    same_moment = rows[1].created_at
    StoredChatCompletion.objects.filter(pk__in=["chatcmpl-1", "chatcmpl-2"]).update(created_at=same_moment)
    assert _ids(acme.tenant) == (["chatcmpl-3", "chatcmpl-1", "chatcmpl-2", "chatcmpl-0"], False)
    assert _ids(acme.tenant, descending=True) == (["chatcmpl-0", "chatcmpl-2", "chatcmpl-1", "chatcmpl-3"], False)
    first = _ids(acme.tenant, limit=2)
    assert first == (["chatcmpl-3", "chatcmpl-1"], True)
    cursor = stored.find(acme.tenant.id, "chatcmpl-1")
    assert _ids(acme.tenant, limit=2, after=cursor) == (["chatcmpl-2", "chatcmpl-0"], False)
    assert _ids(acme.tenant, after=cursor, descending=True) == (["chatcmpl-3"], False)
    cursor = stored.find(acme.tenant.id, "chatcmpl-2")  # a tie on the time: the id decides, both ways
    assert _ids(acme.tenant, after=cursor, descending=True) == (["chatcmpl-1", "chatcmpl-3"], False)


def test_a_page_before_a_cursor_is_the_one_just_before_it_in_the_lists_order(acme):
    """OpenAI's ``before`` (the vector stores' lists take it): the ``limit`` rows just before the cursor, in the
    list's order either way, ``has_more`` when more come before them."""
    for i in range(5):
        _store(acme.tenant, f"chatcmpl-{i}")
    rows = StoredChatCompletion.objects.filter(tenant_id=acme.tenant.id)

    def ids(cursor: str, limit: int, descending: bool) -> tuple[list[str], bool]:
        page = generic.page(rows, None, limit, descending, before=stored.find(acme.tenant.id, cursor))
        return [row.pk for row in page.rows], page.has_more

    assert ids("chatcmpl-3", 2, False) == (["chatcmpl-1", "chatcmpl-2"], True)
    assert ids("chatcmpl-3", 5, False) == (["chatcmpl-0", "chatcmpl-1", "chatcmpl-2"], False)
    assert ids("chatcmpl-1", 2, True) == (["chatcmpl-3", "chatcmpl-2"], True)
    assert ids("chatcmpl-4", 9, True) == ([], False)


def test_filters_by_model_and_metadata(acme):
    _store(acme.tenant, "chatcmpl-a", metadata={"team": "x", "a__b": "1"})
    _store(acme.tenant, "chatcmpl-b", model="other", metadata={"team": "x"})
    _store(acme.tenant, "chatcmpl-c", metadata={"team": "y", "a": "1"})
    assert _ids(acme.tenant, model="other") == (["chatcmpl-b"], False)
    assert _ids(acme.tenant, metadata={"team": "x"}) == (["chatcmpl-a", "chatcmpl-b"], False)
    assert _ids(acme.tenant, metadata={"team": "x"}, model="chat-small") == (["chatcmpl-a"], False)
    assert _ids(acme.tenant, metadata={"a__b": "1"}) == (["chatcmpl-a"], False)  # not the path a -> b
    assert _ids(acme.tenant, metadata={"team": "x", "a__b": "2"}) == ([], False)
    assert stored.set_metadata(acme.tenant.id, "chatcmpl-c", {"team": "x"}).metadata == {"team": "x"}
    assert _ids(acme.tenant, metadata={"team": "x"}) == (["chatcmpl-a", "chatcmpl-b", "chatcmpl-c"], False)


def test_expired_completions_are_deleted_by_the_task(acme, settings):
    settings.HUB_CHAT_COMPLETIONS_RETENTION_DAYS = 30
    for name, age in (("old", 31), ("new", 29)):
        _store(acme.tenant, f"chatcmpl-{name}")
        StoredChatCompletion.objects.filter(pk=f"chatcmpl-{name}").update(
            created_at=timezone.now() - timedelta(days=age)
        )
    assert tasks.expire_chat_completions.apply().get() == 1
    assert list(StoredChatCompletion.objects.values_list("id", flat=True)) == ["chatcmpl-new"]
    settings.HUB_CHAT_COMPLETIONS_RETENTION_DAYS = 0
    StoredChatCompletion.objects.update(created_at=timezone.now() - timedelta(days=3650))
    assert tasks.expire_chat_completions.apply().get() == 0 and StoredChatCompletion.objects.count() == 1


def test_nul_characters_read_back_as_written(acme):
    stored.save(tenant_id=acme.tenant.id, api_key_id=None, messages=[{"role": "user", "content": "a\x00b"}],
                metadata={}, completion=_completion("chatcmpl-nul", text="\x00\ue000"))  # fmt: skip
    row = StoredChatCompletion.objects.get(pk="chatcmpl-nul")
    assert row.messages == [{"role": "user", "content": "a\x00b"}]
    assert row.completion["choices"][0]["message"]["content"] == "\x00\ue000"
