"""The days a usage or costs query asks for (``GET /v1/usage``, ``GET /v1/costs``): ``start`` / ``end`` as UTC dates
(``end`` inclusive), or OpenAI's organization usage names, ``start_time`` / ``end_time`` in Unix seconds (``end_time``
exclusive), each read as the UTC day it falls in, and ``bucket_width`` (daily buckets only: ``1d``); OpenAI's
``limit`` (buckets a page) and ``page`` (the ``next_page`` cursor of the page before: its first day). A parameter
these routes do not know is a 400 naming it: a client that sent OpenAI's ``models`` would otherwise read the default
week, unfiltered, as the answer to what it asked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from accounts.usage import FIRST_DAY, LAST_DAY
from hub.api import errors

MAX_USAGE_DAYS = 366
_DATES, _TIMES = ("start", "end"), ("start_time", "end_time")
KNOWN = {*_DATES, *_TIMES, "bucket_width", "group_by", "limit", "page"}


def parameters(groups: dict, grouping: str) -> list[OpenApiParameter]:
    """The routes' query parameters, for the OpenAPI document."""
    return [
        OpenApiParameter("start", str, description="First day, YYYY-MM-DD (default: `end` - 6 days)."),
        OpenApiParameter("end", str, description="Last day, inclusive, YYYY-MM-DD (default: today, UTC)."),
        OpenApiParameter("start_time", int, description="OpenAI's name: Unix seconds, its UTC day the first."),
        OpenApiParameter("end_time", int, description="OpenAI's name: Unix seconds (exclusive), the last day's end."),
        OpenApiParameter("bucket_width", str, enum=["1d"], description="Daily buckets only."),
        OpenApiParameter("limit", int, description=f"Buckets a page, 1 to {MAX_USAGE_DAYS} (default: all)."),
        OpenApiParameter("page", str, description="The `next_page` of the page before (with the same query)."),
        OpenApiParameter(
            "group_by",
            {"type": "array", "items": {"type": "string", "enum": list(groups)}},
            description=f"{grouping} May be given more than once: split by each.",
        ),
    ]


def _refuse(message: str, param: str, code: str | None = None) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


def _date(request: Request, name: str, default: date) -> date:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise _refuse(f"'{name}' must be a date as YYYY-MM-DD, got '{errors.shown(raw)}'.", name) from None
    # Day arithmetic (the default start, the end's next day) must stay within datetime's range.
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _refuse(f"'{name}' must be between {FIRST_DAY} and {LAST_DAY}, got '{errors.shown(raw)}'.", name)
    return day


def _time(request: Request, name: str, default: date) -> date:
    """The UTC day of a Unix time (of the second before it, for the exclusive ``end_time``)."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    lo = int(datetime.combine(FIRST_DAY, time.min, UTC).timestamp())
    hi = int(datetime.combine(LAST_DAY, time.max, UTC).timestamp())
    try:
        seconds = int(raw)
    except ValueError:
        raise _refuse(f"'{name}' must be a Unix time in seconds, got '{errors.shown(raw)}'.", name) from None
    if not lo < seconds <= hi:
        raise _refuse(f"'{name}' must be between {lo + 1} and {hi}, got {seconds}.", name)
    return datetime.fromtimestamp(seconds - (name == "end_time"), UTC).date()


@dataclass(frozen=True)
class Range:
    start: date  # this page's first day
    end: date  # and its last, inclusive
    fields: tuple[str, ...]  # what each day's results are grouped by
    next_page: date | None = None  # the next page's first day, where the range goes on


def range_params(request: Request, groups: dict) -> Range:
    """The page of days asked for (default: the last 7 days, by day only, in one page). ``group_by`` may come more
    than once, as OpenAI's array: the results split by all of them."""
    params = request.query_params
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        raise _refuse(f"Unknown parameter: '{errors.shown(unknown[0])}'. This route takes {', '.join(sorted(KNOWN))}.",
                      unknown[0], "unknown_parameter")  # fmt: skip
    if params.get("bucket_width", "1d") != "1d":
        raise _refuse(f"'bucket_width' must be '1d' (daily buckets), got '{errors.shown(params['bucket_width'])}'.",
                      "bucket_width")  # fmt: skip
    names = _TIMES if any(name in params for name in _TIMES) else _DATES
    if names == _TIMES and any(name in params for name in _DATES):
        raise _refuse("Give 'start' / 'end' (dates) or 'start_time' / 'end_time' (Unix seconds), not both.", "start")
    read = _time if names == _TIMES else _date
    end = read(request, names[1], datetime.now(UTC).date())
    start = read(request, names[0], end - timedelta(days=6))
    asked = params.getlist("group_by") or ["day"]
    wrong = next((name for name in asked if name not in groups), None)
    if wrong is not None:
        raise _refuse(f"'group_by' must be one of {', '.join(groups)}, got '{errors.shown(wrong)}'.", "group_by")
    fields = tuple(dict.fromkeys(field for name in asked for field in groups[name]))  # once each, in order
    if start > end:
        raise _refuse(f"'{names[0]}' must not be after '{names[1]}'.", names[0])
    if (end - start).days >= MAX_USAGE_DAYS:
        raise _refuse(f"Ask for at most {MAX_USAGE_DAYS} days at a time.", names[1])
    return _paged(request, start, end, fields)


def _paged(request: Request, start: date, end: date, fields: tuple[str, ...]) -> Range:
    """The page ``page`` (a first day) and ``limit`` (days) pick from the range."""
    params = request.query_params
    if "page" in params:
        try:
            first = date.fromisoformat(params["page"])
        except ValueError:
            first = None
        if first is None or not start <= first <= end:
            raise _refuse(f"'page' must be the 'next_page' of an earlier page of this query, got "
                          f"'{errors.shown(params['page'])}'.", "page")  # fmt: skip
        start = first
    if "limit" in params:
        limit = params["limit"]
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_USAGE_DAYS:
            raise _refuse(f"'limit' must be an integer from 1 to {MAX_USAGE_DAYS}, got '{errors.shown(limit)}'.",
                          "limit")  # fmt: skip
        last = start + timedelta(days=int(limit) - 1)
        if last < end:
            return Range(start, last, fields, last + timedelta(days=1))
    return Range(start, end, fields)
