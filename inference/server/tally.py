"""What this service counted for each call of the hub, kept a while after it ended, so that a gateway that died
before it could meter a call (a hub process killed, its node lost) can still be metered by another one.

The hub names each call with a unique ``x-usage-id`` header (several HTTP requests may share one: the rounds of
a Responses request). The ``Tallied`` middleware opens that id's ``Tally`` for the request; the routes add the
tokens as they count them (prompt tokens when submitted, output tokens as they are sampled, so an aborted stream
counts what it generated); ``GET /v1/requests/{usage_id}`` answers the sums, and whether a call is still running.
Entries live ``LEDGER_SECONDS`` after their last call ended, at most ``LEDGER_ENTRIES`` of them (oldest first out):
about 200 bytes each. Everything runs on the event loop's thread: no locks.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse

from inference.server.errors import NotFound

LEDGER_SECONDS = 3600.0
LEDGER_ENTRIES = 100_000
USAGE_ID_HEADER = b"x-usage-id"
_USAGE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class Tally:
    """One usage id's counts. ``outputs``: per sequence (run id, choice), its (sampled, cached prompt) tokens so far."""

    usage_id: str
    prompt_tokens: int = 0
    audio_seconds: float = 0.0
    outputs: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    calls: int = 0  # HTTP requests of this id still running
    ended: float = 0.0  # monotonic time the last one ended

    def prompt(self, tokens: int, audio_seconds: float = 0.0) -> None:
        """A prompt submitted to the engine (once, whatever its choices, as usage counts it)."""
        self.prompt_tokens += tokens
        self.audio_seconds += audio_seconds

    def output(self, run_id: str, index: int, tokens: int, cached: int = 0) -> None:
        """A sequence's output so far (a running total, as ``SeqDelta.completion_tokens``)."""
        self.outputs[run_id, index] = (tokens, cached)

    def answer(self) -> dict:
        completion = sum(tokens for tokens, _ in self.outputs.values())
        return {
            "id": self.usage_id, "object": "usage_tally", "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion, "total_tokens": self.prompt_tokens + completion,
            "cached_tokens": sum(cached for _, cached in self.outputs.values()),
            "audio_seconds": round(self.audio_seconds, 3), "running": self.calls > 0,
        }  # fmt: skip


class Ledger:
    def __init__(self, entries: int = LEDGER_ENTRIES, seconds: float = LEDGER_SECONDS, journaled: bool = False):
        """``journaled``: a journal asks for what ``changed`` (without one, nothing is kept for it)."""
        self.entries, self.seconds, self.journaled = entries, seconds, journaled
        self._tallies: OrderedDict[str, Tally] = OrderedDict()  # least recently opened or ended first
        self._changed: dict[str, Tally] = {}  # (journaled) opened since ``changed`` was last asked, or running

    def open(self, usage_id: str) -> Tally:
        tally = self._tallies.pop(usage_id, None) or Tally(usage_id)
        self._tallies[usage_id] = tally
        tally.calls += 1
        if self.journaled:
            self._changed[usage_id] = tally
        while len(self._tallies) > self.entries:
            self._tallies.popitem(last=False)
        return tally

    def close(self, tally: Tally) -> None:
        tally.calls -= 1
        tally.ended = time.monotonic()
        if self._tallies.get(tally.usage_id) is tally:  # the order is the last activity's
            self._tallies.move_to_end(tally.usage_id)

    def changed(self) -> list[Tally]:
        """The tallies that may have counted something since the last time this was asked (``journal.py``)."""
        changed = list(self._changed.values())
        self._changed = {k: t for k, t in self._changed.items() if t.calls > 0}  # a running one counts on
        return changed

    def restore(self, tally: Tally) -> None:
        """An ended call read back from the journal (unless this ledger has it already)."""
        if tally.usage_id not in self._tallies:
            self._tallies[tally.usage_id] = tally

    def get(self, usage_id: str) -> Tally | None:
        self._forget_old()
        return self._tallies.get(usage_id)

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self.seconds
        for _ in range(len(self._tallies)):
            oldest = next(iter(self._tallies.values()))
            if oldest.calls:  # still running: its end moves it back anyway
                self._tallies.move_to_end(oldest.usage_id)
            elif oldest.ended > cutoff:
                return
            else:
                self._tallies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tallies)


def tally_of(request: Request) -> Tally:
    """The request's tally (a throwaway one when the caller named no usage id)."""
    tally = request.scope.get("tally")
    return Tally("") if tally is None else tally


class Tallied:
    """ASGI middleware: a request that carries ``x-usage-id`` counts into that id's tally until it ends (its stream
    sent, or its client gone and its generation aborted)."""

    def __init__(self, app, ledger: Ledger) -> None:
        self.app, self.ledger = app, ledger

    async def __call__(self, scope, receive, send) -> None:
        usage_id = None
        if scope["type"] == "http":
            raw = dict(scope["headers"]).get(USAGE_ID_HEADER)
            usage_id = raw.decode("latin-1") if raw else None
        if usage_id is None or not _USAGE_ID.fullmatch(usage_id):
            return await self.app(scope, receive, send)
        tally = self.ledger.open(usage_id)
        try:
            await self.app({**scope, "tally": tally}, receive, send)
        finally:
            self.ledger.close(tally)


async def requests_usage(request: Request) -> JSONResponse:
    """``GET /v1/requests/{usage_id}``: what this service counted for a hub call, or 404 once it is forgotten (or
    was never seen: another deployment served it)."""
    usage_id = request.path_params["usage_id"]
    tally = request.app.state.ledger.get(usage_id)
    if tally is None:
        return NotFound(f"No call with usage id '{usage_id[:64]}' is known here.", param="usage_id",
                        code="usage_id_not_found").response()  # fmt: skip
    return JSONResponse(tally.answer())
