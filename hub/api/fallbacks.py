"""A model's fallbacks (``ModelFallback``; LiteLLM's router ``fallbacks`` and ``context_window_fallbacks`` in one
ordered list, each link's ``on`` saying which): where a request goes when its model cannot answer it.

A model cannot answer a request when none of its deployments takes it, before anything ran: the model disabled
(by the operator, or no longer served: a 404 where no fallback answers), no deployment enabled, none reachable, each
answered 503 (stopping, broken) or 429 (an external API's rate limit); or when the request does not fit it:
``max_tokens`` over its output length (checked here), or the deployment's 400 ``context_length_exceeded`` (a prompt
over its context). The request then goes, as it was sent, to the model's fallbacks in order that take it for that
reason (``on``: ``any``, ``unavailable`` or ``context``; a model disabled, unavailable or busy goes to the next
fallback taking ``unavailable``), each one that the key may use (a tenant never reaches a model it is not entitled
to), enabled, of the model's kind (``ModelFallback.mismatch``), with a deployment, and whose output length the
request fits. A fallback's own fallbacks are not followed. The last model tried answers as it would without
fallbacks (its error relayed, or 503 ``service_unavailable``); a model with no later one for its reason answers so
too.

Each attempt reserves the limits at its own model's price; one that did not answer settles to nothing and writes no
usage row. The answer, its usage row and metrics name the model that answered, and ``x-hub-fallback-from`` the
model asked for. Nothing is moved once the first byte is sent: a stream that breaks mid-answer ends with its error
event, as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from accounts.models import FallbackOn, ModelFallback
from hub import metrics
from hub.api import errors
from hub.api.edge import EdgeContext
from hub.api.upstream import ModelInfo, Target, upstreams

HEADER = "x-hub-fallback-from"
# a deployment's answers that mean "not here, not now": nothing ran, another deployment or model may take it
BUSY = frozenset({429, 503})
TOO_LONG = "context_length_exceeded"


@dataclass(frozen=True)
class Candidate:
    """A model that may answer the request, with its enabled deployments; ``on``: when it takes the request from
    the one before (``ModelFallback.on``; the model asked for: ``any``)."""

    info: ModelInfo
    targets: list[Target]
    on: str = FallbackOn.ANY


def moves(candidates: list[Candidate], i: int) -> frozenset[str]:
    """The reasons (``unavailable``, ``context``) for which a model after the ``i``-th would take the request: the
    ``i``-th raises ``Unanswered`` for those, and answers as without fallbacks for the others."""
    later = candidates[i + 1 :]
    return frozenset(r for r in ("unavailable", "context") if any(ModelFallback.takes(c.on, r) for c in later))


def next_after(candidates: list[Candidate], i: int, reason: str) -> int:
    """The index of the model that takes the request the ``i``-th could not answer for ``reason``."""
    return next(j for j in range(i + 1, len(candidates)) if ModelFallback.takes(candidates[j].on, reason))


def takes(info: ModelInfo, reason: str) -> bool:
    """Whether any of the model's fallbacks takes a request it cannot answer for ``reason``."""
    return any(ModelFallback.takes(on, reason) for _, on in info.fallbacks)


@dataclass(frozen=True)
class Refused:
    """The model asked for cannot take the request at all (disabled: ``unavailable``; over its output length:
    ``context``): ``error`` is the answer unless a fallback taking ``reason`` does."""

    error: errors.ApiError
    reason: str


class Unanswered(Exception):
    """The model cannot answer the request; ``error`` is what the client gets if no later model does."""

    def __init__(self, error: errors.ApiError, reason: str):
        super().__init__(error.message)
        self.error, self.reason = error, reason  # reason: unavailable, busy or context (a metric's label)


def too_long(content: bytes) -> bool:
    """A deployment's 400 answer saying the request is over the model's context."""
    try:
        return json.loads(content)["error"]["code"] == TOO_LONG
    except (ValueError, KeyError, TypeError):
        return False


async def chain(ctx: EdgeContext, route: str, body: dict, info: ModelInfo, targets: list[Target], check,
                refused: Refused | None) -> list[Candidate]:  # fmt: skip
    """The models to try in order: the one asked for (unless ``refused``: then only the fallbacks taking its
    reason), then its usable fallbacks. ``check(info, route, body)`` raises where the request does not fit a
    model."""
    found = [] if refused is not None else [Candidate(info, targets)]
    for fallback_id, on in info.fallbacks:
        if not ctx.key.may_use(fallback_id) or (refused is not None and not ModelFallback.takes(on, refused.reason)):
            continue
        fallback, fallback_targets = await upstreams.model(fallback_id)
        if fallback is None or not fallback.enabled or not fallback_targets or ModelFallback.mismatch(info, fallback):
            continue
        try:
            check(fallback, route, body)
        except errors.ApiError:
            continue
        found.append(Candidate(fallback, fallback_targets, on))
    if not found:
        raise refused.error
    if refused is not None:
        moved(info.id, found[0].info.id, refused.reason)
    return found


def unavailable(model: str) -> errors.ServiceUnavailable:
    """The answer for a model with no deployment to take the request."""
    return errors.ServiceUnavailable(f"No deployment of the model '{errors.shown(model)}' is available right now.")


def moved(model: str, fallback: str, reason: str) -> None:
    """A request went on from ``model`` to ``fallback``."""
    metrics.FALLBACKS.labels(model, fallback, reason).inc()
