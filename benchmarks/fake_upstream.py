"""A fast fake OpenAI-compatible upstream for gateway benchmarks: answers chat completions at once.

A bare asyncio HTTP/1.1 server (keep-alive, no framework) so that it costs as little as possible and
the time measured through a gateway is the gateway's. Non-streaming calls get a fixed completion with
usage; streaming calls get ``--chunks`` content chunks, a usage chunk when asked, and ``[DONE]``,
written back to back.

    python benchmarks/fake_upstream.py --port 9000 [--chunks 16] [--refuse 503]

``--refuse STATUS`` answers every chat completion with that status and OpenAI's error object instead: a deployment
that is stopping (503) or rate limited (429), for the fallback benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


def _completion(model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how can I help?"},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 8, "total_tokens": 17},
    }).encode()  # fmt: skip


def _chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None, choices=True) -> bytes:
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if choices else []
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _stream(model: str, chunks: int, include_usage: bool, running_usage: bool) -> list[bytes]:
    events = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": ""} if i == 0 else {"content": f" tok{i}"}
        usage = {"prompt_tokens": 9, "completion_tokens": i, "total_tokens": 9 + i} if running_usage else None
        events.append(_chunk(model, delta, None, usage))
    events.append(_chunk(model, {}, "stop"))
    if include_usage:
        usage = {"prompt_tokens": 9, "completion_tokens": chunks - 1, "total_tokens": 8 + chunks}
        events.append(_chunk(model, {}, None, usage, choices=False))
    events.append(b"data: [DONE]\n\n")
    return events


class FakeUpstream(asyncio.Protocol):
    chunks = 16
    refuse: int | None = None

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            pairs = (line.split(":", 1) for line in head[1:] if ":" in line)
            headers = {k.strip().lower(): v.strip() for k, v in pairs}
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4 : head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length :]
            self.answer(head[0], body)

    def answer(self, request_line: str, body: bytes) -> None:
        method, path, _ = request_line.split(" ", 2)
        if method == "GET" and path.endswith("/models"):
            payload = json.dumps({"object": "list", "data": [{"id": "fake-chat", "object": "model"}]}).encode()
            return self._send(200, b"application/json", payload)
        if method != "POST" or not path.endswith("/chat/completions"):
            return self._send(404, b"application/json", b'{"error": {"message": "not found", "type": "invalid"}}')
        if self.refuse is not None:
            error = {"message": "refused on purpose", "type": "server_error", "param": None, "code": None}
            return self._send(self.refuse, b"application/json", json.dumps({"error": error}).encode())
        request = json.loads(body or b"{}")
        model = request.get("model", "fake-chat")
        if not request.get("stream"):
            return self._send(200, b"application/json", _completion(model))
        options = request.get("stream_options") or {}
        usage, running = bool(options.get("include_usage")), bool(options.get("continuous_usage_stats"))
        events = _stream(model, self.chunks, usage, running)
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
            + b"0\r\n\r\n"
        )

    def _send(self, status: int, content_type: bytes, payload: bytes) -> None:
        self.transport.write(
            b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (status, content_type, len(payload), payload)
        )


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(FakeUpstream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--refuse", type=int, help="answer every chat completion with this status (an error)")
    args = parser.parse_args()
    FakeUpstream.chunks, FakeUpstream.refuse = args.chunks, args.refuse
    asyncio.run(main(args.port))
