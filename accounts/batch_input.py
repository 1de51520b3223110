"""A Batch API input file, read and checked as OpenAI checks it before a batch runs: JSON Lines, each line
``{"custom_id": ..., "method": "POST", "url": <the batch's endpoint>, "body": {...}}``, custom ids unique, at most
``MAX_REQUESTS`` lines. Any failing line fails the whole batch, with OpenAI's ``BatchError`` objects (code, message,
param, line). The bodies themselves are checked when each request runs, by the gateway, as any request is."""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_REQUESTS = 50_000  # OpenAI's
MAX_CUSTOM_ID_CHARS = 512
MAX_ERRORS = 100  # reported; the rest are counted in the last one


@dataclass(frozen=True)
class Request:
    line: int  # 1-based
    custom_id: str
    body: dict


@dataclass(frozen=True)
class LineError:
    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True)
class Input:
    requests: list[Request]
    errors: list[LineError]

    @property
    def model(self) -> str:
        """The model every request names, or "" when they differ."""
        models = {r.body.get("model") for r in self.requests}
        found = models.pop() if len(models) == 1 else None
        return found if isinstance(found, str) else ""


def _check(value: object, line: int, endpoint: str) -> tuple[str, dict] | LineError:
    if not isinstance(value, dict):
        return LineError("invalid_json_line", "The line is not a JSON object.", line)
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineError("missing_required_parameter", "Each line needs a 'custom_id' string.", line, "custom_id")
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        return LineError("invalid_value", f"'custom_id' is longer than {MAX_CUSTOM_ID_CHARS} characters.", line,
                         "custom_id")  # fmt: skip
    if value.get("method") != "POST":
        return LineError("invalid_value", "'method' must be 'POST'.", line, "method")
    if value.get("url") != endpoint:
        return LineError("mismatched_endpoint", f"'url' must be the batch's endpoint, '{endpoint}'.", line, "url")
    body = value.get("body")
    if not isinstance(body, dict):
        return LineError("missing_required_parameter", "Each line needs a 'body' object.", line, "body")
    if not isinstance(body.get("model"), str):
        return LineError("missing_required_parameter", "The body needs a 'model' string.", line, "body.model")
    if body.get("stream") not in (None, False):
        return LineError("invalid_value", "A batch request cannot be streamed ('stream' must be false).", line,
                         "body.stream")  # fmt: skip
    if body.get("background") not in (None, False):  # its answer would be a queued response, run outside the batch
        return LineError("invalid_value", "A batch request cannot run in the background ('background' must be "
                         "false).", line, "body.background")  # fmt: skip
    return custom_id, body


def read(content: bytes, endpoint: str) -> Input:
    """The requests of ``content``, or the errors that fail the batch (then ``requests`` is incomplete)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return Input([], [LineError("invalid_file", "The input file is not UTF-8 text.")])
    requests: list[Request] = []
    errors: list[LineError] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            checked = _check(json.loads(raw), number, endpoint)
        except (ValueError, RecursionError):
            checked = LineError("invalid_json_line", "The line is not valid JSON.", number)
        if isinstance(checked, tuple) and checked[0] in seen:
            checked = LineError("duplicate_custom_id", f"The custom_id '{checked[0][:64]}' is used more than once.",
                                number, "custom_id")  # fmt: skip
        if isinstance(checked, LineError):
            errors.append(checked)
            continue
        seen.add(checked[0])
        requests.append(Request(number, *checked))
    if not requests and not errors:
        errors.append(LineError("empty_file", "The input file has no requests."))
    if len(requests) > MAX_REQUESTS:
        errors.append(LineError("too_many_requests", f"A batch holds at most {MAX_REQUESTS:,} requests."))
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS + 1
        errors = [*errors[: MAX_ERRORS - 1], LineError("too_many_errors", f"{more} more lines failed.")]
    return Input(requests, errors)
