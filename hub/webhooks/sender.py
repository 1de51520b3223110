"""One attempt to deliver an event: the host resolved and checked (``addresses``), the body POSTed signed
(``signing``), the endpoint's status read (its body is not: a receiver answers, the hub does not read what it says),
within ``HUB_WEBHOOK_TIMEOUT_SECONDS``; redirects are not followed (a 3xx is a failed attempt)."""

from __future__ import annotations

import asyncio

import httpx
from django.conf import settings

from accounts.webhooks import Due
from hub.webhooks import addresses, signing


class Unreachable(Exception):
    """No answer from the endpoint (its host refused or unresolved, no connection, no answer in time)."""


def _why(failed: Exception) -> str:
    return f"{type(failed).__name__}: {failed}" if str(failed) else type(failed).__name__


async def attempt(client: httpx.AsyncClient, due: Due) -> tuple[int | None, str]:
    """(the endpoint's HTTP status, "") or (None, why there was none)."""
    problem = await asyncio.to_thread(addresses.resolved_problem, due.url)
    if problem is not None:
        return None, problem
    content = signing.body(due.payload)
    try:
        async with client.stream("POST", due.url, content=content, timeout=settings.HUB_WEBHOOK_TIMEOUT_SECONDS,
                                 headers=signing.headers(due.id, due.secrets, content)) as answer:  # fmt: skip
            return answer.status_code, "" if answer.is_success else f"HTTP {answer.status_code}"
    except httpx.HTTPError as failed:
        return None, _why(failed)


def send_now(url: str, message_id: str, secrets: list[str], payload: dict) -> int:
    """One attempt, in the caller's thread (``POST /v1/webhook_endpoints/{id}/test``): the endpoint's status, or
    Unreachable."""
    problem = addresses.resolved_problem(url)
    if problem is not None:
        raise Unreachable(problem)
    content = signing.body(payload)
    try:
        with httpx.Client(follow_redirects=False) as client, client.stream(
            "POST", url, content=content, headers=signing.headers(message_id, secrets, content),
            timeout=settings.HUB_WEBHOOK_TIMEOUT_SECONDS,
        ) as answer:  # fmt: skip
            return answer.status_code
    except httpx.HTTPError as failed:
        raise Unreachable(_why(failed)) from None
