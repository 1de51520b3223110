"""The buckets a usage or costs query asks for (``GET /v1/usage``, ``GET /v1/costs``): ``start`` / ``end`` as UTC dates
(``end`` inclusive), or OpenAI's organization usage names, ``start_time`` / ``end_time`` in Unix seconds (``end_time``
exclusive), each read as the bucket it falls in; ``bucket_width`` ``1d`` (the default: UTC days) or ``1h`` (hours);
OpenAI's ``limit`` (buckets a page) and ``page`` (the ``next_page`` cursor of the page before: its first bucket). A
parameter these routes do not know is a 400 naming it: a client that sent OpenAI's ``models`` would otherwise read
the default week, unfiltered, as the answer to what it asked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request

from accounts.usage import FIRST_DAY, LAST_DAY
from hub.api import errors

MAX_USAGE_DAYS = 366
_DATES, _TIMES = ("start", "end"), ("start_time", "end_time")
KNOWN = {*_DATES, *_TIMES, "bucket_width", "group_by", "limit", "page"}
# bucket_width -> (the bucket, the most of them a query covers, the default range's, the unit named in errors)
WIDTHS = {"1d": (timedelta(days=1), MAX_USAGE_DAYS, 7, "days"), "1h": (timedelta(hours=1), 31 * 24, 24, "hours")}


def parameters(groups: dict, grouping: str) -> list[OpenApiParameter]:
    """The routes' query parameters, for the OpenAPI document."""
    return [
        OpenApiParameter("start", str, description="First day, YYYY-MM-DD (default: `end` - 6 days)."),
        OpenApiParameter("end", str, description="Last day, inclusive, YYYY-MM-DD (default: today, UTC)."),
        OpenApiParameter("start_time", int, description="OpenAI's name: Unix seconds, its bucket the first."),
        OpenApiParameter(
            "end_time", int, description="OpenAI's name: Unix seconds (exclusive), the last bucket's end."
        ),
        OpenApiParameter(
            "bucket_width",
            str,
            enum=list(WIDTHS),
            description="`1d` (default): UTC days; `1h`: hours (31 days' at most; without a range, the last 24).",
        ),  # fmt: skip
        OpenApiParameter("limit", int, description="Buckets a page, 1 to the most a query covers (default: all)."),
        OpenApiParameter("page", str, description="The `next_page` of the page before (with the same query)."),
        OpenApiParameter(
            "group_by",
            {"type": "array", "items": {"type": "string", "enum": list(groups)}},
            description=f"{grouping} May be given more than once: split by each.",
        ),
    ]


@dataclass(frozen=True)
class Range:
    start: datetime  # this page's first bucket's start (UTC)
    end: datetime  # and its last one's end, exclusive
    width: timedelta  # a bucket
    fields: tuple[str, ...]  # what each bucket's results are grouped by
    next_page: datetime | None = None  # the next page's first bucket, where the range goes on

    @property
    def hourly(self) -> bool:
        return self.width < timedelta(days=1)

    def buckets(self) -> Iterator[datetime]:
        at = self.start
        while at < self.end:
            yield at
            at += self.width

    def cursor(self) -> str | None:
        """``next_page``: the next page's first bucket, as a day or an hour (UTC)."""
        if self.next_page is None:
            return None
        return self.next_page.strftime("%Y-%m-%dT%H:00:00Z" if self.hourly else "%Y-%m-%d")


def _refuse(message: str, param: str, code: str | None = None) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


def _date(request: Request, name: str) -> datetime | None:
    """The UTC midnight of a date parameter (None: not given)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise _refuse(f"'{name}' must be a date as YYYY-MM-DD, got '{errors.shown(raw)}'.", name) from None
    # Day arithmetic (the default start, the end's next day) must stay within datetime's range.
    if not FIRST_DAY <= day <= LAST_DAY:
        raise _refuse(f"'{name}' must be between {FIRST_DAY} and {LAST_DAY}, got '{errors.shown(raw)}'.", name)
    return datetime.combine(day, time.min, UTC)


def _time(request: Request, name: str) -> datetime | None:
    """A Unix time parameter (None: not given)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    lo = int(datetime.combine(FIRST_DAY, time.min, UTC).timestamp())
    hi = int(datetime.combine(LAST_DAY, time.max, UTC).timestamp())
    try:
        seconds = int(raw)
    except ValueError:
        raise _refuse(f"'{name}' must be a Unix time in seconds, got '{errors.shown(raw)}'.", name) from None
    if not lo < seconds <= hi:
        raise _refuse(f"'{name}' must be between {lo + 1} and {hi}, got {seconds}.", name)
    return datetime.fromtimestamp(seconds, UTC)


def _floor(at: datetime, width: timedelta) -> datetime:
    """The start of the bucket ``at`` falls in."""
    day = datetime.combine(at.date(), time.min, UTC)
    return day + (at - day) // width * width


def range_params(request: Request, groups: dict, filters: tuple[str, ...] = ()) -> Range:
    """The page of buckets asked for (default: the last 7 days, by day only, in one page). ``group_by`` may come more
    than once, as OpenAI's array: the results split by all of them. ``filters``: the route's other parameters."""
    params = request.query_params
    known = KNOWN | set(filters)
    unknown = sorted(set(params) - known)
    if unknown:
        raise _refuse(f"Unknown parameter: '{errors.shown(unknown[0])}'. This route takes {', '.join(sorted(known))}.",
                      unknown[0], "unknown_parameter")  # fmt: skip
    width_name = params.get("bucket_width", "1d")
    if width_name not in WIDTHS:
        raise _refuse(f"'bucket_width' must be '1d' (days) or '1h' (hours), got '{errors.shown(width_name)}'.",
                      "bucket_width")  # fmt: skip
    width, most, default_count, unit = WIDTHS[width_name]
    names = _TIMES if any(name in params for name in _TIMES) else _DATES
    if names == _TIMES and any(name in params for name in _DATES):
        raise _refuse("Give 'start' / 'end' (dates) or 'start_time' / 'end_time' (Unix seconds), not both.", "start")
    if names == _TIMES:  # (the end read first: its error is the one a range wrong at both ends gets)
        after = _time(request, "end_time")
        first = _time(request, "start_time")
        end = None if after is None else _floor(after - timedelta(seconds=1), width) + width  # exclusive
    else:
        last_day = _date(request, "end")
        first = _date(request, "start")
        end = None if last_day is None else last_day + timedelta(days=1)  # the whole last day
    end = end or _floor(datetime.now(UTC), width) + width  # the bucket now falls in, the last
    start = end - default_count * width if first is None else _floor(first, width)
    asked = params.getlist("group_by") or ["day"]
    wrong = next((name for name in asked if name not in groups), None)
    if wrong is not None:
        raise _refuse(f"'group_by' must be one of {', '.join(groups)}, got '{errors.shown(wrong)}'.", "group_by")
    fields = tuple(dict.fromkeys(field for name in asked for field in groups[name]))  # once each, in order
    if start >= end:
        raise _refuse(f"'{names[0]}' must not be after '{names[1]}'.", names[0])
    if (end - start) / width > most:
        raise _refuse(f"Ask for at most {most} {unit} at a time.", names[1])
    return _paged(request, Range(start, end, width, fields), most)


def _paged(request: Request, whole: Range, most: int) -> Range:
    """The page ``page`` (a first bucket) and ``limit`` (buckets) pick from the range."""
    params = request.query_params
    start = whole.start
    if "page" in params:
        try:
            first = datetime.fromisoformat(params["page"])
            first = first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)
        except (ValueError, OverflowError):  # not a time, or one that leaves datetime's range in UTC
            first = None
        if first is None or not whole.start <= first < whole.end or _floor(first, whole.width) != first:
            raise _refuse(f"'page' must be the 'next_page' of an earlier page of this query, got "
                          f"'{errors.shown(params['page'])}'.", "page")  # fmt: skip
        start = first
    end, more = whole.end, None
    if "limit" in params:
        limit = params["limit"]
        if not (limit.isascii() and limit.isdigit() and len(limit) <= 6) or not 1 <= int(limit) <= most:
            raise _refuse(f"'limit' must be an integer from 1 to {most}, got '{errors.shown(limit)}'.", "limit")
        if int(limit) < (whole.end - start) / whole.width:  # (counted, not added: the range may end at datetime's)
            end = more = start + int(limit) * whole.width
    return Range(start, end, whole.width, whole.fields, more)


MAX_FILTER_VALUES = 100


def filter_values(request: Request, name: str) -> list[str]:
    """A filter's values (``range_params``' ``filters``): at most 100 ids, each up to 256 characters and without NUL
    (which PostgreSQL's text refuses)."""
    values = request.query_params.getlist(name)
    if len(values) > MAX_FILTER_VALUES or any(not 0 < len(v) <= 256 or "\x00" in v for v in values):
        raise _refuse(f"'{name}' takes up to {MAX_FILTER_VALUES} ids of 1 to 256 characters.", name)
    return values
