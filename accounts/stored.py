"""What the hub keeps for a tenant by id (stored responses, stored chat completions, conversations): the reads and
writes they share. Every one names the tenant, so another tenant's id is not found, exactly like an id that never
existed; an id PostgreSQL cannot take (a NUL in it) is not found either."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from django.db import models, transaction
from django.utils import timezone

Row = TypeVar("Row", bound=models.Model)
T = TypeVar("T")


def valid_id(value: object) -> bool:
    return isinstance(value, str) and "\x00" not in value  # PostgreSQL refuses a NUL in a query


def find(model: type[Row], tenant_id: int, pk: object) -> Row | None:
    if not valid_id(pk):
        return None
    return model.objects.filter(tenant_id=tenant_id, pk=pk).first()


def after(rows: models.QuerySet[Row], cursor: models.Model | None, descending: bool) -> models.QuerySet[Row]:
    """The ``rows`` after ``cursor`` in (created_at, id) order, either way (None: all of them)."""
    if cursor is None:
        return rows
    moment, pk = cursor.created_at, cursor.pk
    if descending:
        return rows.filter(models.Q(created_at__lt=moment) | models.Q(created_at=moment, pk__lt=pk))
    return rows.filter(models.Q(created_at__gt=moment) | models.Q(created_at=moment, pk__gt=pk))


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list route: its rows, and whether more follow."""

    rows: list[T]
    has_more: bool


def page_of(found: list[T], limit: int) -> Page[T]:
    """``found``: up to ``limit + 1`` rows, one more than a page to know whether more follow."""
    return Page(found[:limit], len(found) > limit)


def page(
    rows: models.QuerySet[Row], cursor: models.Model | None, limit: int, descending: bool,
    before: models.Model | None = None,
) -> Page[Row]:  # fmt: skip
    """Up to ``limit`` of ``rows`` after ``cursor`` in (created_at, id) order, either way; or, with ``before``
    (OpenAI's, on the vector stores' lists), the ``limit`` just before it, in the same order (``has_more``: more
    come before them)."""
    order = ("-created_at", "-id") if descending else ("created_at", "id")
    if before is None:
        return page_of(list(after(rows, cursor, descending).order_by(*order)[: limit + 1]), limit)
    back = ("created_at", "id") if descending else ("-created_at", "-id")  # read away from ``before``
    found = page_of(list(after(rows, before, not descending).order_by(*back)[: limit + 1]), limit)
    return Page(found.rows[::-1], found.has_more)


def set_metadata(model: type[Row], tenant_id: int, pk: object, metadata: dict) -> Row | None:
    """Replace the row's ``metadata``; None when the tenant has no such row."""
    if not valid_id(pk):
        return None
    with transaction.atomic():
        found = model.objects.select_for_update().filter(tenant_id=tenant_id, pk=pk).first()
        if found is not None:
            found.metadata = metadata
            found.save(update_fields=["metadata"])
    return found


def delete(model: type[models.Model], tenant_id: int, pk: object) -> bool:
    if not valid_id(pk):
        return False
    with transaction.atomic():
        deleted, _ = model.objects.filter(tenant_id=tenant_id, pk=pk).delete()
    return bool(deleted)


def expire(model: type[models.Model], days: int, now: datetime | None = None) -> int:
    """Delete the rows created more than ``days`` ago (0 keeps them all); returns how many."""
    if not days:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=days)
    with transaction.atomic():
        _, deleted = model.objects.filter(created_at__lt=cutoff).delete()
    return deleted.get(model._meta.label, 0)  # the rows themselves, not what went with them (a response's item ids)
