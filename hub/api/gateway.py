"""The model routes: chat completions, completions, embeddings, rerank and score, and the speech routes (audio
transcriptions and translations), relayed to a deployment.

Served by a Channels consumer (``GatewayConsumer``), ahead of Django in the hub's ASGI router, for
streaming and non-streaming calls alike. The edge middleware has already authenticated the key
and parsed the JSON body (``scope["hub"]``). Here: the model must be one the key is entitled to
(404 ``model_not_found``), of a kind the route serves, and ``max_tokens`` within the model's
``max_output_length`` (400 ``context_length_exceeded`` with the numbers); prompt + ``max_tokens``
against ``max_sequence_length`` is checked by the deployment, which alone holds the tokenizer, and
answers with the same error. Then the request goes to a deployment (``upstream.py``), and where the model cannot
answer it (none of its deployments takes it, or it is over its context) to the model's fallbacks (``fallbacks.py``).

Limits (``ratelimit.py``): before a request goes to a deployment it reserves its worst-case tokens against
the key's and the tenant's rate limits and budgets (429 when one is spent; ``x-ratelimit-*`` headers on
the answer), and settles to the counted tokens when it ends, however it ends.

Metering: the deployment always reports usage (the hub asks for it on every stream, and for running
counts in every chunk from our inference service, vLLM's ``continuous_usage_stats``), so one usage
row per request that reached a model is written with counted tokens, never estimates: for
successes, for upstream failures after the model started, for streams the client aborted (the
tokens generated up to the last chunk relayed) and for whole answers it stopped waiting for (what our
service tallied for the call: ``_abandoned``). A client that goes away cancels the relay task,
which closes the upstream stream: our inference service aborts the generation within a step.

Speech routes: the edge parsed the multipart upload (its fields as the body, its file as ``ctx.upload``); the
gateway sends a new form to the deployment. Their rows record the audio's duration (``audio_seconds``, from our
service's ``x-audio-duration`` header, or OpenAI's ``usage.seconds``), its tokens (50 per second) as prompt tokens
and the decoder's as completion tokens, which is how budgets and tokens-per-minute count them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from contextlib import suppress
from decimal import Decimal

import httpx
from asgiref.sync import sync_to_async
from channels.consumer import AsyncConsumer, get_handler_name
from channels.exceptions import StopConsumer
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from accounts import metering, pricing
from accounts.models import ModelKind
from hub import metrics, shutdown
from hub.api import (
    compaction,
    errors,
    fallbacks,
    file_inputs,
    legacy_functions,
    prompt_cache,
    responses_count,
    tiers,
    truncation,
    validation,
)
from hub.api.affinity import prefix_key
from hub.api.chat_store import HUB_ONLY, ChatStore
from hub.api.compaction import CompactionRelay
from hub.api.edge import EdgeContext
from hub.api.open_calls import USAGE_ID_HEADER, OpenCall
from hub.api.paths import FORM_ROUTES  # a multipart upload in, as the edge parsed it
from hub.api.ratelimit import (
    AUDIO_TOKENS_PER_SECOND,
    COMPLETIONS_DEFAULT_MAX_TOKENS,
    Estimate,
    Grant,
    audio_estimate,
    estimate,
    limiter,
    reserved_cost,
)
from hub.api.relay_common import error_from_upstream, has_output, sse_lines, token_counts
from hub.api.responses_relay import ResponsesRelay
from hub.api.responses_relay import plan as plan_response
from hub.api.upstream import PROMPT_TOKENS_HEADER, RESERVED_PROMPT_HEADER, ModelInfo, Target, upstreams

log = logging.getLogger(__name__)

# route -> model kinds it serves
ROUTES = {
    # a guard model (kind moderation) answers chat too: vLLM's users call Llama Guard that way
    "chat/completions": {ModelKind.CHAT, ModelKind.VISION, ModelKind.MODERATION},
    "responses": {ModelKind.CHAT, ModelKind.VISION},  # OpenAI's Responses API (hub/api/responses_relay.py)
    "responses/input_tokens": {ModelKind.CHAT, ModelKind.VISION},  # its count (hub/api/responses_count.py)
    "responses/compact": {ModelKind.CHAT, ModelKind.VISION},  # a context summarized (hub/api/compaction.py)
    "completions": {ModelKind.CHAT, ModelKind.COMPLETION, ModelKind.VISION, ModelKind.MODERATION},
    "embeddings": {ModelKind.EMBEDDING},
    "rerank": {ModelKind.RERANK},  # Jina's and Cohere's shape (also under /v2, Cohere's v2 path)
    "score": {ModelKind.RERANK},  # vLLM's
    "audio/transcriptions": {ModelKind.AUDIO},
    "audio/translations": {ModelKind.AUDIO},
    "audio/speech": {ModelKind.TTS},  # text to speech: JSON in, audio (or its sse events) out
    "moderations": {ModelKind.MODERATION},  # OpenAI's, answered by a guard model (inference/server/moderation.py)
}
# the routes a wrong route's 400 names for the model's kind (the others in ROUTES are parts of these)
_HINTED = ("chat/completions", "responses", "completions", "embeddings", "rerank", "score", "audio/transcriptions",
           "audio/translations", "audio/speech", "moderations")  # fmt: skip


def route_hint(kind: str) -> str:
    """The routes that serve a model of ``kind``: "/completions", "/rerank or /score", ..."""
    routes = [f"/{route}" for route in _HINTED if kind in ROUTES[route]]
    return routes[0] if len(routes) == 1 else f"{', '.join(routes[:-1])} or {routes[-1]}"


SPEECH = "audio/speech"
# the routes planned as a Responses request (hub/api/responses_relay.py), sent upstream as the plan's chat request
_PLANNED = ("responses", compaction.ROUTE)
# one JSON answer, no stream, no max_tokens (a moderation's verdicts are short, their length the service's)
ENCODER_ROUTES = ("embeddings", "rerank", "score", "moderations")


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in headers.items()]


def _record(usage: metering.Usage) -> None:
    """The row, written or, with the database down, spooled (``metering.record_or_spool``); in a pool thread, which
    hands its connection back."""
    try:
        metering.record_or_spool(usage)
    finally:
        close_old_connections()


class _Meter:
    """Counts for one request as the deployment reported them, and how it ended."""

    def __init__(self, ctx: EdgeContext, model: str, route: str, streamed: bool, service_tier: str = tiers.DEFAULT):
        self.ctx, self.model, self.route, self.streamed = ctx, model, route, streamed
        self.service_tier = service_tier  # the tier it is served in: how soon it runs, which share it pays
        self.start = time.monotonic()
        self.first_token: float | None = None
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.status = 200
        self.aborted = False
        self.upstream_broke = False  # the deployment's connection failed mid-answer (killed, crashed)
        self.audio_seconds = 0.0
        self.cached_tokens = 0
        self.carried = (0, 0, 0)  # prompt, completion and cached tokens of the calls before this one
        self.call: OpenCall | None = None  # the attempt's open row (open_calls.py), closed by the usage row
        self.saved = False  # its usage row is written (or spooled)

    def carry(self) -> None:
        """Another call to the model follows for this request (a Responses round after a tool the hub ran): the
        counts so far stay, and the next call's add to them."""
        self.carried = (self.prompt_tokens, self.completion_tokens, self.cached_tokens)

    def take(self, usage: dict | None) -> None:
        if not isinstance(usage, dict):
            return
        if usage.get("type") == "duration":  # a transcription's usage: seconds (OpenAI's), tokens per second (ours)
            self.audio_seconds = self.audio_seconds or float(usage.get("seconds") or 0)
            self.prompt_tokens = self.prompt_tokens or math.ceil(self.audio_seconds * AUDIO_TOKENS_PER_SECOND)
        else:  # a chat's, a completion's, a response's, a transcription stream's
            counts = token_counts(usage)
            self.prompt_tokens, self.completion_tokens = (
                self.carried[0] + counts.prompt,
                self.carried[1] + counts.completion,
            )
            if usage.get("type") == "tokens":  # a transcription stream's also names its seconds
                self.audio_seconds = self.audio_seconds or float(usage.get("seconds") or 0)
            if counts.cached is not None:  # OpenAI's (and ours): the prompt tokens found in a prefix cache
                self.cached_tokens = self.carried[2] + counts.cached

    def headers(self, target: Target) -> dict[str, str]:
        """An upstream request's headers: the request id, the deployment's key, and for our services the usage id
        they tally its tokens under (what the reaper meters it from, should this process die first)."""
        headers = target.headers(self.ctx.request_id)
        if self.call is not None and not target.external:
            headers[USAGE_ID_HEADER] = self.call.usage_id
        return headers

    def cost(self, price) -> Decimal:
        """What the counted usage costs at ``price`` (the usage row's own cost, unless the price changed since)."""
        return pricing.cost(price, self.prompt_tokens, self.cached_tokens, self.completion_tokens, self.audio_seconds,
                            self.service_tier)  # fmt: skip

    def take_headers(self, headers: httpx.Headers) -> None:
        """Our service's speech answers name the audio's exact duration and tokens (and, when done, the output's)."""
        with suppress(KeyError, ValueError):
            self.audio_seconds = float(headers["x-audio-duration"])
            self.prompt_tokens = int(headers["x-audio-tokens"])
            self.completion_tokens = int(headers["x-output-tokens"])

    async def save(self) -> None:
        self.saved = True
        usage_id = "" if self.call is None else self.call.usage_id_if_written()
        now = time.monotonic()
        ttft = None if self.first_token is None else int((self.first_token - self.start) * 1000)
        usage = metering.Usage(
            request_id=self.ctx.request_id, tenant_id=self.ctx.key.tenant_id, api_key_id=self.ctx.key.key_id,
            model=self.model, route=self.route, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens, status_code=self.status, streamed=self.streamed,
            aborted=self.aborted, time_to_first_token_ms=ttft, duration_ms=int((now - self.start) * 1000),
            created_at=timezone.now(), audio_seconds=self.audio_seconds, cached_tokens=self.cached_tokens,
            service_tier=self.service_tier, usage_id=usage_id,
        )  # fmt: skip
        first = None if self.first_token is None else self.first_token - self.start
        metrics.metered(self.model, self.route, self.status, self.prompt_tokens, self.completion_tokens,
                        self.cached_tokens, first, self.ctx.key.tenant_slug)  # fmt: skip
        await sync_to_async(_record, thread_sensitive=False)(usage)


class _OverReservation(Exception):
    """The deployment counted more prompt tokens than were reserved, and did not run the request."""

    def __init__(self, prompt_tokens: int):
        super().__init__(prompt_tokens)
        self.prompt_tokens = prompt_tokens


def _over_reservation(response: httpx.Response) -> int | None:
    if response.status_code != 413:
        return None
    try:
        return int(response.headers[PROMPT_TOKENS_HEADER])
    except (KeyError, ValueError):
        return None


def _check_model(ctx: EdgeContext, route: str, body: dict) -> str:
    model = body.get("model")
    if model is None and route == "moderations":  # optional there: OpenAI's default moderation model
        model = settings.HUB_MODERATION_MODEL
    if not isinstance(model, str) or not model:
        raise errors.InvalidRequest("You must provide a model parameter.", param="model", code="missing_model")
    if not ctx.key.may_use(model) and model not in ctx.key.disabled_model_ids:  # a disabled one: its fallbacks may
        raise errors.ModelNotFound(model)
    return model


def _check_limits(info: ModelInfo, route: str, body: dict) -> None:
    if info.kind not in ROUTES[route]:
        article = "an" if info.kind[:1] in "aeiou" else "a"  # "an embedding model"
        raise errors.InvalidRequest(f"'{info.id}' is {article} {info.kind} model; use {route_hint(info.kind)}.",
                                    param="model")  # fmt: skip
    if route.startswith("audio/"):
        return
    if route in ("rerank", "score", "moderations"):
        return
    if route == "embeddings":
        dims = body.get("dimensions")
        if dims is not None and dims != info.hidden_size:
            raise errors.InvalidRequest(
                f"This model does not support specifying dimensions: it returns {info.hidden_size} dimensions.",
                param="dimensions",
            )
        return
    for param in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(param)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < info.max_output_length < value:
            raise errors.InvalidRequest(
                f"This model's maximum output length is {info.max_output_length} tokens. However, you requested "
                f"{value} output tokens ({param}). Please reduce {param}.",
                param=param,
                code="context_length_exceeded",
            )


def _upstream_body(route: str, body: dict, target: Target, stream: bool) -> dict:
    out = {**body, "model": target.model}
    if route == "chat/completions":  # the hub stores chat completions itself (hub/api/chat_store.py)
        for name in HUB_ONLY:
            out.pop(name, None)
    if route == SPEECH:
        return out
    if route in FORM_ROUTES:  # a form's fields
        if stream and not target.external:
            out["stream_continuous_usage_stats"] = "true"  # vLLM's field: usage in every delta, to meter an abort
        return out
    if route == "completions" and body.get("max_tokens") is None:
        out["max_tokens"] = COMPLETIONS_DEFAULT_MAX_TOKENS  # as OpenAI's, whatever the upstream's own default
    if stream:
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True  # always: streams are metered from counted tokens
        if not target.external:
            options["continuous_usage_stats"] = True
        out["stream_options"] = options
    return out


def _reserved(grant: Grant | None, need: Estimate) -> int | None:
    """The prompt tokens a limited request reserved (None: no token limit to keep, nothing to tell the service)."""
    if grant is None or not any(c.key.endswith((":tpm", ":budget")) for c in grant.checks):
        return None
    return need.prompt


class GatewayConsumer(ResponsesRelay, CompactionRelay, AsyncConsumer):
    """One HTTP request. The work runs in a task so that ``http.disconnect`` is seen while it streams."""

    # No channel layer: a relay talks to nobody else, and a layer would cost a Redis channel and a
    # blocking BRPOP per request (whose cancellation at the end channels_redis reports as an error).
    channel_layer_alias = "gateway-needs-no-channel-layer"
    task: asyncio.Task | None = None
    headers_sent = False
    answered = False  # the whole answer has been sent (what is left is metering)
    answer_headers: list[tuple[bytes, bytes]] = []  # x-ratelimit-* and x-hub-fallback-from, once the limits let it in
    chat_store: ChatStore | None = None  # a chat completion with store: true
    legacy: bool = False  # a chat completion with the deprecated functions / function_call (legacy_functions.py)
    reserved = False  # the request has taken its limits once: a later grant (a fallback's) counts no new request
    tier = tiers.DEFAULT  # the service tier it is served in (hub/api/tiers.py)
    shown_tier: str | None = None  # what a chat answer's service_tier says (None: an external deployment's own)

    async def dispatch(self, message) -> None:
        # Channels' dispatch first runs close_old_connections in the one thread-sensitive executor, a
        # serialized thread hop per message. This consumer never touches the ORM on that thread: its
        # database work runs in pool threads that hand their connections back themselves.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def http_request(self, message) -> None:
        if message.get("more_body"):  # the edge replays the whole body as one message
            return
        self.task = asyncio.create_task(self._serve())

    async def http_disconnect(self, message) -> None:
        if self.task is not None and not self.task.done():
            if not self.answered:  # the client went away mid-request: stop it (it meters what it produced)
                self.task.cancel()
            # the answer is out and the task is writing its usage row: wait for it, so that this request lasts
            # until then and a stopping server (uvicorn waits for its requests) does not lose the row
            with suppress(asyncio.CancelledError):
                await self.task
        raise StopConsumer()

    async def send(self, message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.answered = True
        await super().send(message)

    def route(self) -> str:
        """The API route after the base path: ``/v1/chat/completions`` -> ``chat/completions``."""
        return self.scope["path"].strip("/").split("/", 1)[1]

    # --- responses ---------------------------------------------------------------------------------

    async def _json(self, status: int, payload: dict) -> None:
        await self._body(status, "application/json", json.dumps(payload).encode())

    async def _body(self, status: int, content_type: str, body: bytes) -> None:
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        headers += self.answer_headers
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
        self.headers_sent = True

    async def _error(self, error: errors.ApiError) -> None:
        if self.headers_sent:  # mid-stream: OpenAI's error event, then the end of the stream
            await self._event(error.body())
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        body = errors.error_bytes(error)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += _header_list(error.headers()) + self.answer_headers
        await self.send({"type": "http.response.start", "status": error.status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
        self.headers_sent = True

    async def _event(self, data) -> None:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        await self.send({"type": "http.response.body", "body": f"data: {text}\n\n".encode(), "more_body": True})

    # --- the request -------------------------------------------------------------------------------

    async def _serve(self) -> None:
        ctx: EdgeContext = self.scope["hub"]
        route = self.route()
        shutdown.watch()
        try:
            if self.scope["method"] != "POST":
                raise errors.MethodNotAllowed(self.scope["method"], self.scope["path"], ["POST"])
            body = ctx.json
            model_id = _check_model(ctx, route, body)
            audio = route in FORM_ROUTES
            info, targets = await upstreams.model(model_id)
            if info is None or (ctx.base == "vision" and info.kind != ModelKind.VISION):
                raise errors.ModelNotFound(model_id)
            refused = None  # the model cannot take the request (disabled, or over its output length): its fallbacks may
            if not info.enabled:  # as if unavailable: not found, unless a fallback the key may use answers
                if not fallbacks.takes(info, "unavailable") or route == "responses/input_tokens":  # counts: its own
                    raise errors.ModelNotFound(model_id)
                refused = fallbacks.Refused(errors.ModelNotFound(model_id), "unavailable")
            else:
                try:
                    _check_limits(info, route, body)
                except errors.InvalidRequest as error:
                    if error.code != fallbacks.TOO_LONG or not fallbacks.takes(info, "context"):
                        raise
                    refused = fallbacks.Refused(error, "context")
            self.tier = tiers.of(route, body, batch=ctx.extra.get("batch") is True)
            if audio:
                stream = validation.check_form(body, ctx.upload)
            elif route == "responses/input_tokens":  # counted, not run: no limits, no usage row
                plan = await plan_response(ctx.key, {**body, "stream": False, "store": False}, model_id,
                                           vision=info.kind == ModelKind.VISION)  # fmt: skip
                tokens = await responses_count.count(plan, targets, ctx.request_id)
                return await self._json(200, {"object": "response.input_tokens", "input_tokens": tokens})
            elif route == "responses":  # checked, its stored conversation read, as a chat request for estimates
                # the run of a queued background response (hub/background/) answers it, under its id
                stream = body.get("stream") is True
                queued = body.get("background") is True and not ctx.extra.get("background")  # limited when run
                # truncation may cut the context the files were in: then no bound of its prompt is known early
                admit = None if queued else self._admit(ctx, info, stream, body.get("truncation") != "auto")
                self.plan = await plan_response(ctx.key, body, model_id, background=ctx.extra.get("background"),
                                                admit=admit, vision=info.kind == ModelKind.VISION)  # fmt: skip
            elif route == compaction.ROUTE:  # the context read as a response's, the summary asked for
                self.plan = await compaction.plan(ctx.key, body, model_id, info)
                stream = False
            else:
                if route == "chat/completions" and legacy_functions.wanted(body):
                    self.legacy, body = True, legacy_functions.as_tools(body)  # asked and answered as functions
                validation.check_body(route, body)
                stream = body.get("stream") is True and route not in ENCODER_ROUTES
                if route == SPEECH:  # its events, or the audio file's bytes as they are encoded
                    stream = body.get("stream_format") == "sse"
                if route == "chat/completions":
                    self.chat_store = ChatStore.wanted(ctx, ctx.json)  # the messages as sent
                    body = await file_inputs.inline(
                        ctx.key, body, self._admit(ctx, info, stream), info.kind == ModelKind.VISION
                    )  # files as text (and pages)
            # the model asked for, then its fallbacks the key may use (fallbacks.py)
            candidates = await fallbacks.chain(ctx, route, body, info, targets, _check_limits, refused)
            served = [c for c in candidates if c.targets]
            if not served:
                raise fallbacks.unavailable(model_id)
            if route == "responses":
                if body.get("background") is True and not self.plan.background:  # queued now, run later
                    return await self._queue_background(ctx.key)
                if body.get("truncation") == "auto":  # the context's first items left out until it fits
                    await truncation.fit(self.plan, served[0].info, served[0].targets, ctx.request_id)
            i = 0
            while True:  # each model passes the request on only for a reason a later one takes it for (moves)
                try:
                    moves = fallbacks.moves(candidates, i)
                    await self._answer(ctx, route, body, candidates[i], model_id, stream, moves)
                    break
                except fallbacks.Unanswered as unanswered:
                    j = fallbacks.next_after(candidates, i, unanswered.reason)
                    fallbacks.moved(candidates[i].info.id, candidates[j].info.id, unanswered.reason)
                    i = j
        except errors.ApiError as error:
            if self.legacy:
                legacy_functions.rename(error)
            await self._error(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged with the request id, answered as OpenAI's server error
            error = errors.for_unexpected(exc, f"{self.scope['path']} (request {ctx.request_id})")
            with suppress(Exception):
                await self._error(error)

    async def _answer(self, ctx: EdgeContext, route: str, body: dict, candidate: fallbacks.Candidate, asked: str,
                      stream: bool, moves: frozenset[str]) -> None:  # fmt: skip
        """The request on ``candidate``'s model: its limits reserved at that model's price, sent to a deployment,
        relayed and metered. Raises ``fallbacks.Unanswered`` where the model cannot answer it for a reason in
        ``moves`` (a later model takes it then: ``fallbacks.moves``); otherwise answers as without fallbacks."""
        info, targets = candidate.info, candidate.targets
        # no deployment, or (with a fallback to go to) every one failed a moment ago: passed over without a try
        if not targets or ("unavailable" in moves and upstreams.all_benched(targets)):
            error = fallbacks.unavailable(info.id)
            if "unavailable" not in moves:
                raise error
            raise fallbacks.Unanswered(error, "unavailable")
        if route in _PLANNED:
            self.plan.model_id = info.id  # the response names the model that answered
        # a response reserves, and is routed by its prompt's head, as the chat request it becomes
        as_chat = ("chat/completions", self.plan.chat) if route in _PLANNED else (route, body)
        need = audio_estimate(len(ctx.upload.data)) if ctx.upload is not None else estimate(*as_chat, info)
        # hashing the prompt's head is only worth it when there is a deployment to choose
        affinity = prefix_key(*as_chat) if settings.HUB_PREFIX_ROUTING and len(targets) > 1 else None
        meter = _Meter(ctx, info.id, ctx.extra.get("metered_route", route), stream, self.tier)
        moved = [(fallbacks.HEADER.encode(), asked.encode())] if info.id != asked else []
        for attempt in range(2):
            grant = await limiter.acquire(ctx.key, ctx.request_id, need.total, stream,
                                          reserved_cost(need, info.price), again=self.reserved)  # fmt: skip
            self.reserved = True
            self.answer_headers = (_header_list(grant.headers) if grant else []) + moved
            meter.call = OpenCall(ctx.request_id, ctx.key.tenant_id, ctx.key.key_id, meter.model, meter.route,
                                  self.tier, stream, grant)  # fmt: skip
            try:
                await meter.call.write()
                await self._forward(ctx, route, body, info.id, targets, affinity, meter, stream,
                                    _reserved(grant, need), moves)  # fmt: skip
                return
            except _OverReservation as over:
                if attempt:  # the deployment counted again and differently: not ours to guess
                    raise errors.UpstreamError("The model's deployment miscounted the prompt.") from None
                need = Estimate(over.prompt_tokens, need.output)  # the exact prompt, reserved afresh
            finally:  # the reservation becomes the counted tokens (none if no model was reached)
                await asyncio.shield(meter.call.end())
                await asyncio.shield(limiter.settle(grant, meter.prompt_tokens + meter.completion_tokens,
                                                    meter.cost(info.price)))  # fmt: skip

    @staticmethod
    def _admit(ctx: EdgeContext, info: ModelInfo, stream: bool, bounded: bool = True) -> file_inputs.Admit:
        """Before a request's files are read (as text, before its estimate): the limits asked, charging nothing,
        about the request without them, a bound from below of its need (``bounded``; else one token). A key they
        refuse anyway is refused before the hub reads a file for it (a stored one, its base64, a URL fetched)."""

        async def admit(without_files: dict) -> None:
            need = estimate("chat/completions", without_files, info) if bounded else Estimate(1, 0)
            await limiter.check(ctx.key, ctx.request_id, need.total, stream, reserved_cost(need, info.price))

        return admit

    async def _forward(
        self, ctx, route, body, model_id, targets, affinity: str | None, meter: _Meter, stream: bool,
        reserved: int | None, moves: frozenset[str] = frozenset(),
    ) -> None:  # fmt: skip
        """To the first deployment that takes the request; one unreachable or busy (``fallbacks.BUSY``) passes it
        to the next. Where none does, or the request is over the model's context, and that reason is in ``moves``,
        raises ``fallbacks.Unanswered``; otherwise answers that as without fallbacks."""
        client = upstreams.client()
        last_error: Exception | str | None = None
        ordered = upstreams.order(targets, affinity)
        for n, target in enumerate(ordered):
            headers = meter.headers(target)
            if route == "responses":  # the mcp tools' servers listed, approved calls run: once the limits passed
                await self.plan.prepare(target)
            if route in _PLANNED:
                upstream_route, payload = self.plan.upstream(target, stream)
            else:
                upstream_route, payload = route, _upstream_body(route, body, target, stream)
            if route in tiers.ROUTES:
                tiers.upstream(payload, self.tier, target.external, body.get("priority"))
                self.shown_tier = None if target.external else tiers.answered(self.tier)
            if route in prompt_cache.ROUTES:
                prompt_cache.salt(payload, ctx.key.tenant_id if ctx.key else None, target.external)
            if reserved is not None and not target.external:
                headers[RESERVED_PROMPT_HEADER] = str(reserved)
            if ctx.upload is not None:  # a speech upload: a new form, the deployment's model name in it
                file = {"file": (ctx.upload.filename, ctx.upload.data, ctx.upload.content_type)}
                request = client.build_request("POST", target.url(route), data=payload, files=file, headers=headers)
            else:
                request = client.build_request("POST", target.url(upstream_route), json=payload, headers=headers)
            upstreams.acquire(target)
            try:
                response = await client.send(request, stream=True)
            except httpx.TransportError as exc:  # never reached the model: try the next deployment
                upstreams.release(target)
                upstreams.bench(target)
                last_error = exc
                continue
            except asyncio.CancelledError:  # the client left while the deployment worked on the request
                upstreams.release(target)
                await asyncio.shield(self._abandoned(target, meter))
                raise
            try:
                if (counted := _over_reservation(response)) is not None:
                    raise _OverReservation(counted)
                if await self._elsewhere(response, target, meter, moves, last=n == len(ordered) - 1):
                    last_error = f"answered {response.status_code}"
                    continue
                if route == "responses":
                    await self._relay_response(response, target, meter, stream)
                elif route == compaction.ROUTE:
                    await self._relay_compaction(response, target, meter)
                elif route == SPEECH and response.status_code == 200:
                    await self._relay_audio(response, target, meter)
                elif stream and response.status_code == 200:
                    await self._relay_stream(response, body, model_id, meter)
                elif ctx.upload is not None and response.status_code == 200:
                    await self._relay_speech(response, meter)
                else:
                    await self._relay_json(response, model_id, meter)
            except asyncio.CancelledError:  # a stream's relay meters its own abort; a whole answer's is this
                await asyncio.shield(self._abandoned(target, meter, response))
                raise
            finally:
                upstreams.release(target)
                await response.aclose()
                if meter.upstream_broke:  # the next requests try the other deployments first
                    upstreams.bench(target)
            return
        log.warning("no deployment of %s reachable: %s", model_id, last_error)
        error = errors.ServiceUnavailable(
            f"No deployment of the model '{errors.shown(model_id)}' is reachable right now."
        )
        if "unavailable" in moves:
            raise fallbacks.Unanswered(error, "unavailable")
        raise error

    async def _elsewhere(self, response: httpx.Response, target: Target, meter: _Meter, moves: frozenset[str],
                         last: bool) -> bool:  # fmt: skip
        """Whether the deployment's answer passes the request to the next deployment (True), to the next model
        (raises ``fallbacks.Unanswered``), or is the answer to relay (False). Nothing ran in the first two cases."""
        status = response.status_code
        if status not in fallbacks.BUSY and status != 400:
            return False
        content = await self._read(response, meter)
        if status == 503:  # stopping or broken: the next requests try the model's other deployments first
            upstreams.bench(target)
        if status in fallbacks.BUSY:
            if not last:
                return True
            if "unavailable" in moves:
                raise fallbacks.Unanswered(error_from_upstream(status, content), "busy")
        elif "context" in moves and fallbacks.too_long(content):  # the same model's other deployments: the same context
            raise fallbacks.Unanswered(error_from_upstream(status, content), "context")
        return False

    @staticmethod
    async def _read(response: httpx.Response, meter: _Meter) -> bytes:
        """The whole answer; a connection that breaks meanwhile is metered (502) and answered as upstream_error."""
        try:
            return await response.aread()
        except httpx.TransportError:
            meter.status, meter.upstream_broke = 502, True
            await meter.save()
            raise errors.UpstreamError("The model's deployment failed while answering.") from None

    async def _relay_json(self, response: httpx.Response, model_id: str, meter: _Meter) -> None:
        content = await self._read(response, meter)
        if response.status_code != 200:
            if response.status_code >= 500:  # the model may have run: metered, with no tokens counted
                meter.status = response.status_code
                await meter.save()
            raise error_from_upstream(response.status_code, content)
        try:
            payload = json.loads(content)
        except ValueError:
            meter.status = 502
            await meter.save()
            raise errors.UpstreamError("The model's deployment answered with something other than JSON.") from None
        payload["model"] = model_id
        usage = payload.pop("usage", None) if self.route() == "moderations" else payload.get("usage")  # not OpenAI's
        if self.shown_tier is not None and self.route() == "chat/completions":
            payload["service_tier"] = self.shown_tier
        meter.take(usage)
        meter.first_token = time.monotonic()
        if self.legacy:
            payload = legacy_functions.answer(payload)
        if self.chat_store is not None:  # stored before it is sent: the client can retrieve it once it has it
            payload["id"] = self.chat_store.id
            await self.chat_store.save(payload)
        try:  # the answer first: the client need not wait for the usage row's commit
            await self._json(200, payload)
        finally:
            await asyncio.shield(meter.save())

    async def _relay_speech(self, response: httpx.Response, meter: _Meter) -> None:
        """A transcription: JSON (``json``, ``verbose_json``) or text (``text``, ``srt``, ``vtt``), relayed as is."""
        meter.take_headers(response.headers)
        content = await self._read(response, meter)
        kind = response.headers.get("content-type", "application/json")
        if kind.startswith("application/json"):
            with suppress(ValueError, AttributeError):
                meter.take(json.loads(content).get("usage"))
        meter.first_token = time.monotonic()
        try:
            await self._body(200, kind, content)
        finally:
            await asyncio.shield(meter.save())

    async def _relay_audio(self, response: httpx.Response, target: Target, meter: _Meter) -> None:
        """Spoken audio: the file's bytes (or, with ``stream_format`` sse, its events) passed on as they come. The
        input's characters are its prompt tokens (``x-input-tokens``, else counted here); the audio's tokens are
        what our service tallied for the call (also when the client left midway), or an external API's
        ``speech.audio.done`` usage where it sent one."""
        try:
            meter.prompt_tokens = int(response.headers["x-input-tokens"])
        except (KeyError, ValueError):
            meter.prompt_tokens = len(self.scope["hub"].json.get("input") or "")
        kind = response.headers.get("content-type", "application/octet-stream")
        headers = [(b"content-type", kind.encode())] + self.answer_headers
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        self.headers_sent = True
        sse = kind.startswith("text/event-stream")
        try:
            async for data in response.aiter_raw():
                if meter.first_token is None:
                    meter.first_token = time.monotonic()
                if sse and b"speech.audio.done" in data:  # an external API's usage (ours is read from its tally)
                    with suppress(ValueError, AttributeError):
                        meter.take(json.loads(data.split(b"data:", 1)[1]).get("usage"))
                elif sse and b'"error"' in data:  # the deployment failed midway (base64 audio holds no quote)
                    meter.status = 502
                await self.send({"type": "http.response.body", "body": data, "more_body": True})
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            meter.aborted, meter.status = True, 499
            raise
        except httpx.TransportError as exc:
            log.warning("upstream audio of %s failed: %s", meter.model, exc)
            meter.status, meter.upstream_broke = 502, True
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await asyncio.shield(self._audio_tokens(response, target, meter))
            await asyncio.shield(meter.save())

    async def _audio_tokens(self, response: httpx.Response, target: Target, meter: _Meter) -> None:
        """The audio's tokens as our service tallied them under the call's usage id (the upstream stream is closed
        first: a client gone midway has stopped the synthesis, and what it made so far is counted)."""
        await response.aclose()
        tally = await self._tally(target, meter)
        with suppress(KeyError, ValueError, TypeError):
            meter.completion_tokens = int(tally["completion_tokens"])

    async def _tally(self, target: Target, meter: _Meter) -> dict:
        """What our service counted for the call so far (``GET /v1/requests/{usage_id}``); {} where it cannot say
        (an external deployment, no usage id, not reachable)."""
        if target.external or meter.call is None:
            return {}
        with suppress(httpx.HTTPError, ValueError):
            answer = await upstreams.client().get(target.url(f"requests/{meter.call.usage_id}"),
                                                  headers=target.headers(self.scope["hub"].request_id))  # fmt: skip
            if answer.status_code == 200 and isinstance(tally := answer.json(), dict):
                return tally
        return {}

    async def _abandoned(self, target: Target, meter: _Meter, response: httpx.Response | None = None) -> None:
        """The client left before its whole answer came: the request reached the model, so it is metered (499,
        aborted) with what our service counted for it until it stopped (the connection is closed first, which
        stops it); an external deployment's count is unknown (none). A relay that metered it already is left."""
        if meter.saved:
            return
        if response is not None:
            await response.aclose()
        meter.aborted, meter.status = True, 499
        tally = await self._tally(target, meter)
        counted = {"prompt_tokens": tally.get("prompt_tokens"), "completion_tokens": tally.get("completion_tokens"),
                   "prompt_tokens_details": {"cached_tokens": tally.get("cached_tokens")}}  # fmt: skip
        with suppress(ValueError, TypeError):  # as a usage: a Responses request's earlier calls stay counted
            meter.take(counted)
        await meter.save()

    async def _relay_stream(self, response: httpx.Response, body: dict, model_id: str, meter: _Meter) -> None:
        speech = self.scope["hub"].upload is not None
        store = self.chat_store
        tier = self.shown_tier if self.route() == "chat/completions" else None
        options = body.get("stream_options") or {}
        wants_usage = options.get("include_usage") is True
        wants_running_usage = options.get("continuous_usage_stats") is True
        if speech:  # transcript.text.* events: the done event always has the usage; running usage only if asked
            meter.take_headers(response.headers)
            wants_running_usage = body.get("stream_continuous_usage_stats") in ("true", "1")
        await self._start_stream()
        complete = cut = False  # cut: an error event ended the answer, which is then not stored
        try:
            async for line in sse_lines(response):
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    complete = True  # the whole answer is relayed: a client that now hangs up aborted nothing
                    if store is not None and not cut:
                        completion = store.assembler.completion(store.id, model_id)
                        await store.save(legacy_functions.answer(completion) if self.legacy else completion)
                    await self._event("[DONE]")
                    break
                if shutdown.over():
                    raise shutdown.ShuttingDown
                chunk = json.loads(data)
                if "error" in chunk:
                    meter.status, cut = 502, True
                    await self._event(chunk)
                    continue
                if tier is not None:
                    chunk["service_tier"] = tier
                meter.take(chunk.get("usage"))
                if store is not None:
                    chunk["id"] = store.id
                    store.assembler.take(chunk)
                if speech:
                    if not wants_running_usage and chunk.get("type") == "transcript.text.delta":
                        chunk.pop("usage", None)
                    if meter.first_token is None and chunk.get("delta"):
                        meter.first_token = time.monotonic()
                    await self._event(chunk)
                    continue
                if not chunk.get("choices") and "usage" in chunk:  # the final usage chunk
                    if not wants_usage:
                        continue
                elif not wants_running_usage:
                    chunk.pop("usage", None)
                    if wants_usage:  # as OpenAI: every chunk before the usage chunk carries "usage": null
                        chunk["usage"] = None
                if meter.first_token is None and has_output(chunk):  # not the role-only first chunk
                    meter.first_token = time.monotonic()
                chunk["model"] = model_id
                await self._event(legacy_functions.chunk(chunk) if self.legacy else chunk)
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not complete:
                meter.aborted = True
                meter.status = 499  # client closed the request (nginx's code): it was not an error of ours
            raise
        except shutdown.ShuttingDown:
            meter.status = 503
            await self._error(errors.ServiceUnavailable(shutdown.ShuttingDown.message))
        except (httpx.TransportError, ValueError) as exc:
            log.warning("upstream stream of %s failed: %s", model_id, exc)
            meter.status, meter.upstream_broke = 502, isinstance(exc, httpx.TransportError)
            await self._error(errors.UpstreamError("The model's deployment failed while streaming; the answer is cut."))
        finally:
            await asyncio.shield(meter.save())
