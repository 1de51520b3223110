"""JSON that keeps U+0000 through PostgreSQL: ``jsonb`` refuses a NUL in any string ("\\u0000 cannot be converted
to text"), yet a request's text may hold one and a model may write one (a byte-level tokenizer can decode to 0x00).
A stored Responses API answer must come back as the client got it, so the ``JSONField``s that keep request and
model text use this encoder and decoder.

A value with no NUL anywhere is stored exactly as before, so rows written earlier read back unchanged. A value
with one is stored as ``{WRAPPER: value'}``, where every string of ``value'`` (keys too) has U+E000 (a private-use
character) written as U+E000 "1" and NUL as U+E000 "0": a reversible escape, whatever the text holds. The fields
hold lists or response objects, which never are a one-key object under ``WRAPPER``, so a wrapped value cannot be
mistaken for a stored one.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

WRAPPER = "llm_hub:nul_escaped"
_ESCAPE = "\ue000"
_ESCAPED = re.compile(_ESCAPE + "([01])")
_UNESCAPE = {"0": "\x00", "1": _ESCAPE}


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _map_strings(value: Any, change) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {change(k) if isinstance(k, str) else k: _map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(v, change) for v in value]
    return value


def _escape(text: str) -> str:
    return text.replace(_ESCAPE, _ESCAPE + "1").replace("\x00", _ESCAPE + "0")


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(1)], text) if _ESCAPE in text else text


def wrap(value: Any) -> Any:
    """``value`` as it is stored: itself, or escaped inside the wrapper when it holds a NUL."""
    return {WRAPPER: _map_strings(value, _escape)} if _has_nul(value) else value


def unwrap(value: Any) -> Any:
    """The value ``wrap`` was given."""
    if isinstance(value, dict) and len(value) == 1 and WRAPPER in value:
        return _map_strings(value[WRAPPER], _unescape)
    return value


class NulSafeEncoder(DjangoJSONEncoder):
    def encode(self, o: Any) -> str:
        return super().encode(wrap(o))


class NulSafeDecoder(json.JSONDecoder):
    def decode(self, s: str, *args: Any, **kwargs: Any) -> Any:
        return unwrap(super().decode(s, *args, **kwargs))
