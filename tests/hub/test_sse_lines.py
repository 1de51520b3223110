"""The gateway reads an upstream stream's lines as server-sent events define them: split at newlines only."""

from __future__ import annotations

import asyncio
import json

import httpx

from hub.api.relay_common import sse_lines


def test_unicode_line_separators_inside_json_do_not_split_an_event():
    # A model may generate U+2028, U+2029 or U+0085; JSON written with ensure_ascii=False carries them raw.
    text = "one\u2028two\u2029three\x85four"
    events = [{"choices": [{"delta": {"content": text}}]}, {"choices": [], "usage": {"total_tokens": 3}}]
    body = "".join(f"data: {json.dumps(e, ensure_ascii=False)}\r\n\r\n" for e in events) + "data: [DONE]"
    raw = body.encode()
    # delivered in awkward pieces: a multi-byte character and a line end cut in two
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]
    response = httpx.Response(200, stream=httpx.ByteStream(b"".join(pieces)))

    async def read():
        return [line async for line in sse_lines(response)]

    lines = [line for line in asyncio.run(read()) if line]
    assert [json.loads(line[5:]) for line in lines[:2]] == events
    assert lines[2] == "data: [DONE]"
