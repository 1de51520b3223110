"""The JSON body of a request, read one way wherever a body reaches a model: the API edge (``hub/api/edge.py``)
and the console's playground relay (``hub/console/live.py``).

``read_json`` checks, in this order: the size (413), the Content-Type (415: ``application/json`` or any
``application/*+json``, parameters such as ``charset`` ignored), that it parses (400 ``invalid_json``), its depth
and numbers (``validation.check_json``) and that it is an object (400); each answered with the same OpenAI error.
A request with no body at all (empty, with no Content-Type or a JSON one) is read as ``{}``: a route that takes no
body (``POST /responses/{id}/cancel``, which ``curl -X POST`` sends with no type and OpenAI's SDK as JSON) is served,
and one that needs fields answers which is missing.
"""

from __future__ import annotations

import json

from hub.api import errors, validation


def too_large(limit: int) -> errors.PayloadTooLarge:
    """413, for a body over ``limit`` bytes, however it was found out (declared, counted as it arrives, or read)."""
    return errors.PayloadTooLarge(f"Request body too large: the limit is {limit} bytes.")


def media_type(content_type: str | None) -> str:
    """``Application/JSON; charset=utf-8`` -> ``application/json``; no header: ``""``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(kind: str) -> bool:
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def check_content_type(content_type: str | None) -> None:
    """415 unless the Content-Type header names JSON."""
    kind = media_type(content_type)
    if not _is_json(kind):
        raise errors.UnsupportedMediaType(
            f"Unsupported Content-Type '{errors.shown(kind or 'none')}'. Send JSON with Content-Type: application/json."
        )


def no_body(body: bytes, content_type: str | None) -> bool:
    """Nothing sent: read as ``{}``. With no Content-Type, or a JSON one: OpenAI's SDK sends ``application/json``
    and no body for the routes that take none (``batches.cancel``)."""
    return not body and (content_type is None or _is_json(media_type(content_type)))


def read_json(body: bytes, content_type: str | None, limit: int) -> dict:
    """The body as a JSON object, or the ``errors.ApiError`` that refuses it."""
    if len(body) > limit:
        raise too_large(limit)
    if no_body(body, content_type):
        return {}
    check_content_type(content_type)
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, or an int of 4300+ digits
        raise errors.InvalidJson(
            f"We could not parse the JSON body of your request ({exc.__class__.__name__}: {exc}). "
            "The OpenAI API expects a JSON payload."
        ) from None
    except RecursionError:  # nested deeper than the parser's recursion limit
        raise validation.too_deep() from None
    validation.check_json(value)  # depth, NaN / Infinity
    if not isinstance(value, dict):
        raise errors.InvalidRequest("The request body must be a JSON object.")
    return value
