"""The reaper's side in the hub: asking the deployments what they counted for a dead process's requests
(``accounts/open_requests.py`` meters it) and settling those requests' rate-limit reservations. Run by the beat
(``hub.reap_open_requests``), also under ``make run``'s in-process beat."""

from __future__ import annotations

import asyncio
import logging

import httpx

from accounts import open_requests
from accounts.models import Deployment, OpenRequest
from accounts.open_requests import UNREACHABLE, Counted, Reaped
from hub.api.limit_store import RATE, LocalStore
from hub.api.ratelimit import Grant, limiter
from hub.api.upstream import Target

log = logging.getLogger(__name__)

ASK_TIMEOUT = 5.0


def ask(row: OpenRequest, client: httpx.Client) -> Counted | None | object:
    """The sum of what our deployments of the row's model tallied under its usage id (``GET
    /v1/requests/{usage_id}``, inference/server/tally.py); None when every one answered that it does not know it
    (restarted since, or an external API, which tallies nothing); ``UNREACHABLE`` when none could be asked."""
    targets = [Target.of(d, row.model) for d in Deployment.objects.filter(model_id=row.model, external=False)]
    if not targets:
        return None
    found: list[dict] = []
    reached = False
    for target in targets:
        try:
            answer = client.get(target.url(f"requests/{row.usage_id}"), headers=target.headers(row.request_id))
        except httpx.HTTPError as exc:
            log.info("deployment %s not asked about %s: %s", target.base_url, row.usage_id, exc)
            continue
        if answer.status_code == 200:
            found.append(answer.json())
        reached = reached or answer.status_code in (200, 404)
    if found:
        return Counted(
            prompt_tokens=sum(int(t.get("prompt_tokens", 0)) for t in found),
            completion_tokens=sum(int(t.get("completion_tokens", 0)) for t in found),
            cached_tokens=sum(int(t.get("cached_tokens", 0)) for t in found),
            audio_seconds=sum(float(t.get("audio_seconds", 0)) for t in found),
            running=any(t.get("running") for t in found),
        )  # fmt: skip
    return None if reached else UNREACHABLE


async def _settle(reaped: list[Reaped]) -> None:
    """Each reaped request's budgets charged its counted usage instead of its reservation, its stream slot freed. A
    minute's rate is long past: rates are left alone. Without Redis the counters are this process's, which never
    held a dead process's reservation: they are charged the usage alone."""
    fresh = isinstance(limiter.store, LocalStore)
    for r in reaped:
        if not r.row.grant:
            continue
        grant = Grant.from_state(r.row.grant)
        grant.checks = [c for c in grant.checks if c.kind != RATE]
        if fresh:
            grant.reserved, grant.reserved_cost = 0, 0
        await limiter.settle(grant, r.record.total_tokens, r.record.cost)


def reap() -> int:
    """Meter the requests whose hub process died before it could; returns how many."""
    with httpx.Client(timeout=ASK_TIMEOUT) as client:
        reaped = open_requests.reap(lambda row: ask(row, client))
    if any(r.row.grant for r in reaped):
        asyncio.run(_settle(reaped))
    return len(reaped)
