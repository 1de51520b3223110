"""``HUB_CORS_ALLOWED_ORIGINS`` (``hub/api/cors.py``): a list allows those origins alone, empty turns CORS off."""

from __future__ import annotations

import asyncio

from hub.api.cors import ApiCorsMiddleware


def _call(method: str, path: str, origin: str, private: bool = False) -> tuple[list[dict], list[str]]:
    """(the messages sent, the requests that reached the app behind the middleware)."""
    sent, reached = [], []

    async def app(scope, receive, send):
        reached.append(scope["method"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode()), (b"access-control-request-method", b"POST")]
    headers += [(b"access-control-request-private-network", b"true")] if private else []
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "headers": headers}
    asyncio.run(ApiCorsMiddleware(app)(scope, receive, send))
    return sent, reached


def _headers(sent: list[dict]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in sent[0]["headers"]}


def test_a_list_of_origins_allows_those_alone(settings):
    settings.HUB_CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    sent, reached = _call("OPTIONS", "/v1/chat/completions", "https://app.example.com")
    headers = _headers(sent)
    assert sent[0]["status"] == 200 and reached == []
    assert headers["access-control-allow-origin"] == "https://app.example.com" and headers["vary"].startswith("Origin")
    # a page on the internet calling a hub on a private network (Chromium's Private Network Access preflight)
    sent, reached = _call("OPTIONS", "/v1/chat/completions", "https://app.example.com", private=True)
    assert sent[0]["status"] == 200 and _headers(sent)["access-control-allow-private-network"] == "true"
    sent, reached = _call("OPTIONS", "/v1/chat/completions", "https://evil.example.com")
    assert sent[0]["status"] == 400 and reached == [] and "access-control-allow-origin" not in _headers(sent)
    sent, reached = _call("GET", "/v1/models", "https://evil.example.com")
    assert reached == ["GET"] and "access-control-allow-origin" not in _headers(sent)
    sent, reached = _call("GET", "/v2/models", "https://app.example.com")
    assert reached == ["GET"] and _headers(sent)["access-control-allow-origin"] == "https://app.example.com"


def test_empty_turns_cors_off_and_the_console_never_has_it(settings):
    settings.HUB_CORS_ALLOWED_ORIGINS = []
    sent, reached = _call("OPTIONS", "/v1/chat/completions", "https://app.example.com")
    assert reached == ["OPTIONS"] and "access-control-allow-origin" not in _headers(sent)  # the edge's answer
    settings.HUB_CORS_ALLOWED_ORIGINS = ["*"]
    sent, reached = _call("OPTIONS", "/console/t/acme/playground/chat/completions", "https://app.example.com")
    assert reached == ["OPTIONS"] and "access-control-allow-origin" not in _headers(sent)
