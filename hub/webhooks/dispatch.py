"""Sending webhooks: ``pump`` claims due deliveries (``accounts.webhooks.claim``), sends up to
``HUB_WEBHOOK_CONCURRENCY`` at once on this process's background loop and records each outcome, until none is due.
It starts when deliveries are written (``kick``, on their transaction's commit: on the background loop in the hub's
own process without a broker, else as the Celery task ``hub.send_webhooks``) and on the beat every
``HUB_WEBHOOK_SWEEP_SECONDS`` (the retries that came due). One pump per process at a time: a kick during one makes
it look again before it stops. Senders in other processes take other deliveries (claims skip locked rows)."""

from __future__ import annotations

import asyncio
import logging

import httpx
from django.conf import settings

from accounts import webhooks
from hub.batches.runs import run_soon
from hub.pool import db
from hub.webhooks.sender import attempt

log = logging.getLogger(__name__)

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
_state = {"pumping": False, "again": False}  # read and written on the background loop only


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = httpx.AsyncClient(follow_redirects=False)
    return _clients[loop]


async def _send(client: httpx.AsyncClient, due: webhooks.Due) -> None:
    status, error = await attempt(client, due)
    state = await db(webhooks.record, due.id, status, error)
    if state != "delivered":
        log.info("webhook %s to %s: attempt %d got %s (%s)", due.id, due.url, due.attempt, status, error or state)


async def _pump_once() -> int:
    client, lease = _client(), settings.HUB_WEBHOOK_TIMEOUT_SECONDS + 30.0
    sending: set[asyncio.Task] = set()
    sent = 0
    while True:
        free = settings.HUB_WEBHOOK_CONCURRENCY - len(sending)
        claimed = await db(webhooks.claim, free, lease) if free else []
        sending |= {asyncio.create_task(_send(client, due)) for due in claimed}
        sent += len(claimed)
        if not sending:
            return sent
        done, sending = await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:  # its delivery is due again when its lease ends
                log.error("webhook attempt failed: %r", task.exception())


async def pump() -> int:
    """Send what is due until nothing is (unless this process's pump runs already: it looks again); how many
    attempts this call made."""
    if _state["pumping"]:
        _state["again"] = True
        return 0
    _state["pumping"], sent = True, 0
    try:
        while True:
            _state["again"] = False
            sent += await _pump_once()
            if not _state["again"]:
                return sent
    finally:
        _state["pumping"] = False


def _logged(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("webhooks: sending failed (the beat tries again): %r", future.exception())


def kick(**_) -> None:
    """Deliveries were written (``accounts.webhooks.events_added``, on commit): send them now. Never raises: the
    change they tell is committed, and a delivery not sent now (the broker unreachable) is sent by the beat's
    sweep."""
    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            run_soon(pump()).add_done_callback(_logged)
            return
        from hub.tasks import send_webhooks

        send_webhooks.delay()
    except Exception as failed:  # noqa: BLE001 - see above
        log.warning("webhooks: could not start sending now (%r); the beat sends them within %s s", failed,
                    settings.HUB_WEBHOOK_SWEEP_SECONDS)  # fmt: skip
