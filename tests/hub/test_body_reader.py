"""One body reader (``hub/api/body.py``) for the API edge and the console's playground relay: the same bodies and
Content-Types, sent to each through its own ASGI entry, are accepted or refused alike, with the same OpenAI
error; ``application/*+json`` and a ``charset`` parameter included."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.sessions import SessionMiddlewareStack
from django.conf import settings as django_settings
from django.test import Client

from accounts import services
from hub.api import body as body_reader
from hub.console.live import PlaygroundRelay
from tests.support.edge import post_through_edge, request_messages

pytestmark = pytest.mark.django_db(transaction=True)  # both authenticate in other threads: rows must be committed

LIMIT = 8192
CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "Hi"}]}
GOOD = json.dumps(CHAT).encode()
JSON = "application/json"


def _nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


# (id, content type (None: no header), body, the outcome both must give: "accepted" or (status, error code))
CASES = [
    ("json", JSON, GOOD, "accepted"),
    ("charset", "application/json; charset=utf-8", GOOD, "accepted"),
    ("plus-json", "application/vnd.api+json", GOOD, "accepted"),
    ("plus-json-params", "Application/Merge-Patch+JSON; charset=UTF-8", GOOD, "accepted"),
    ("upper-case", "Application/JSON", GOOD, "accepted"),
    ("at-the-limit", JSON, GOOD + b" " * (LIMIT - len(GOOD)), "accepted"),
    ("text", "text/plain", GOOD, (415, "unsupported_media_type")),
    ("no-content-type", None, GOOD, (415, "unsupported_media_type")),
    ("form", "application/x-www-form-urlencoded", b"model=chat-small", (415, "unsupported_media_type")),
    ("json-suffix-not-application", "text/vnd.thing+json", GOOD, (415, "unsupported_media_type")),
    ("text-and-broken", "text/plain", b"{not json", (415, "unsupported_media_type")),  # the type is checked first
    ("broken", JSON, b"{not json", (400, "invalid_json")),
    ("empty", JSON, b"", "accepted"),  # as OpenAI's SDK sends a POST without a body (batches.cancel): {}
    ("empty-text", "text/plain", b"", (415, "unsupported_media_type")),
    ("no-body", None, b"", "accepted"),  # no body at all: {} (a route needing fields then names the missing one)
    ("not-utf8", JSON, b'{"model": "\xff"}', (400, "invalid_json")),
    ("huge-int", JSON, b'{"seed": ' + b"9" * 4400 + b"}", (400, "invalid_json")),  # past Python's 4300 digits
    ("nan", "application/vnd.api+json", b'{"model": "m", "temperature": NaN}', (400, "invalid_json")),
    ("too-deep", JSON, _nested(100), (400, "invalid_json")),
    ("array", JSON, b"[1, 2]", (400, None)),
    ("string", JSON, b'"hello"', (400, None)),
    ("null", JSON, b"null", (400, None)),
    ("too-large", JSON, GOOD + b" " * (LIMIT + 1 - len(GOOD)), (413, "request_too_large")),
]


@pytest.fixture
def small_limit(settings):
    settings.HUB_MAX_BODY_BYTES = LIMIT
    return LIMIT


@pytest.fixture
def secret(acme):
    return services.issue_key(acme.tenant, name="edge").secret


@pytest.fixture
def session_cookie(acme):
    client = Client()
    client.force_login(acme.member)  # a member may use the playground
    return f"{django_settings.SESSION_COOKIE_NAME}={client.cookies[django_settings.SESSION_COOKIE_NAME].value}"


@pytest.fixture
def playground_reached(monkeypatch):
    """What the relay would send to the model, instead of sending it: the body it read, answered 200."""
    reached = []

    async def serve(self):
        reached.append(self.scope["hub"].json)
        await self.send({"type": "http.response.start", "status": 200, "headers": []})
        await self.send({"type": "http.response.body", "body": b"{}"})

    monkeypatch.setattr(PlaygroundRelay, "_serve", serve)
    return reached


def _headers(content_type: str | None, body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode()), *extra]
    return headers + ([(b"content-type", content_type.encode())] if content_type is not None else [])


def _outcome(sent: list[dict], passed: list) -> tuple:
    if passed:
        return ("accepted", passed[0])
    assert sent[0]["type"] == "http.response.start", sent
    return (sent[0]["status"], json.loads(sent[1]["body"]))


def through_edge(secret: str, content_type: str | None, body: bytes) -> tuple:
    passed, sent = post_through_edge(secret, body, content_type)
    return _outcome(sent, passed)


def through_playground(
    cookie: str, content_type: str | None, body: bytes, reached: list, *, chunk: int | None = None
) -> tuple:
    """POST ``body`` to the playground relay as hub/asgi.py routes it (sessions, the tenant from the URL), in
    ``chunk``-byte messages (None: one)."""
    sent: list[dict] = []
    messages = request_messages(body, chunk)

    async def run():
        answered = asyncio.Event()

        async def receive():
            if messages:
                return messages.pop(0)
            await answered.wait()  # the client stays until it has the answer
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.set()

        scope = {"type": "http", "method": "POST", "path": "/console/t/acme/playground/chat/completions",
                 "query_string": b"", "url_route": {"args": (), "kwargs": {"tenant": "acme"}},
                 "headers": _headers(content_type, body, (b"origin", b"http://127.0.0.1:8000"),
                                     (b"cookie", cookie.encode()))}  # fmt: skip
        await asyncio.wait_for(SessionMiddlewareStack(PlaygroundRelay.as_asgi())(scope, receive, send), 30)

    before = len(reached)
    asyncio.run(run())
    assert [m["type"] for m in sent].count("http.response.start") == 1, sent  # one answer, however many chunks
    return _outcome(sent, reached[before:])


@pytest.mark.parametrize(("content_type", "body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_edge_and_the_playground_read_a_body_alike(
    small_limit, secret, session_cookie, playground_reached, content_type, body, expected
):
    edge = through_edge(secret, content_type, body)
    playground = through_playground(session_cookie, content_type, body, playground_reached)
    assert edge == playground
    if expected == "accepted":
        assert edge == ("accepted", json.loads(body) if body else {})
    else:
        status, code = expected
        assert edge[0] == status and edge[1]["error"]["code"] == code, edge
        assert edge[1]["error"]["type"] == "invalid_request_error"
        assert set(edge[1]["error"]) == {"message", "type", "param", "code"}


def test_a_body_too_large_is_refused_as_it_arrives_by_both(small_limit, secret, session_cookie, playground_reached):
    """No Content-Length to go by (chunked): both count the bytes as they come, with the same 413."""
    body = GOOD + b" " * (2 * LIMIT)
    expected = (413, body_reader.too_large(LIMIT).body())
    assert through_playground(session_cookie, JSON, body, playground_reached, chunk=1000) == expected
    passed, sent = post_through_edge(secret, body, JSON, chunk=1000)
    assert _outcome(sent, passed) == expected


def test_the_playground_still_checks_the_content_type_before_the_session(small_limit, playground_reached):
    """The shared reader did not move the playground's 415 behind its sign-in: without a session, a non-JSON
    request is a 415, a JSON one a 401."""
    status, error = through_playground("", "text/plain", GOOD, playground_reached)
    assert (status, error["error"]["code"]) == (415, "unsupported_media_type")
    status, error = through_playground("", "application/vnd.api+json", GOOD, playground_reached)
    assert (status, error["error"]["code"]) == (401, "session_required")
    assert not playground_reached
