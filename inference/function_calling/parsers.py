"""Tool calls out of a model's answer, incrementally: the same parser serves streams (text fed as it comes) and
whole answers (fed at once), so a streamed answer assembles to exactly the non-streamed one.

The formats are those of ``formats.py``. A call counts only if it names one of the request's tools and its
arguments are a JSON object. Two modes per call section:

- *live* (the model's own format under a grammar, which guarantees well-formed calls): a call is announced as
  soon as its name is complete, and its ``arguments`` text follows in pieces as the model writes it;
- *held* (no grammar, and the fenced ```json fallback of every format): a section is kept back until it is
  complete, then sent as calls if every call in it is valid, or else as plain content (never an error).

Whitespace around calls is not content; content is ``None`` when only calls were written.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Generator
from dataclasses import dataclass, field

from inference.function_calling.formats import ToolFormat, get_format

_EOF = "\x00EOF"  # end of the answer, sent to a section still open
_PYTHON_TAG = "<|python_tag|>"
_FENCE = "```"


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON object, as the model wrote it
    id: str = field(default_factory=new_call_id)

    def to_openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Content:
    text: str


@dataclass
class CallDelta:
    """A piece of call ``index``: the first one carries ``id`` and ``name``, later ones ``arguments`` text."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


Event = Content | CallDelta


@dataclass
class Parsed:
    content: str | None  # text outside the calls (None when there is none)
    tool_calls: list[ToolCall]


class _Invalid(Exception):
    """The section is not (or no longer) a well-formed list of calls of the request's tools."""


Chars = Generator[None, str, str]


class ToolCallParser:
    """Feed the answer's text with ``feed`` (any chunking), then call ``finish``; both return events."""

    def __init__(self, fmt: ToolFormat | str, tool_names: list[str], live: bool = False, forced: bool = False,
                 named: str | None = None):  # fmt: skip
        """``forced``: a grammar makes the whole answer calls (tool_choice "required" or a named function), so what
        an answer cut short (``max_tokens``) left of a call's markup is never content; ``named``: that function,
        shown called (its arguments unwritten) if the cut came before the model wrote its name."""
        self.fmt = get_format(fmt) if isinstance(fmt, str) else fmt
        self.tools = set(tool_names)
        self.live = live  # the model's own format is grammar-constrained
        self.forced, self.named = forced, named
        self.calls: list[ToolCall] = []
        self._out: list[Event] = []
        self._text = ""  # text not yet sent: may be the start of a trigger
        self._ws = ""  # whitespace not yet sent: dropped if a call follows
        self._started = False  # llama3: a call can only open the answer
        self._section: Generator | None = None
        self._section_live = False
        self._raw: list[str] = []  # the open section's text, trigger included (held sections fall back to it)
        self._pending: list[ToolCall] = []  # calls of a held section, sent when it completes
        self._current: int | None = None  # index of the live call whose arguments are being written
        self._early_args = ""  # arguments written before the name (sent once the name is known)
        self._emitted_in_section = False  # a live call of the open section has gone out
        # trigger -> whether it opens the model's own format (else the fenced fallback)
        self._triggers = {_FENCE: True} if self.fmt.name == "json_block" else {_FENCE: False}
        if self.fmt.name not in ("json_block", "llama3"):
            self._triggers = {self.fmt.open.strip(): True, _FENCE: False}

    # --- driver -------------------------------------------------------------------------------------

    def feed(self, text: str) -> list[Event]:
        for ch in text:
            if self._section is not None:
                self._section_char(ch)
            else:
                self._text_char(ch)
        self._flush_text(final=False)
        return self._take()

    def finish(self) -> list[Event]:
        if self._section is not None:
            self._section_char(_EOF)
        if self.forced:
            self._text, self._ws = "", ""  # a call's markup cut short
            if self.named is not None and not self.calls:
                call = ToolCall(self.named, "")
                self._out.append(CallDelta(0, id=call.id, name=call.name))
                self.calls.append(call)
        self._flush_text(final=True)
        if self._ws and not self.calls:
            self._out.append(Content(self._ws))
        self._ws = ""
        return self._take()

    def parse(self, text: str) -> Parsed:
        """A whole answer at once."""
        return assemble(self.feed(text) + self.finish())

    def _take(self) -> list[Event]:
        """The events since the last call, neighbours of the same kind merged."""
        merged: list[Event] = []
        for event in self._out:
            last = merged[-1] if merged else None
            if isinstance(event, Content) and isinstance(last, Content):
                last.text += event.text
            elif isinstance(event, CallDelta) and isinstance(last, CallDelta) and event.index == last.index \
                    and event.name is None:  # fmt: skip
                last.arguments += event.arguments
            else:
                merged.append(event)
        self._out = []
        return merged

    # --- text between calls ---------------------------------------------------------------------------

    def _text_char(self, ch: str) -> None:
        self._text += ch
        if self.fmt.at_start and not self._started:
            body = self._text.lstrip()
            if not body:
                return
            if body.startswith("{"):
                self._open_section(live=self.live, fence=False, start="{")
                return
            if body == _PYTHON_TAG:
                self._open_section(live=self.live, fence=False)
                return
            if _PYTHON_TAG.startswith(body):
                return
            self._started = True
        for trigger, own in self._triggers.items():
            if self._text.endswith(trigger):
                self._text = self._text[: -len(trigger)]
                self._content(self._text)
                self._text = ""
                self._raw = [trigger]
                self._open_section(live=own and self.live, fence=trigger == _FENCE)
                return

    def _flush_text(self, final: bool) -> None:
        """Send the text that cannot be the start of a trigger (all of it at the end)."""
        if self._section is not None or not self._text:
            return
        keep = 0
        if not final:
            if self.fmt.at_start and not self._started:
                return
            for trigger in self._triggers:
                for k in range(min(len(trigger) - 1, len(self._text)), 0, -1):
                    if self._text.endswith(trigger[:k]):
                        keep = max(keep, k)
                        break
        send, self._text = self._text[: len(self._text) - keep], self._text[len(self._text) - keep :]
        self._content(send)

    def _content(self, text: str) -> None:
        """Content, with trailing whitespace held back (it is dropped if a call follows)."""
        text = self._ws + text
        body = text.rstrip()
        self._ws = text[len(body) :]
        if body:
            self._out.append(Content(body))

    # --- call sections --------------------------------------------------------------------------------

    def _open_section(self, live: bool, fence: bool, start: str = "") -> None:
        self._started = True
        self._section_live = live
        if not self._raw:
            self._raw = [self._text]
        self._text = ""
        self._section = self._read_section(fence)
        next(self._section)
        for ch in start:
            self._section_char(ch, record=False)

    def _section_char(self, ch: str, record: bool = True) -> None:
        if record and ch != _EOF:
            self._raw.append(ch)
        assert self._section is not None
        try:
            self._section.send(ch)
        except StopIteration:
            self._close_section(ok=True)
        except _Invalid:
            self._close_section(ok=False)

    def _close_section(self, ok: bool) -> None:
        self._section = None
        raw, self._raw = "".join(self._raw), []
        pending, self._pending = self._pending, []
        self._current, self._early_args = None, ""
        if ok and pending:  # a held section, complete and valid: its calls go out whole
            self._ws = ""
            for call in pending:
                self._out.append(CallDelta(len(self.calls), id=call.id, name=call.name))
                self._out.append(CallDelta(len(self.calls), arguments=call.arguments))
                self.calls.append(call)
        elif not ok and not (self._section_live and raw and self._emitted_in_section) and not self.forced:
            self._content(raw)  # not calls after all: the text was content
        self._emitted_in_section = False

    def _read_section(self, fence: bool) -> Chars:
        """One section after its trigger: a call, a list of calls, or (llama3) calls separated by ``;``."""
        fmt = self.fmt
        if fence:
            ch = yield
            tag = ""
            while ch != _EOF and not ch.isspace() and ch not in "{[":
                tag += ch
                ch = yield
            if tag.lower() not in ("", "json"):
                raise _Invalid
            if ch.isspace():
                ch = yield from self._skip_ws()
            close = _FENCE
        else:
            ch = yield from self._skip_ws()
            close = fmt.close.strip()
        if fmt.at_start and not fence:  # llama3: objects separated by ";" up to the end
            while True:
                if ch != "{":
                    raise _Invalid
                yield from self._read_call()
                ch = yield from self._skip_ws(also=";")
                if ch == _EOF:
                    return ""
        if ch == "[":
            ch = yield from self._skip_ws()
            while True:
                if ch != "{":
                    raise _Invalid
                yield from self._read_call()
                ch = yield from self._skip_ws()
                if ch == ",":
                    ch = yield from self._skip_ws()
                elif ch == "]":
                    break
                else:
                    raise _Invalid
        elif ch == "{":
            yield from self._read_call()
        else:
            raise _Invalid
        if close:
            ch = yield from self._skip_ws()
            for i, expected in enumerate(close):
                if i:
                    ch = yield
                if ch != expected:
                    raise _Invalid
        return ""

    def _skip_ws(self, also: str = "") -> Chars:
        """The next character that is not whitespace (or in ``also``)."""
        ch = yield
        while ch != _EOF and (ch.isspace() or ch in also):
            ch = yield
        return ch

    def _read_call(self) -> Chars:
        """One ``{"name": ..., "arguments": {...}}`` object, its ``{`` already read."""
        name: str | None = None
        args: str | None = None
        streamed = False
        ch = yield from self._skip_ws()
        while True:
            if ch != '"':
                raise _Invalid
            key = json.loads((yield from self._read_string()))
            ch = yield from self._skip_ws()
            if ch != ":":
                raise _Invalid
            ch = yield from self._skip_ws()
            if key == "name" and name is None:
                if ch != '"':
                    raise _Invalid
                name = json.loads((yield from self._read_string()))
                if self._section_live:
                    self._start_live_call(name)
                ch = yield from self._skip_ws()
            elif key in ("arguments", "parameters") and args is None:
                streamed = self._section_live and ch == "{"
                args, ch = yield from self._read_value(ch, streamed)
            else:
                _, ch = yield from self._read_value(ch, False)
            if ch == ",":
                ch = yield from self._skip_ws()
            elif ch == "}":
                break
            else:
                raise _Invalid
        if name is None or args is None or name not in self.tools:
            raise _Invalid
        value = json.loads(args)
        if isinstance(value, str):  # some models double-encode the arguments
            try:
                value, args = json.loads(value), value
            except ValueError:
                raise _Invalid from None
        if not isinstance(value, dict):
            raise _Invalid
        if self._section_live:
            assert self._current is not None
            if self._early_args or not streamed:  # not sent as it came: send it whole now
                self._out.append(CallDelta(self._current, arguments=args))
            self.calls[self._current].arguments = args
            self._current, self._early_args = None, ""
        else:
            self._pending.append(ToolCall(name, args))

    def _start_live_call(self, name: str) -> None:
        if name not in self.tools:
            raise _Invalid
        self._ws = ""
        self._current = len(self.calls)
        call = ToolCall(name, "")
        self.calls.append(call)
        self._emitted_in_section = True
        self._out.append(CallDelta(self._current, id=call.id, name=name))

    def _read_string(self) -> Chars:
        """A JSON string, its opening quote already read; returns its raw text, quotes included."""
        text, escaped = '"', False
        while True:
            ch = yield
            if ch == _EOF or ch in "\n\r":
                raise _Invalid
            text += ch
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                return text

    def _read_value(self, first: str, stream: bool) -> Generator[None, str, tuple[str, str]]:
        """Any JSON value starting with ``first``; returns (its text, the next non-space character).
        With ``stream`` (a live call's arguments object) its text goes out as it comes."""
        if first == '"':
            text = yield from self._read_string()
            return text, (yield from self._skip_ws())
        if first in "{[":
            text, depth, in_string, escaped = first, 1, False, False
            self._args_piece(first, stream)
            while depth:
                ch = yield
                if ch == _EOF:
                    raise _Invalid
                text += ch
                self._args_piece(ch, stream)
                if in_string:
                    if escaped:
                        escaped = False
                    elif ch == "\\":
                        escaped = True
                    elif ch == '"':
                        in_string = False
                elif ch == '"':
                    in_string = True
                elif ch in "{[":
                    depth += 1
                elif ch in "}]":
                    depth -= 1
            try:
                json.loads(text)
            except ValueError:
                raise _Invalid from None
            return text, (yield from self._skip_ws())
        text, ch = first, (yield)
        while ch != _EOF and ch not in ",}] \t\r\n":
            text += ch
            ch = yield
        if ch != _EOF and ch.isspace():
            ch = yield from self._skip_ws()
        try:
            json.loads(text)
        except ValueError:
            raise _Invalid from None
        return text, ch

    def _args_piece(self, ch: str, stream: bool) -> None:
        if not stream:
            return
        if self._current is None:
            self._early_args += ch
        else:
            self._out.append(CallDelta(self._current, arguments=ch))


def assemble(events: list[Event]) -> Parsed:
    """What a client makes of the events: the content and the calls with their arguments put together."""
    content = "".join(e.text for e in events if isinstance(e, Content))
    calls: dict[int, ToolCall] = {}
    for e in events:
        if isinstance(e, CallDelta):
            if e.index not in calls:
                calls[e.index] = ToolCall(e.name or "", "", e.id or "")
            calls[e.index].arguments += e.arguments
    return Parsed(content or None, [calls[i] for i in sorted(calls)])


def parse_tool_calls(text: str, tool_names: list[str], fmt: str = "json_block", live: bool = False) -> Parsed:
    """The model's whole answer → content and tool calls in ``fmt`` (or fenced JSON); plain content when no
    valid call is found."""
    return ToolCallParser(fmt, tool_names, live).parse(text)
