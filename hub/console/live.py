"""The console's two streams, Channels consumers on the hub's ASGI router (``hub/asgi.py``):

- ``UsageStream``: the usage dashboard's live updates. Server-sent events: every ``HUB_CONSOLE_LIVE_SECONDS`` it
  sums the range again (roll-ups plus the raw rows after the watermark: a few index reads) and, when the
  figures changed, pushes the re-rendered dashboard body as a ``usage`` event.
- ``PlaygroundRelay``: the playground's chat, relayed through the API gateway's own consumer, so a chat is
  checked (the model must be one of the tenant's), relayed and metered exactly like an API call; the usage row
  has no key and the route ``playground``.

Both sign the user in from the session cookie and scope the tenant with ``scoping.tenant_of``/``check_role``,
the rules of every console page (404 for outsiders, 403 below the role). The relay reads its body as the API edge
does (``hub/api/body.py``: JSON only, ``application/json`` or ``application/*+json``), and takes it only
with this host's ``Origin`` or, from a browser that sends none, the page's CSRF token: another site's page cannot
make a signed-in browser spend the tenant's tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from channels.auth import get_user
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import close_old_connections
from django.http import Http404, QueryDict
from django.http.cookie import parse_cookie
from django.middleware import csrf

from accounts import usage
from accounts.authn import KeyContext
from accounts.limits import Limits
from accounts.models import ModelKind, Role, ServedModel
from accounts.services import role_of
from hub.api import errors
from hub.api.body import check_content_type, no_body, read_json, too_large
from hub.api.edge import EdgeContext, new_request_id
from hub.api.gateway import GatewayConsumer
from hub.api.relay_common import SSE_HEADERS
from hub.console.scoping import check_role, tenant_of
from hub.console.usage import parse_range, render_fragment

log = logging.getLogger(__name__)

PLAIN = [(b"content-type", b"text/plain; charset=utf-8")]


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _scope_tenant(user, slug: str | None, minimum: Role):
    """(tenant, role) as the console's pages decide it; raises Http404 / PermissionDenied."""
    try:
        tenant = tenant_of(user, slug)
        role = role_of(user, tenant)
        check_role(role, minimum)
        return tenant, role
    finally:
        close_old_connections()


class UsageStream(AsyncConsumer):
    """``GET /console/t/<tenant>/usage/live?start=&end=`` (or ``/console/usage/live`` for operators)."""

    # No channel layer: it polls the database; a layer would hold a Redis BRPOP per open dashboard, whose
    # cancellation at the end channels_redis logs as an error.
    channel_layer_alias = GatewayConsumer.channel_layer_alias
    task: asyncio.Task | None = None

    async def http_request(self, message) -> None:
        if not message.get("more_body"):
            self.task = asyncio.create_task(self._serve())

    async def http_disconnect(self, message) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
        raise StopConsumer()

    async def _plain(self, status: int, text: str) -> None:
        await self.send({"type": "http.response.start", "status": status, "headers": PLAIN})
        await self.send({"type": "http.response.body", "body": text.encode()})

    async def _serve(self) -> None:
        user = await get_user(self.scope)
        if not user.is_authenticated:
            return await self._plain(401, "Sign in first.")
        slug = self.scope["url_route"]["kwargs"].get("tenant")
        tenant_id = None
        try:
            if slug is None:
                if not user.is_superuser:
                    raise PermissionDenied
            else:
                tenant, _ = await sync_to_async(_scope_tenant, thread_sensitive=False)(user, slug, Role.VIEWER)
                tenant_id = tenant.pk
        except Http404:
            return await self._plain(404, "No such page.")
        except PermissionDenied:
            return await self._plain(403, "Not allowed.")
        start, end, _ = parse_range(QueryDict(self.scope.get("query_string", b"").decode("latin-1")))
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            await self._stream(start, end, tenant_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged, and the stream ends (the browser reconnects) instead of hanging
            log.exception("the live usage stream of %s failed", slug or "the operator")
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, start, end, tenant_id: int | None) -> None:
        interval = settings.HUB_CONSOLE_LIVE_SECONDS
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.HUB_CONSOLE_LIVE_MAX_SECONDS
        last, last_sent = None, loop.time()
        while loop.time() < deadline:
            summary = await sync_to_async(_summary, thread_sensitive=False)(start, end, tenant_id)
            if summary.buckets != last:
                html = await sync_to_async(render_fragment, thread_sensitive=False)(summary, operator=tenant_id is None)
                event = f"event: usage\ndata: {json.dumps({'html': html})}\n\n"
                await self.send({"type": "http.response.body", "body": event.encode(), "more_body": True})
                last, last_sent = summary.buckets, loop.time()
            elif loop.time() - last_sent > 15:  # a comment keeps proxies from closing an idle stream
                await self.send({"type": "http.response.body", "body": b": still here\n\n", "more_body": True})
                last_sent = loop.time()
            await asyncio.sleep(interval)
        # The browser's EventSource reconnects: a fresh stream re-checks the session and the role.
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


def _summary(start, end, tenant_id):
    try:
        return usage.summary(start, end, tenant_id)
    finally:
        close_old_connections()


def _csrf_token_matches(scope) -> bool:
    """The page's CSRF token (``X-CSRFToken``) against the CSRF cookie, as Django's middleware checks a form."""
    cookie = parse_cookie(_header(scope, b"cookie") or "").get(settings.CSRF_COOKIE_NAME, "")
    token = _header(scope, b"x-csrftoken") or ""
    try:
        csrf._check_token_format(cookie)
        csrf._check_token_format(token)
    except csrf.InvalidTokenFormat:
        return False
    return csrf._does_token_match(token, cookie)


def _chat_models(tenant_id: int) -> frozenset[str]:
    try:
        models = ServedModel.objects.filter(enabled=True, entitlements__tenant_id=tenant_id)
        return frozenset(models.filter(kind__in=[ModelKind.CHAT, ModelKind.VISION]).values_list("id", flat=True))
    finally:
        close_old_connections()


class PlaygroundRelay(GatewayConsumer):
    """``POST /console/t/<tenant>/playground/chat/completions``: the gateway's relay, signed in by session."""

    def route(self) -> str:
        return "chat/completions"

    async def http_request(self, message) -> None:
        if self.task is not None:  # refused as too large already: the rest of the body is not read
            return
        self.body = getattr(self, "body", b"") + message.get("body", b"")
        if len(self.body) > settings.HUB_MAX_BODY_BYTES:
            self.body = b""
            self.task = asyncio.create_task(self._error(too_large(settings.HUB_MAX_BODY_BYTES)))
            return
        if not message.get("more_body"):
            self.task = asyncio.create_task(self._start())

    async def _start(self) -> None:
        try:
            self.scope["hub"] = await self._authorize()
        except errors.ApiError as error:
            return await self._error(error)
        await self._serve()

    async def _authorize(self) -> EdgeContext:
        if self.scope["method"] != "POST":
            raise errors.MethodNotAllowed(self.scope["method"], self.scope["path"], ["POST"])
        origin = _header(self.scope, b"origin")
        same_origin = origin is not None and urlsplit(origin).netloc == (_header(self.scope, b"host") or "")
        if not (same_origin or (origin is None and _csrf_token_matches(self.scope))):
            raise errors.PermissionDenied(
                "The playground takes requests from the console's own pages only (a same-origin Origin header, or "
                "the page's CSRF token)."
            )
        content_type = _header(self.scope, b"content-type")
        if not no_body(self.body, content_type):  # before the session, as ever; read_json checks it again below
            check_content_type(content_type)
        user = await get_user(self.scope)
        if not user.is_authenticated:
            raise errors.AuthenticationError("Sign in to the console first.", code="session_required")
        slug = self.scope["url_route"]["kwargs"]["tenant"]
        try:
            tenant, _ = await sync_to_async(_scope_tenant, thread_sensitive=False)(user, slug, Role.MEMBER)
        except Http404:
            raise errors.NotFound("No such page.") from None
        except PermissionDenied:
            raise errors.PermissionDenied("Viewers cannot use the playground: it spends the tenant's tokens.") from None
        body = read_json(self.body, content_type, settings.HUB_MAX_BODY_BYTES)  # the API edge's reader
        models = await sync_to_async(_chat_models, thread_sensitive=False)(tenant.pk)
        key = KeyContext(
            key_id=None, prefix="", tenant_id=tenant.pk, tenant_slug=tenant.slug, model_ids=models,
            tenant_limits=Limits.of(tenant),  # the tenant's rate limits and budget bind its playground too
        )  # fmt: skip
        request_id = self.scope.get("request_id") or new_request_id()
        return EdgeContext(request_id, "v1", key=key, json=body, extra={"metered_route": "playground"})
