"""Conversations: found only by their own tenant; items kept in the order added, paged either way after an item,
read and deleted one by one; an id held already refused (nothing of that request added); deleted whole with their
items; NUL characters in items and metadata read back as written."""

from __future__ import annotations

import pytest

from accounts import conversations
from accounts.models import ConversationItem


def _item(item_id: str, text: str = "hi") -> dict:
    return {"id": item_id, "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": text}]}  # fmt: skip


def test_a_conversation_is_its_tenants_only(acme, globex):
    made = conversations.create(tenant_id=acme.tenant.id, api_key_id=None, metadata={"a": "b"}, items=[_item("m1")])
    assert made.pk.startswith("conv_") and made.resource()["metadata"] == {"a": "b"}
    assert conversations.find(acme.tenant.id, made.pk) == made
    assert conversations.find(globex.tenant.id, made.pk) is None
    assert conversations.find(acme.tenant.id, "conv_\x00") is None
    assert conversations.set_metadata(globex.tenant.id, made.pk, {}) is None
    assert not conversations.delete(globex.tenant.id, made.pk)
    assert conversations.set_metadata(acme.tenant.id, made.pk, {"c": "d"}).metadata == {"c": "d"}
    assert conversations.delete(acme.tenant.id, made.pk) and not conversations.delete(acme.tenant.id, made.pk)
    assert ConversationItem.objects.count() == 0  # its items went with it


def test_items_in_order_paged_either_way(acme):
    made = conversations.create(tenant_id=acme.tenant.id, api_key_id=None, metadata={},
                                items=[_item(f"m{i}") for i in (3, 1, 2)])  # fmt: skip
    conversations.add_items(made.pk, [_item("m0")])
    assert [i["id"] for i in conversations.items(made.pk)] == ["m3", "m1", "m2", "m0"]
    page = conversations.page(made.pk, after=None, limit=2, descending=True)
    assert [i["id"] for i in page.items] == ["m0", "m2"] and page.has_more
    page = conversations.page(made.pk, after="m2", limit=2, descending=True)
    assert [i["id"] for i in page.items] == ["m1", "m3"] and not page.has_more
    page = conversations.page(made.pk, after="m1", limit=5, descending=False)
    assert [i["id"] for i in page.items] == ["m2", "m0"] and not page.has_more
    assert conversations.page(made.pk, after="nope", limit=5, descending=False) is None
    assert conversations.item(made.pk, "m1") == _item("m1") and conversations.item(made.pk, "x\x00") is None
    assert conversations.delete_item(made.pk, "m1") and not conversations.delete_item(made.pk, "m1")
    assert [i["id"] for i in conversations.items(made.pk)] == ["m3", "m2", "m0"]


def test_an_id_held_already_adds_nothing(acme):
    made = conversations.create(tenant_id=acme.tenant.id, api_key_id=None, metadata={}, items=[_item("m1")])
    with pytest.raises(conversations.DuplicateItem) as held:
        conversations.add_items(made.pk, [_item("m2"), _item("m1")])
    assert held.value.item_id == "m1"
    with pytest.raises(conversations.DuplicateItem) as twice:
        conversations.add_items(made.pk, [_item("m3"), _item("m3")])
    assert twice.value.item_id == "m3"
    assert [i["id"] for i in conversations.items(made.pk)] == ["m1"]


def test_nul_characters_read_back_as_written(acme):
    made = conversations.create(tenant_id=acme.tenant.id, api_key_id=None, metadata={"k": "a\x00"},
                                items=[_item("m1", "x\x00y\ue000")])  # fmt: skip
    assert conversations.find(acme.tenant.id, made.pk).metadata == {"k": "a\x00"}
    assert conversations.items(made.pk)[0]["content"][0]["text"] == "x\x00y\ue000"
