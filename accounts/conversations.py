"""Conversations (OpenAI's Conversations API), per tenant: created with items and metadata, extended by the items
a client adds and by each response created with ``conversation`` (its input and output), read back in the order
added, item by item or in pages, and deleted on request (an item, or the whole conversation). Every read names the
tenant: another tenant's id is not found, exactly like an id that never existed."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import stored
from accounts.models import Conversation, ConversationItem

MAX_ITEM_ID = 200  # ConversationItem.item_id's length


class DuplicateItem(Exception):
    """An item whose id the conversation already holds."""

    def __init__(self, item_id: str):
        super().__init__(item_id)
        self.item_id = item_id


@dataclass(frozen=True)
class Page:
    items: list[dict]
    has_more: bool


def new_id() -> str:
    return f"conv_{secrets.token_hex(24)}"


def find(tenant_id: int, conversation_id: str) -> Conversation | None:
    return stored.find(Conversation, tenant_id, conversation_id)


def _add(conversation_id: str, items: list[dict]) -> None:
    try:
        with transaction.atomic():  # a savepoint: a duplicate id leaves the outer transaction usable
            ConversationItem.objects.bulk_create(
                [ConversationItem(conversation_id=conversation_id, item_id=i["id"], item=i) for i in items]
            )
    except IntegrityError:
        held = set(ConversationItem.objects.filter(conversation_id=conversation_id,
                                                   item_id__in=[i["id"] for i in items])
                   .values_list("item_id", flat=True))  # fmt: skip
        seen: set[str] = set()
        for item in items:  # the first one held already, or given twice
            if item["id"] in held or item["id"] in seen:
                raise DuplicateItem(item["id"]) from None
            seen.add(item["id"])
        raise


def create(*, tenant_id: int, api_key_id: int | None, metadata: dict, items: list[dict]) -> Conversation:
    with transaction.atomic():
        conversation = Conversation.objects.create(id=new_id(), tenant_id=tenant_id, api_key_id=api_key_id,
                                                   created_at=timezone.now(), metadata=metadata)  # fmt: skip
        _add(conversation.pk, items)
    return conversation


def add_items(conversation_id: str, items: list[dict]) -> None:
    """Append ``items`` (each with its ``id``), in order; raises DuplicateItem (nothing added) for a held id."""
    with transaction.atomic():
        _add(conversation_id, items)


def items(conversation_id: str) -> list[dict]:
    """Every item, oldest first: the context a response in this conversation continues."""
    rows = ConversationItem.objects.filter(conversation_id=conversation_id).order_by("id")
    return [row.item for row in rows]


def item(conversation_id: str, item_id: str) -> dict | None:
    if not stored.valid_id(item_id):
        return None
    row = ConversationItem.objects.filter(conversation_id=conversation_id, item_id=item_id).first()
    return None if row is None else row.item


def page(conversation_id: str, *, after: str | None, limit: int, descending: bool) -> Page | None:
    """A page of items in either order, after the item ``after``; None when there is no such item."""
    rows = ConversationItem.objects.filter(conversation_id=conversation_id)
    if after is not None:
        if not stored.valid_id(after):
            return None
        cursor = rows.filter(item_id=after).values_list("id", flat=True).first()
        if cursor is None:
            return None
        rows = rows.filter(id__lt=cursor) if descending else rows.filter(id__gt=cursor)
    found = list(rows.order_by("-id" if descending else "id")[: limit + 1])
    return Page([row.item for row in found[:limit]], len(found) > limit)


def set_metadata(tenant_id: int, conversation_id: str, metadata: dict) -> Conversation | None:
    return stored.set_metadata(Conversation, tenant_id, conversation_id, metadata)


def delete(tenant_id: int, conversation_id: str) -> bool:
    return stored.delete(Conversation, tenant_id, conversation_id)


def delete_item(conversation_id: str, item_id: str) -> bool:
    if not stored.valid_id(item_id):
        return False
    with transaction.atomic():
        deleted, _ = ConversationItem.objects.filter(conversation_id=conversation_id, item_id=item_id).delete()
    return bool(deleted)
