"""One attempt to deliver an event: the host resolved and checked (``addresses``), the body POSTed signed
(``signing``), the endpoint's status read (its body is not: a receiver answers, the hub does not read what it says),
within ``HUB_WEBHOOK_TIMEOUT_SECONDS``; redirects are not followed (a 3xx is a failed attempt)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from secrets import token_hex

import httpx
from django.conf import settings

from accounts import webhooks
from accounts.models import WebhookEndpoint
from accounts.webhooks import Due
from hub.webhooks import addresses, signing

_resolver_pool: ThreadPoolExecutor | None = None


def _resolvers() -> ThreadPoolExecutor:
    global _resolver_pool
    if _resolver_pool is None:  # created on the loop's thread only
        _resolver_pool = ThreadPoolExecutor(settings.HUB_WEBHOOK_CONCURRENCY, thread_name_prefix="webhook-resolve")
    return _resolver_pool


class Unreachable(Exception):
    """No answer from the endpoint (its host refused or unresolved, no connection, no answer in time)."""


def _why(failed: Exception) -> str:
    return f"{type(failed).__name__}: {failed}" if str(failed) else type(failed).__name__


async def attempt(client: httpx.AsyncClient, due: Due) -> tuple[int | None, str]:
    """(the endpoint's HTTP status, "") or (None, why there was none)."""
    # on threads of their own: a resolver that hangs must not hold the loop's default pool (the database's calls)
    pinned, problem = await asyncio.get_running_loop().run_in_executor(_resolvers(), addresses.resolve, due.url)
    if problem is not None:
        return None, problem
    content = signing.body(due.payload)
    headers = {**signing.headers(due.id, due.secrets, content), **pinned.headers(due.url)}
    try:  # to the address checked, not to what the name resolves to now
        async with client.stream("POST", pinned.url(due.url), content=content, headers=headers,
                                 timeout=settings.HUB_WEBHOOK_TIMEOUT_SECONDS,
                                 extensions=pinned.extensions(due.url)) as answer:  # fmt: skip
            return answer.status_code, "" if answer.is_success else f"HTTP {answer.status_code}"
    except httpx.HTTPError as failed:
        return None, _why(failed)


def send_sample(endpoint: WebhookEndpoint, event_type: str) -> int:
    """A sample event of ``event_type`` (about a ``resp_test_...`` or ``batch_test_...`` object), signed as every
    delivery and sent now, in the caller's thread (``POST /v1/webhook_endpoints/{id}/test``, the console's test
    button); not kept. The endpoint's status, or Unreachable."""
    pinned, problem = addresses.resolve(endpoint.url)
    if problem is not None:
        raise Unreachable(problem)
    sample = f"{'batch' if event_type.startswith('batch.') else 'resp'}_test_{token_hex(12)}"
    content = signing.body(webhooks.event(event_type, sample))
    headers = signing.headers("msg_test_" + token_hex(12), webhooks.signing_secrets(endpoint), content)
    try:
        with (
            httpx.Client(follow_redirects=False) as client,
            client.stream(
                "POST",
                pinned.url(endpoint.url),
                content=content,
                headers={**headers, **pinned.headers(endpoint.url)},
                timeout=settings.HUB_WEBHOOK_TIMEOUT_SECONDS,
                extensions=pinned.extensions(endpoint.url),
            ) as answer,
        ):
            return answer.status_code
    except httpx.HTTPError as failed:
        raise Unreachable(_why(failed)) from None
