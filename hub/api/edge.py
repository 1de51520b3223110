"""ASGI middleware in front of everything: request ids, and the checks every public API call shares.

For paths under ``/v1``, ``/v2`` and ``/vision`` it refuses oversized bodies (413, counted as
they arrive, not after), authenticates the bearer key (401), and for requests with a body
requires JSON (415) that parses to an object (400), read by ``hub/api/body.py`` as the console's
playground reads its own; the speech routes (``/audio/...``) take a multipart/form-data upload instead
(``hub/api/form.py``; up to ``HUB_MAX_AUDIO_BYTES``), and so do ``POST /files`` (up to ``HUB_MAX_FILE_BYTES``)
and ``POST /uploads/{id}/parts`` (``HUB_MAX_UPLOAD_PART_BYTES``), their text fields as ``json`` and their file as
``upload``.
What it learned is handed downstream as
``scope["hub"]`` (an ``EdgeContext``) so Django views and Channels consumers alike read the
tenant, key and parsed body from one place. Every response gets ``x-request-id``.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from accounts.authn import KeyContext
from hub.api import body as body_reader
from hub.api import errors, form
from hub.api.auth import authenticate
from hub.api.paths import base_of, is_api_path, is_file_upload_path, is_part_upload_path, is_upload_path

log = logging.getLogger(__name__)

_BODY_METHODS = {"POST", "PUT", "PATCH"}
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


@dataclass
class EdgeContext:
    request_id: str
    base: str  # "v1", "v2" or "vision"
    key: KeyContext | None = None
    json: Any = None  # the JSON body; a speech upload's text fields
    upload: form.Upload | None = None  # a speech upload's file
    extra: dict = field(default_factory=dict)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def host_allowed(host: str | None) -> bool:
    """Django's own Host rule (``ALLOWED_HOSTS``, from HUB_ALLOWED_HOSTS), for every route, the consumers' too."""
    domain, _port = split_domain_port(host or "")
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive, limit: int) -> tuple[bytes, list[dict]]:
    """Read the request body, stopping as soon as it exceeds ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), [message]
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks), []


class ApiEdgeMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        client_id = _header(scope, b"x-request-id")
        request_id = client_id if client_id and _CLIENT_REQUEST_ID.match(client_id) else new_request_id()
        rid_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), rid_header]}
            await send(message)

        server = scope.get("server") or ("", None)
        if not host_allowed(_header(scope, b"host") or server[0]):  # no Host (HTTP/1.0): the address, as Django
            error = errors.InvalidRequest(
                "Invalid Host header: this hub does not answer for that name (HUB_ALLOWED_HOSTS).", code="invalid_host"
            )
            if is_api_path(scope["path"]):
                return await self._send_error(send_with_id, error)
            await send_with_id({"type": "http.response.start", "status": 400,
                                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})  # fmt: skip
            return await send_with_id({"type": "http.response.body", "body": error.message.encode()})

        if not is_api_path(scope["path"]):  # the console's streams read the id to meter with it
            return await self.app({**scope, "request_id": request_id}, receive, send_with_id)

        ctx = EdgeContext(request_id=request_id, base=base_of(scope["path"]))
        try:
            replay = await self._check(scope, receive, ctx)
        except errors.ApiError as error:
            return await self._send_error(send_with_id, error)
        except Exception as exc:  # noqa: BLE001 - the database down while verifying the key: 503, else a 500
            error = errors.for_unexpected(exc, f"{scope['method']} {scope['path']}")
            return await self._send_error(send_with_id, error)

        pending = list(replay)

        async def replay_receive():
            if pending:
                return pending.pop(0)
            return await receive()

        scope = {**scope, "hub": ctx}
        await self.app(scope, replay_receive, send_with_id)

    async def _check(self, scope, receive, ctx: EdgeContext) -> list[dict]:
        upload = form.AUDIO if is_upload_path(scope["path"]) else None
        if is_file_upload_path(scope["path"]) and scope["method"] == "POST":
            upload = form.FILE
        elif is_part_upload_path(scope["path"]) and scope["method"] == "POST":
            upload = form.PART
        limit = upload.limit + form.FORM_OVERHEAD if upload else settings.HUB_MAX_BODY_BYTES
        declared = _header(scope, b"content-length")
        too_large = form.too_large(upload.limit, upload) if upload else body_reader.too_large(limit)
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise too_large
            except ValueError:
                raise errors.InvalidRequest("Invalid Content-Length header.") from None

        ctx.key = await authenticate(_header(scope, b"authorization"))

        if scope["method"] not in _BODY_METHODS:
            return []
        coding = (_header(scope, b"content-encoding") or "identity").strip().lower()
        if coding not in ("", "identity"):  # a compressed body would fail as JSON that does not parse, or pass unread
            raise errors.UnsupportedMediaType(
                f"Content-Encoding '{errors.shown(coding)}' is not supported: send the body uncompressed.")  # fmt: skip
        try:
            body, tail = await _read_body(receive, limit)
        except _BodyTooLarge:
            raise too_large from None
        if upload:  # 415, 400, 413 for the file itself
            parsed = form.read_form(body, _header(scope, b"content-type"), upload.limit, upload)
            ctx.json, ctx.upload = parsed.fields, parsed.file
            return [{"type": "http.request", "body": b"", "more_body": False}, *tail]  # read from ctx, not twice
        ctx.json = body_reader.read_json(body, _header(scope, b"content-type"), limit)  # 415, 400
        return [{"type": "http.request", "body": body, "more_body": False}, *tail]

    @staticmethod
    async def _send_error(send, error: errors.ApiError) -> None:
        body = errors.error_bytes(error)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in error.headers().items()]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
