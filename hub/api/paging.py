"""The list routes' paging, as OpenAI's: ``limit`` (1 to 100, default 20), ``order`` (``asc`` / ``desc``), ``after``
(an id of the list: what follows it), and the list object (``data``, ``first_id``, ``last_id``, ``has_more``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rest_framework.request import Request

from hub.api import errors

MAX_LIMIT = 100
T = TypeVar("T")


def limit_and_order(
    request: Request, default_order: str, *, default_limit: int = 20, max_limit: int = MAX_LIMIT
) -> tuple[int, bool]:  # fmt: skip
    """(limit, descending) from the query; a 400 naming the field otherwise."""
    try:
        limit = int(request.query_params.get("limit", str(default_limit)))
    except ValueError:
        limit = 0
    if not 1 <= limit <= max_limit:
        raise errors.InvalidRequest(f"'limit' must be an integer from 1 to {max_limit}.", param="limit")
    order = request.query_params.get("order", default_order)
    if order not in ("asc", "desc"):
        raise errors.InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    return limit, order == "desc"


def after(items: list[dict], request: Request, what: str) -> list[dict]:
    """``items`` (in the list's order) after the one ``after`` names; all of them without it."""
    cursor = request.query_params.get("after")
    if cursor is None:
        return items
    ids = [item.get("id") for item in items]
    if cursor not in ids:
        raise errors.InvalidRequest(f"No {what} with id '{errors.shown(cursor)}'.", param="after")
    return items[ids.index(cursor) + 1 :]


def cursor(request: Request, find: Callable[[str], T | None], what: str, name: str = "after") -> T | None:
    """The row ``after`` (or ``name``) names (``find``: in the key's tenant), None without it; a 400 naming it if
    there is no such ``what``."""
    value = request.query_params.get(name)
    if value is None:
        return None
    found = find(value)
    if found is None:
        raise errors.InvalidRequest(f"No {what} with id '{errors.shown(value)}'.", param=name)
    return found


def cursors(request: Request, find: Callable[[str], T | None], what: str) -> tuple[T | None, T | None]:
    """(after, before): OpenAI's two cursors of the vector stores' lists, at most one of them."""
    if "after" in request.query_params and "before" in request.query_params:
        raise errors.InvalidRequest("Give 'after' or 'before', not both.", param="before")
    return cursor(request, find, what), cursor(request, find, what, "before")


def list_object(data: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": has_more}  # fmt: skip
