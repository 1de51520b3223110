"""Per-key and per-tenant limits on the generation routes: requests and tokens per minute, concurrent streams
per key, and token budgets per day or month. Checked in one atomic step before a request goes to a model
(``limit_store``: one Redis script, so several hub processes share the limits exactly), settled to the
counted tokens after it.

A request reserves its worst case: a bound on its prompt (the hub has no tokenizer, but a byte-level one makes
at most a token of each byte, plus the chat template's own) and every token it may generate (``max_tokens``
or the model's limit, times ``n``). When it ends, the reservation is settled to the usage the deployment
counted, so concurrent requests can never together overshoot a budget, and tokens-per-minute charge what was
used.

Keys and tenants without limits cost nothing here (no Redis call). When Redis is unreachable, limited
requests are refused with 503 (``HUB_LIMITS_FAIL_OPEN=true``: let them through unlimited, logged).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from django.conf import settings
from django.utils import timezone

from accounts.authn import KeyContext
from accounts.limits import Limits, period_bounds
from hub.api import errors
from hub.api.limit_store import BUDGET, RATE, STREAMS, Check, LocalStore, RedisStore
from hub.api.upstream import ModelInfo

log = logging.getLogger(__name__)

STREAM_LEASE = 900.0  # s; a stream's slot frees itself after this if its hub died without releasing it
# Bounds beyond the text's bytes: an image (LLaVA-NeXT's largest grid: 5 tiles of 576 and their row ends), a
# message's role markers, and a chat template's fixed part (a default system prompt, the generation prompt).
IMAGE_TOKENS = 3000
MESSAGE_TOKENS = 8
TEMPLATE_TOKENS = 64
TOOL_TOKENS = 64  # per tool: the framing of its listing and of its example call
FORMAT_TOKENS = 32  # a response_format's instruction
PAIR_TOKENS = 4  # a cross-encoder's pair markers (XLM-R's <s> a </s></s> b </s>)
# a guard model's task around each moderation input (Llama Guard 3's: ~400 tokens of categories and instructions)
# and its verdict (inference/server/moderation.py's VERDICT_TOKENS): a longer task is counted and reserved again
GUARD_PROMPT_TOKENS = 1024
MODERATION_OUTPUT_TOKENS = 24
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; the gateway sends it upstream
# Speech routes: an audio second counts as 50 prompt tokens (Whisper's encoder positions per second), the text the
# decoder writes as completion tokens. A reservation assumes 128 kbps audio (a longer duration is refused by our
# inference service before it runs, with the exact count, and reserved again) and a full window of text per 30 s.
AUDIO_TOKENS_PER_SECOND = 50
AUDIO_BYTES_PER_SECOND = 16_000
AUDIO_WINDOW_TOKENS = 224
# text to speech: a bound on the audio's length, speech slower than any voice at speed 1 (about 15 a second), and
# a sentence's pause (the service's 0.2 s) for every 20 characters
SPEECH_CHARACTERS_PER_SECOND = 8
SPEECH_PAUSE_TOKENS_PER_CHARACTER = 0.5


@dataclass(frozen=True)
class Estimate:
    """The most a request may spend, in the deployment's counting: ``prompt`` (each prompt once, whatever ``n``, as
    usage reports it) and ``output`` (everything it may generate)."""

    prompt: int
    output: int

    @property
    def total(self) -> int:
        return self.prompt + self.output


def estimate(route: str, body: dict, info: ModelInfo) -> Estimate:
    """A request's reservation: a bound on each prompt (its text's bytes; the tools' and the response format's
    JSON, twice for the tools as our prompt format lists each and shows an example call; images at their most),
    once whatever ``n``, plus all it may generate (``max_tokens``, else the model's output limit, else the rest of
    its context; per prompt and choice, ``n`` of them, completions' ``best_of`` when more). For our inference
    service it need not be exact: the service refuses a prompt longer than the reservation before running it, with
    the exact count, and the gateway reserves that instead."""
    limit = info.max_sequence_length or None
    if route in ("rerank", "score"):  # a (query, document) pair per document, cut at the model's context
        return Estimate(sum(_clamp(_bound(a) + _bound(b) + PAIR_TOKENS, limit) for a, b in _pairs(route, body)), 0)
    if route == "moderations":  # each input in the guard's task (its categories, its instructions); a short verdict
        inputs = body.get("input")
        parts = isinstance(inputs, list) and any(isinstance(item, dict) for item in inputs)
        items = inputs if isinstance(inputs, list) and not parts else [inputs]
        return Estimate(sum(_clamp(_bound(item) + GUARD_PROMPT_TOKENS, limit) for item in items),
                        MODERATION_OUTPUT_TOKENS * len(items))  # fmt: skip
    if route == "audio/speech":  # the input's characters, and its audio's tokens at the slowest
        text = body.get("input") if isinstance(body.get("input"), str) else ""
        speed = body.get("speed") if isinstance(body.get("speed"), int | float) and body["speed"] > 0 else 1.0
        seconds = len(text) / (SPEECH_CHARACTERS_PER_SECOND * min(speed, 4.0))
        audio = math.ceil(seconds * AUDIO_TOKENS_PER_SECOND + len(text) * SPEECH_PAUSE_TOKENS_PER_CHARACTER)
        return Estimate(len(text), audio)
    if route == "embeddings":
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) and inputs and not _is_int(inputs[0]) else [inputs]
        return Estimate(sum(_clamp(_bound(item), limit) for item in items), 0)
    n = body["n"] if _is_int(body.get("n")) and body["n"] > 0 else 1
    if route == "completions" and _is_int(body.get("best_of")):  # every candidate is generated, and counted
        n = max(n, body["best_of"])
    if route == "chat/completions":
        prompts = [_clamp(chat_prompt_bound(body), limit)]
    else:
        value = body.get("prompt")
        many = isinstance(value, list) and value and (isinstance(value[0], (str, list)))
        prompts = [_clamp(_bound(p), limit) for p in (value if many else [value])]
    out = next((body[p] for p in ("max_completion_tokens", "max_tokens") if _is_int(body.get(p))), None)
    if out is None and route == "completions":
        out = COMPLETIONS_DEFAULT_MAX_TOKENS
    if out is None:
        room = limit - prompts[0] if limit else 0
        out = info.max_output_length or max(room, 0) or 4096
    return Estimate(sum(prompts), max(1, out) * n * len(prompts))


def chat_prompt_bound(body: dict) -> int:
    """A bound on a chat request's prompt tokens: its messages' bytes, the template's, the tools' and the format's."""
    return _bound(body.get("messages")) + TEMPLATE_TOKENS + _tools_bound(body) + _format_bound(body)


def _pairs(route: str, body: dict) -> list[tuple[object, object]]:
    """The texts a rerank or score request pairs (validated by then: strings, or documents with ``text``)."""
    if route == "rerank":
        docs = [d.get("text") if isinstance(d, dict) else d for d in body.get("documents") or []]
        return [(body.get("query"), d) for d in docs]
    first, second = body.get("text_1"), body.get("text_2")
    first, second = [first] if isinstance(first, str) else first, [second] if isinstance(second, str) else second
    return list(zip(first * len(second) if len(first) == 1 else first, second, strict=False))


def audio_estimate(size: int) -> Estimate:
    """A speech upload of ``size`` bytes: its audio's tokens at 128 kbps, and a full window of text per 30 s."""
    seconds = max(1, math.ceil(size / AUDIO_BYTES_PER_SECOND))
    return Estimate(seconds * AUDIO_TOKENS_PER_SECOND, math.ceil(seconds / 30) * AUDIO_WINDOW_TOKENS)


def estimate_tokens(route: str, body: dict, info: ModelInfo) -> int:
    return estimate(route, body, info).total


def _clamp(tokens: int, limit: int | None) -> int:
    return min(tokens, limit) if limit else tokens  # longer prompts are refused before they run


def _json_bytes(value) -> int:
    try:
        return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    except (TypeError, ValueError):
        return 0  # not JSON: refused by validation or the deployment


def _tools_bound(body: dict) -> int:
    tools = body.get("tools")
    if not isinstance(tools, list) or body.get("tool_choice") == "none":
        return 0
    return sum(2 * _json_bytes(tool) + TOOL_TOKENS for tool in tools)


def _format_bound(body: dict) -> int:
    answer = body.get("response_format")
    if not isinstance(answer, dict) or answer.get("type") not in ("json_object", "json_schema"):
        return 0
    schema = answer.get("json_schema")
    return (0 if schema is None else _json_bytes(schema)) + FORMAT_TOKENS


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bound(value, depth: int = 0) -> int:
    """Tokens a prompt can take at most: a byte-level tokenizer makes at most one token of each byte."""
    if depth > 64:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if _is_int(value):
        return 1  # a token id
    if isinstance(value, list):
        return sum(_bound(v, depth + 1) for v in value)
    if isinstance(value, dict):
        if value.get("type") == "image_url":
            return IMAGE_TOKENS
        fields = ("content", "text", "name", "arguments", "tool_calls", "function")
        return MESSAGE_TOKENS + sum(_bound(v, depth + 1) for k, v in value.items() if k in fields)
    return 0


def reset_text(seconds: float) -> str:
    """OpenAI's ``x-ratelimit-reset-*`` format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


# Money budgets count in units of 1e-8 of the currency, as integers (Redis's Lua numbers are doubles: exact up to
# 2^53 units, 90 million in the currency); a reservation or a charge is rounded up to a unit, never down.
COST_UNIT = Decimal("1e-8")


def cost_units(amount: Decimal | None) -> int:
    return 0 if not amount else int((amount / COST_UNIT).to_integral_value(ROUND_CEILING))


def reserved_cost(need: Estimate, price) -> Decimal:
    """The most ``need`` may cost at ``price`` (a ``ModelPrice``; None: nothing): the prompt at the uncached price,
    every output token, and a speech prompt's audio (its tokens are 50 a second) per minute."""
    if price is None:
        return Decimal(0)
    audio = Decimal(need.prompt) / AUDIO_TOKENS_PER_SECOND / 60 * price.per_audio_minute
    return (need.prompt * price.input_per_million + need.output * price.output_per_million) / 1_000_000 + audio


@dataclass
class Grant:
    """What one request holds: its checks (to settle) and the rate-limit headers of its response."""

    member: str
    reserved: int
    checks: list[Check]
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    reserved_cost: int = 0  # units of COST_UNIT

    def state(self) -> dict:
        """What settling it needs, as JSON (kept with its open request: a reaper settles a dead process's)."""
        checks = [[c.kind, c.key, c.limit, c.cost, c.extra] for c in self.checks]
        return {"member": self.member, "reserved": self.reserved, "reserved_cost": self.reserved_cost, "checks": checks}

    @classmethod
    def from_state(cls, state: dict) -> Grant:
        checks = [Check(*c) for c in state["checks"]]
        return cls(state["member"], state["reserved"], checks, reserved_cost=state["reserved_cost"])


@dataclass(frozen=True)
class _Party:
    kind: str  # "key" or "tenant"
    ident: str
    label: str
    limits: Limits
    tenant_id: int


class Limiter:
    def __init__(self) -> None:
        self._store: RedisStore | LocalStore | None = None

    @property
    def store(self) -> RedisStore | LocalStore:
        if self._store is None:
            prefix = f"{settings.HUB_CACHE_PREFIX}:limits:"
            self._store = RedisStore(settings.REDIS_URL, prefix) if settings.REDIS_URL else LocalStore()
        return self._store

    def reset(self) -> None:
        """Tests: start from empty counters (another store, or Redis keys expiring on their own)."""
        self._store = None

    async def acquire(
        self, ctx: KeyContext, request_id: str, tokens: int, stream: bool, cost: Decimal | None = None,
        again: bool = False,
    ) -> Grant | None:  # fmt: skip
        """Reserve ``tokens``, ``cost`` (money, for a money budget) and a stream slot; raise the 429 (or 503) the
        first failing check calls for. ``again``: the same request reserves anew (its prompt counted exactly, or a
        fallback model), after settling its earlier grant: its request is counted already."""
        return await self._run(ctx, request_id, tokens, stream, cost, peek=False, again=again)

    async def check(self, ctx: KeyContext, request_id: str, tokens: int, stream: bool, cost: Decimal | None) -> None:
        """Raise what ``acquire`` would for this request, charging nothing: a bound from below of a request's need
        refused now is a request refused before any work is done for it (its files read, for one)."""
        await self._run(ctx, request_id, tokens, stream, cost, peek=True)

    async def _run(
        self, ctx: KeyContext, request_id: str, tokens: int, stream: bool, cost: Decimal | None, peek: bool,
        again: bool = False,
    ) -> Grant | None:  # fmt: skip
        parties = [_Party("tenant", str(ctx.tenant_id), f"tenant {ctx.tenant_slug}", ctx.tenant_limits, ctx.tenant_id)]
        if ctx.key_id is not None:
            parties.insert(0, _Party("key", str(ctx.key_id), f"key {ctx.prefix}…", ctx.limits, ctx.tenant_id))
        parties = [p for p in parties if p.limits.any]
        if not parties:
            return None
        now = time.time()
        checks, owners = self._checks(parties, tokens, stream, now, cost_units(cost), again)
        if not checks:
            return None
        try:
            await self._seed_budgets(checks, owners)
            outcome = await self.store.acquire(checks, request_id, now, peek)
        except Exception as exc:  # noqa: BLE001 - Redis down or failing: the documented choice below
            if settings.HUB_LIMITS_FAIL_OPEN:
                log.warning("limits not enforced (HUB_LIMITS_FAIL_OPEN): %s", exc)
                return None
            log.error("rate limiter unavailable: %s", exc)
            raise errors.ServiceUnavailable(
                "The hub cannot check this key's rate limits right now (its limit store is unreachable). "
                "Please retry shortly."
            ) from None
        # a refusal charged nothing: its headers say what each limit has left now, as OpenAI's 429s do
        headers = self._headers(checks, outcome.remaining, now)
        if outcome.failed is not None:
            raise self._refusal(checks[outcome.failed], owners[outcome.failed], outcome, tokens, headers)
        if peek:
            return None
        return Grant(request_id, tokens, checks, headers, reserved_cost=cost_units(cost))

    async def settle(self, grant: Grant | None, used_tokens: int, used_cost: Decimal | None = None) -> None:
        """Charge what the request really used (tokens, and money at the price it reserved at) instead of its
        reservation; free its stream slot."""
        if grant is None or grant.settled:
            return
        grant.settled = True
        delta = used_tokens - grant.reserved
        adjust = [(c, delta) for c in grant.checks if c.key.endswith((":tpm", ":budget"))]
        adjust += [(c, cost_units(used_cost) - grant.reserved_cost) for c in grant.checks if c.key.endswith(":cost")]
        adjust += [(c, 0) for c in grant.checks if c.kind == STREAMS]
        if adjust:
            try:
                await self.store.settle(adjust, grant.member, time.time())
            except Exception as exc:  # noqa: BLE001 - the reservation stays charged: safe side of a budget
                log.error("could not settle limits of %s: %s", grant.member, exc)

    # --- helpers ------------------------------------------------------------------------------------

    def _checks(self, parties: list[_Party], tokens: int, stream: bool, now: float, cost: int = 0,
                again: bool = False):  # fmt: skip
        checks: list[Check] = []
        owners: list[_Party] = []
        for p in parties:
            base = f"{p.kind}:{p.ident}"
            lim = p.limits
            if lim.rpm is not None:
                # a request reserving again takes nothing more (its first grant took one), and still gets its headers
                checks.append(Check(RATE, f"{base}:rpm", lim.rpm, 0 if again else 1))
            if lim.tpm is not None:
                checks.append(Check(RATE, f"{base}:tpm", lim.tpm, tokens))
            if lim.budget is not None or lim.cost_limit is not None:  # counters named after the period's start
                start, end = period_bounds(lim.budget_period, timezone.now())
                period = f"{base}:{lim.budget_period}:{start:%Y%m%d}"
                if lim.budget is not None:
                    checks.append(Check(BUDGET, f"{period}:budget", lim.budget, tokens, end.timestamp()))
                if lim.cost_limit is not None:
                    checks.append(Check(BUDGET, f"{period}:cost", cost_units(lim.cost_limit), cost, end.timestamp()))
            if stream and p.kind == "key" and lim.max_streams is not None:
                checks.append(Check(STREAMS, f"{base}:streams", lim.max_streams, 1, STREAM_LEASE))
            owners += [p] * (len(checks) - len(owners))
        return checks, owners

    async def _seed_budgets(self, checks: list[Check], owners: list[_Party]) -> None:
        """A budget counter starts from the period's metered usage (the database), once per period."""
        from asgiref.sync import sync_to_async

        for c, p in zip(checks, owners, strict=True):
            if c.kind == BUDGET and not await self.store.has(c.key):
                used = await sync_to_async(_used, thread_sensitive=False)(p, c)
                await self.store.seed(c.key, used, c.extra)

    def _headers(self, checks: list[Check], remaining: list[float], now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for suffix, name in ((":rpm", "requests"), (":tpm", "tokens")):
            rates = [
                (c, r) for c, r in zip(checks, remaining, strict=True) if c.kind == RATE and c.key.endswith(suffix)
            ]
            if not rates:
                continue
            check, left = min(rates, key=lambda cr: cr[1] / cr[0].limit)
            headers[f"x-ratelimit-limit-{name}"] = str(check.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(max(0, int(left)))
            headers[f"x-ratelimit-reset-{name}"] = reset_text((check.limit - max(left, 0)) * 60.0 / check.limit)
        return headers

    def _refusal(self, check: Check, party: _Party, outcome, tokens: int, headers: dict) -> errors.ApiError:
        """The 429 of the first limit that refused the request, with every limit's headers."""
        error = self._refusal_of(check, party, outcome, tokens)
        error.extra_headers = headers
        return error

    def _refusal_of(
        self, check: Check, party: _Party, outcome, tokens: int
    ) -> errors.RateLimited | errors.QuotaExceeded:
        wait = outcome.retry_after
        if check.kind == BUDGET and check.key.endswith(":cost"):
            period = "day" if ":day:" in check.key else "month"
            currency = settings.HUB_CURRENCY.upper()
            left = max(0, int(outcome.remaining[outcome.failed])) * COST_UNIT
            return errors.QuotaExceeded(
                f"You exceeded your current quota: the {party.label} has a budget of {check.limit * COST_UNIT:f} "
                f"{currency} per {period} and {left:f} {currency} are left; this request may cost up to "
                f"{check.cost * COST_UNIT:f} {currency}. The budget renews at the start of the next {period} (UTC)."
            )
        if check.kind == BUDGET:
            period = "day" if ":day:" in check.key else "month"
            return errors.QuotaExceeded(
                f"You exceeded your current quota: the {party.label} has a budget of {check.limit:,} tokens per "
                f"{period} and {max(0, int(outcome.remaining[outcome.failed])):,} are left; this request may use up to "
                f"{tokens:,}. The budget renews at the start of the next {period} (UTC)."
            )
        if check.kind == STREAMS:
            error = errors.RateLimited(
                f"Too many concurrent streams on {party.label}: the limit is {check.limit}. "
                "Close a stream or retry shortly.", code="concurrent_streams_exceeded", kind="requests",
            )  # fmt: skip
            error.retry_after = wait
            return error
        unit = "requests" if check.key.endswith(":rpm") else "tokens"
        short = "RPM" if unit == "requests" else "TPM"
        if wait < 0:
            return errors.RateLimited(
                f"Request too large for {party.label}: {unit} per minute ({short}) limit {check.limit:,}, "
                f"requested {check.cost:,}. Lower max_tokens or the prompt.", kind=unit,
            )  # fmt: skip
        error = errors.RateLimited(
            f"Rate limit reached for {unit} per minute ({short}) on {party.label}: limit {check.limit:,}, "
            f"requested {check.cost:,}. Please try again in {reset_text(wait)}.", kind=unit,
        )  # fmt: skip
        error.retry_after = wait
        return error


def _used(party: _Party, check: Check) -> int:
    """What the budget's period used so far (the roll-ups plus the raw rows after them): tokens, or money in units
    for a money budget."""
    from django.db import close_old_connections

    from accounts import usage

    try:
        key_id = int(party.ident) if party.kind == "key" else None
        totals = usage.period_totals(party.tenant_id, key_id, party.limits.budget_period, timezone.now())
        return cost_units(Decimal(totals.cost)) if check.key.endswith(":cost") else totals.total_tokens
    finally:
        close_old_connections()


limiter = Limiter()
