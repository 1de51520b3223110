"""Service tiers: how soon our inference service runs a generation request, and the share of the price it pays.

OpenAI's ``service_tier`` picks the tier; our engine schedules by vLLM's ``priority`` (a lower value first: admitted
first, preempted last, ``inference/engine/scheduler.py``), which the hub sets from the tier:

- ``default`` (also ``auto`` or none): priority 0, the full price;
- ``flex``: priority 1, behind default traffic (a default request preempts flex sequences when the engine is full),
  at the model's flex share of the price (``ModelPrice.flex_share``, OpenAI's half by default);
- a batch's lines (``hub/batches``): priority 2, behind both, at the same share; their answers say ``default``,
  as OpenAI's batch answers do.

Chat completions, completions, responses, embeddings and moderations take a tier (the embedding engine runs requests
by priority too); a chat completion's and a response's answer names it.

OpenAI's faster tiers (``priority``, ``fast``, ``scale``) are served as ``default``, and the answer says so (OpenAI:
"the processing mode actually used"). A tenant's own vLLM ``priority`` may only defer its request: our service gets
the larger of it and the tier's, so no tenant jumps ahead of another. An external deployment gets OpenAI's
``service_tier`` as asked and no ``priority`` (which OpenAI would refuse as an unknown field).
"""

from __future__ import annotations

from hub.api.errors import InvalidRequest

TIERS = ("auto", "default", "flex", "scale", "priority", "fast")  # OpenAI's ServiceTier
DEFAULT, FLEX, BATCH = "default", "flex", "batch"  # what the hub serves (and records on the usage row)
PRIORITY = {DEFAULT: 0, FLEX: 1, BATCH: 2}
MAX_PRIORITY = 1_000_000  # the inference service's bound (inference/sampling_params.py)
# where our engines schedule by priority
ROUTES = ("chat/completions", "completions", "responses", "responses/compact", "embeddings", "moderations")


def of(route: str, body: dict, batch: bool) -> str:
    """The tier the hub serves a request in, its fields checked: a batch's line is ``batch`` whatever it asks; a route
    our engines do not schedule (rerank, speech) is ``default`` (or ``batch``) and its fields are not read."""
    if route in ROUTES:
        check(body)
    if batch:
        return BATCH
    return FLEX if route in ROUTES and body.get("service_tier") == FLEX else DEFAULT


def check(body: dict) -> None:
    """``service_tier`` one of OpenAI's, ``priority`` (vLLM's) an integer our service takes."""
    tier = body.get("service_tier")
    if tier is not None and tier not in TIERS:
        shown = ", ".join(f"'{t}'" for t in TIERS)
        raise InvalidRequest(f"Invalid value for 'service_tier': expected one of {shown}.",
                             param="service_tier", code="invalid_value")  # fmt: skip
    priority = body.get("priority")
    if priority is not None and (
        not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > MAX_PRIORITY
    ):
        raise InvalidRequest(f"'priority' must be an integer between -{MAX_PRIORITY} and {MAX_PRIORITY}.",
                             param="priority", code="invalid_value")  # fmt: skip


def answered(tier: str) -> str:
    """What the answer's ``service_tier`` says."""
    return FLEX if tier == FLEX else DEFAULT


def upstream(payload: dict, tier: str, external: bool, own: object = None) -> dict:
    """``payload`` with the scheduling fields ``tier`` gives it, for our service or an external deployment; ``own``:
    the priority the client asked for (a Responses request's, which its chat payload does not carry)."""
    own = payload.pop("priority", own)
    if external:
        return payload
    payload.pop("service_tier", None)
    payload["priority"] = max(own if isinstance(own, int) else 0, PRIORITY[tier])
    return payload
