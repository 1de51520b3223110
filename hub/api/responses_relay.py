"""``POST /v1/responses`` in the gateway: the plan (the request checked, the stored conversation it continues,
its chat completions form) and the relay of the answer.

Our inference service gets the chat completions request (``responses_chat.py``), always streamed with running
usage, whatever the client asked: the chunks become the Responses API's events (``responses_output.py``), sent
as they come (``stream: true``) or gathered into one response object. An external deployment (``external``:
OpenAI, vLLM, LiteLLM) gets the Responses API request itself, with the stored conversation written out as its
``input`` and ``store: false`` (the hub keeps the conversation, per tenant); its answer is relayed under the hub's
response id. Either way the response is stored (``store``, the default) before the client sees it complete, and
metered like a chat: one row (route ``responses``) with the counted tokens, aborted streams included.

With the tools the hub runs (``file_search``, ``file_search.py``; ``mcp``, ``mcp_tools.py``; our service only), a
round that ends in the model's calls of them is followed by the calls (their items and events on the same response,
``responses_tools.py``) and another round with their outputs, up to ``MAX_TOOL_ROUNDS`` rounds of calls (the last
round may not call again) and ``max_tool_calls`` calls (those past it ignored, and the round after the last one may
not call); the rounds' tokens add up in the one row, and ``max_output_tokens`` bounds them all (a round gets what the
earlier ones left). An mcp call that needs the client's approval ends the answer, as a client's function call does.
The mcp tool's servers are listed, and the calls the input approved are run, once the request has passed its
limits, before the model first runs (``ResponsePlan.prepare``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

import httpx

from accounts import background, conversations
from accounts import responses as stored
from accounts.authn import KeyContext
from hub import shutdown
from hub.api import compaction_items, errors, file_inputs, file_search, mcp_tools, tiers
from hub.api.citations import Citations
from hub.api.ids import new_id
from hub.api.relay_common import SSE_HEADERS, error_from_upstream, has_output, sse_lines, typed_event
from hub.api.responses_chat import chat_body, chat_part, response_message, response_param
from hub.api.responses_input import check_create, conversation_id, read_input, references
from hub.api.responses_output import ResponseBuilder, response_object
from hub.api.responses_tools import HostedTools
from hub.api.upstream import Target, upstreams
from hub.background import dispatch as background_dispatch
from hub.background import tail
from hub.pool import db

log = logging.getLogger(__name__)
MAX_TOOL_ROUNDS = 5

FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
# What an external deployment must not see: the hub keeps the conversation (and refuses background runs).
_HUB_ONLY = ("previous_response_id", "conversation", "store", "background", "stream_options")


@dataclass
class ResponsePlan:
    body: dict
    model_id: str
    history: list[dict]  # the stored conversation this request continues
    items: list[dict]  # this request's input items
    chat: dict  # the chat completions request for our inference service
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    conversation: str | None = None  # the conversation it continues and extends
    file_search: file_search.FileSearch | None = None  # the file_search tool, its stores read
    mcp: mcp_tools.McpPlan | None = None  # the mcp tools, their servers' tools once listed
    summaries: dict[str, str] = field(default_factory=dict)  # the context's compaction items' (compaction_items.py)
    files: file_inputs.Resolved = field(default_factory=dict)  # the context's files as the model reads them
    route: str = "responses"  # or responses/compact (compaction.py)
    background: bool = False  # the run of a response created with background: true, whose stored row it answers

    @property
    def store(self) -> bool:
        return self.body.get("store") is not False

    @property
    def logprobs(self) -> bool:
        return bool(self.chat.get("logprobs"))

    def upstream(self, target: Target, stream: bool) -> tuple[str, dict]:
        """(route, body) for ``target``."""
        if target.external:
            if self.file_search is not None:
                raise errors.InvalidRequest(f"'{self.model_id}' is served by an external deployment: the file_search "
                                            "tool runs on this hub's own deployments only.", param="tools")  # fmt: skip
            native = {k: v for k, v in self.body.items() if k not in _HUB_ONLY}
            native.update(model=target.model, input=[self._native(i) for i in self.history + self.items])
            if self.route == "responses":
                native.update(store=False, stream=stream)
            return self.route, native
        return "chat/completions", self.chat_payload(target)

    async def prepare(self, target: Target | None, run: bool = True) -> None:
        """Before the model first runs (``target``: where; None: counted only): the mcp tools' servers listed and
        their tools given to the model, and (``run``) the calls the input approved run."""
        if self.mcp is None:
            return
        if target is not None and target.external:
            raise errors.InvalidRequest(f"'{self.model_id}' is served by an external deployment: the mcp tool runs on "
                                        "this hub's own deployments only.", param="tools")  # fmt: skip
        await mcp_tools.prepare(self.mcp, self.body, self.chat, run)

    def _native(self, item: dict) -> dict:
        """An item as an external deployment may read it: this hub's compaction items as the summary they hold, its
        files as the text (or image) our models get (``file_inputs.py``: the deployment knows none of our ids)."""
        if item.get("type") == "message" and isinstance(item.get("content"), list) and self.files:
            content = [native for part in item["content"] for native in native_parts(part, self.files)]
            return {**item, "content": content}
        if item.get("type") != "compaction":
            return item
        text = compaction_items.shown(self.summaries[item["encrypted_content"]])["content"]
        return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}

    def chat_payload(self, target: Target, **changes) -> dict:
        """The chat request for our service at ``target``, always streamed with running usage; ``changes``: a later
        round's (its messages, its tool choice)."""
        options = {"include_usage": True, "continuous_usage_stats": True}
        return {**self.chat, "model": target.model, "stream_options": options, **changes}

    def new_response(self, service_tier: str) -> dict:
        response = response_object(self.id, self.body, self.model_id, self.created_at, service_tier)
        response["conversation"] = None if self.conversation is None else {"id": self.conversation}
        return response


async def plan(key: KeyContext, body: dict, model_id: str, empty_input: bool = False,
               background: dict | None = None, admit: file_inputs.Admit | None = None,
               vision: bool = False) -> ResponsePlan:  # fmt: skip
    """``empty_input``: ``input`` may be an empty array (a compaction of a stored response alone); ``background``:
    the ``id`` and ``created_at`` of the queued response this request answers (``hub/background/``); ``admit``: given
    the chat request it becomes, without its files, before one is read (``file_inputs.load``); ``vision``: the model
    reads images (it gets a PDF's pages too)."""
    check_create(body)
    tenant_id = key.tenant_id
    history: list[dict] = []
    previous, conversation = body.get("previous_response_id"), conversation_id(body)
    if previous is not None:
        found = await db(stored.find, tenant_id, previous)
        if found is None:
            raise errors.NotFound(f"Previous response with id '{errors.shown(previous)}' not found.",
                                  param="previous_response_id")  # fmt: skip
        history = found.context()
    elif conversation is not None:
        history = await db(_conversation_items, tenant_id, conversation)
    named = references(body.get("input"), history)
    referenced = await db(stored.items_by_id, tenant_id, named) if named else {}  # no pool thread for none
    items = [] if empty_input and body["input"] == [] else read_input(body, history, referenced)
    summaries = compaction_items.summaries(tenant_id, history, items)
    search = await file_search.plan(key, body)
    chat = chat_body(body, history + items, summaries)
    before = None if admit is None else (lambda: admit(file_inputs.without_files(chat)))
    files = await file_inputs.load(key, chat["messages"], _file_param(items), before, vision)
    chat["messages"] = file_inputs.apply(chat["messages"], files)
    planned = ResponsePlan(body, model_id, history, items, chat, conversation=conversation, file_search=search,
                           summaries=summaries, files=files,
                           mcp=mcp_tools.plan(body, history + items, items))  # fmt: skip
    if background is not None:
        planned.id, planned.created_at, planned.background = background["id"], background["created_at"], True
    return planned


def _file_key(part: dict) -> tuple | None:
    """The key ``file_inputs.load`` reads a Responses API content part's file under (None: no file)."""
    if part.get("type") not in ("input_file", "input_image"):
        return None
    return file_inputs.key_of(chat_part(part))


def native_parts(part: dict, files: file_inputs.Resolved) -> list[dict]:
    """A content part as an external deployment gets it: a file as its text (``input_text``) and, for a vision model,
    a PDF's pages, an image by ``file_id`` as its data: URL (the deployment knows none of this hub's file ids)."""
    found = files.get(_file_key(part))
    if found is None:
        return [part]
    return [{"type": "input_text", "text": p["text"]} if p["type"] == "text" else
            {"type": "input_image", "image_url": p["image_url"]["url"], "detail": p["image_url"]["detail"]}
            for p in found]  # fmt: skip


def _file_param(items: list[dict]) -> file_inputs.Where:
    """Where a file of the context is in the request (chat's messages are not ``input``'s items): the first part of
    ``input`` naming it, or ``input`` (one of the stored conversation's). Searched only for a request with a file."""

    def where(i: int, j: int, key: tuple) -> str:
        for k, item in enumerate(items):
            content = item.get("content") if item.get("type") == "message" else None
            for n, part in enumerate(content if isinstance(content, list) else []):
                if isinstance(part, dict) and _file_key(part) == key:
                    return f"input[{k}].content[{n}]"
        return "input"

    return where


def _conversation_items(tenant_id: int, conversation: str) -> list[dict]:
    if conversations.find(tenant_id, conversation) is None:
        raise errors.NotFound(f"Conversation with id '{errors.shown(conversation)}' not found.",
                              param="conversation")  # fmt: skip
    return conversations.items(conversation)


def _extend(plan: ResponsePlan, response: dict, unshown: dict[str, list]) -> None:
    """The response's input and output items added to its conversation, but for those it held already (an
    ``item_reference`` to one of them, an item sent again by its id). Its searches go in whole (``unshown``: the
    results the client did not ask to see), for the responses that continue the conversation to read."""
    held, new = {item.get("id") for item in plan.history}, []
    for item in plan.items:
        if item["id"] not in held:
            held.add(item["id"])
            new.append(item)
    output = [{**item, "results": unshown[item["id"]]} if item.get("id") in unshown else item
              for item in response.get("output", [])]  # fmt: skip
    try:
        conversations.add_items(plan.conversation, [*new, *output])
    except conversations.DuplicateItem as twice:  # another response added it meanwhile
        log.warning("conversation %s: item %s added meanwhile; this response's items not added",
                    plan.conversation, twice.item_id)  # fmt: skip
    except Exception:  # noqa: BLE001 - as _save: the answer is sent anyway, the failure logged
        log.exception("response %s could not be added to conversation %s", response.get("id"), plan.conversation)


def _save(plan: ResponsePlan, ctx, response: dict, unshown: dict[str, list] | None = None) -> None:
    try:
        stored.save(tenant_id=ctx.key.tenant_id, api_key_id=ctx.key.key_id, history=plan.history,
                    input_items=plan.items, response=response, search_results=unshown)  # fmt: skip
    except Exception:  # noqa: BLE001 - the answer is worth more than its copy: sent anyway, the failure logged
        log.exception("response %s could not be stored", response.get("id"))


class ResponsesRelay(HostedTools):
    """The Responses API's half of ``GatewayConsumer`` (which provides ``send``, ``_read``, ``_json``, the meter
    and the limits)."""

    plan: ResponsePlan

    async def _events(self, events: list[dict]) -> None:
        if events:
            body = b"".join(typed_event(e) for e in events)
            await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def _start_stream(self) -> None:
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self.answer_headers})
        self.headers_sent = True

    async def _end_stream(self) -> None:
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _store(self, response: dict, unshown: dict[str, list] | None = None) -> None:
        """``unshown``: the results of its searches the client did not ask to see, by item id (for its context). A
        background run writes into its queued row, unless the response was cancelled meanwhile (then its items
        go in no conversation either)."""
        if self.plan.background:
            plan = self.plan
            if not await db(background.answer, plan.id, response, plan.history, plan.items, unshown):
                return
        elif self.plan.store:
            await db(_save, self.plan, self.scope["hub"], response, unshown)
        if self.plan.conversation is not None:
            await db(_extend, self.plan, response, unshown or {})

    async def _queue_background(self, key: KeyContext) -> None:
        """``background: true``: the response stored as ``queued`` with its request, a runner asked to answer it
        (``hub/background/``), and the queued response answered at once. Its limits and metering come when it runs."""
        response = self.plan.new_response(tiers.answered(self.tier))
        row = await db(background.create, tenant_id=key.tenant_id, api_key_id=key.key_id, history=self.plan.history,
                       input_items=self.plan.items, response=response, request=self.plan.body)  # fmt: skip
        await asyncio.to_thread(background_dispatch.start, self.plan.id)  # a broker's publish blocks
        if self.plan.body.get("stream") is not True:
            return await self._json(200, row.response)
        # streamed: its events as the run keeps them; a client that leaves leaves the run going
        await self._start_stream()
        async for event in tail.events(self.plan.id):
            await self._events([event])
            if shutdown.over():  # this process stops; the run goes on: the client streams it again with GET
                break
        await self._end_stream()

    async def _refused(self, response: httpx.Response, target: Target, meter) -> NoReturn:
        """The deployment's error answer, as the client's (our service's params in the Responses API's names);
        metered when the model may have run (5xx)."""
        content = await self._read(response, meter)
        if response.status_code >= 500:
            meter.status = response.status_code
            await meter.save()
        error = error_from_upstream(response.status_code, content)
        if not target.external:
            error.param, error.message = response_param(error.param), response_message(error.message)
        raise error

    async def _relay_response(self, response: httpx.Response, target: Target, meter, stream: bool) -> None:
        if response.status_code != 200:
            await self._refused(response, target, meter)
        if target.external:
            return await self._relay_native(response, meter, stream)
        hosted = self.hosted_names()
        citations = None if self.plan.file_search is None else Citations.of(self.plan.history + self.plan.items)
        builder = ResponseBuilder(self.plan.new_response(self.shown_tier), logprobs=self.plan.logprobs, hosted=hosted,
                                  citations=citations)  # fmt: skip
        complete = False
        later: list[httpx.Response] = []  # the rounds after the first (the gateway closes the first)
        try:
            if stream:
                await self._start_stream()
                await self._events(builder.start())
            events = self._prepared(builder)
            if stream:
                await self._events(events)
            messages = list(self.plan.chat["messages"])
            calls_left = self.plan.body.get("max_tool_calls")  # of the hub's tools, in the whole response
            if calls_left is not None and self.plan.mcp is not None:  # the approved calls run first count
                calls_left = max(calls_left - len(self.plan.mcp.ran), 0)
            for rounds in range(MAX_TOOL_ROUNDS + 1):
                await self._consume(response, builder, meter, stream)
                if builder.hosted_calls and builder.finish_reason == "length":
                    await self._cut_hosted(builder, stream)
                if not builder.hosted_calls or builder.finish_reason == "length" or calls_left == 0:
                    break
                ran, said = await self._hosted(builder, stream, calls_left)
                messages += said
                calls_left = None if calls_left is None else calls_left - ran
                if builder.client_calls:  # the client's call (or approval) ends the answer; the calls run are kept
                    break
                events = builder.next_round()
                if stream:
                    await self._events(events)
                meter.carry()
                left = self._output_left(meter)
                if left is not None and left <= 0:  # the search calls spent max_output_tokens: cut, as OpenAI's
                    builder.finish_reason = "length"
                    break
                last = rounds + 1 == MAX_TOOL_ROUNDS or calls_left == 0
                response = await self._round(target, meter, messages, last=last, output_left=left)
                later.append(response)
            events = builder.finish()
            await self._store(builder.response, builder.unshown_results)
            if stream:
                await self._events(events)
                complete = True
                await self._end_stream()
            else:
                complete = True
                await self._json(200, builder.response)
        except asyncio.CancelledError:
            if not complete:
                meter.aborted, meter.status = True, 499
            raise
        except shutdown.ShuttingDown:
            meter.status = 503
            if not stream:
                raise errors.ServiceUnavailable(shutdown.ShuttingDown.message) from None
            await self._events(builder.fail(shutdown.ShuttingDown.message))
            await self._end_stream()
        except (httpx.TransportError, ValueError, _Broken) as exc:
            log.warning("upstream stream of %s failed: %s", self.plan.model_id, exc)
            meter.status, meter.upstream_broke = 502, isinstance(exc, httpx.TransportError)
            message = "The model's deployment failed while answering; the answer is cut."
            if not stream:
                raise errors.UpstreamError(message) from None
            await self._events(builder.fail(message))
            await self._end_stream()
        finally:
            for extra in later:
                await extra.aclose()
            await asyncio.shield(meter.save())

    async def _consume(self, response: httpx.Response, builder: ResponseBuilder, meter, stream: bool) -> None:
        """One round's chat stream into the response."""
        async for line in sse_lines(response):
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            if shutdown.over():
                raise shutdown.ShuttingDown
            chunk = json.loads(data)
            if "error" in chunk:  # the service failed mid-answer
                raise _Broken(str((chunk["error"] or {}).get("message") or "The model failed."))
            meter.take(chunk.get("usage"))
            if meter.first_token is None and has_output(chunk):
                meter.first_token = time.monotonic()
            events = builder.feed(chunk)
            if stream:
                await self._events(events)

    def _output_left(self, meter) -> int | None:
        """What is left of ``max_output_tokens`` after the rounds so far: like OpenAI's, it bounds the response's
        whole output, the calls of its rounds included (None: no bound asked for)."""
        asked = self.plan.chat.get("max_completion_tokens")
        return None if asked is None else asked - meter.completion_tokens

    async def _round(self, target: Target, meter, messages: list[dict], last: bool,
                     output_left: int | None) -> httpx.Response:  # fmt: skip
        """The next round's chat stream from the same deployment (``last``: the model may not call the hub's tools
        again; ``output_left``: its ``max_completion_tokens``). Its prompt is not checked against the reservation:
        the limits settle at the counted tokens."""
        payload = self.plan.chat_payload(target, messages=messages)
        if output_left is not None:
            payload["max_completion_tokens"] = output_left
        if last:
            payload["tool_choice"] = "none"
        elif payload.get("tool_choice") not in (None, "auto", "none"):  # a call was asked for, and made: now free
            payload["tool_choice"] = "auto"
        tiers.upstream(payload, self.tier, False, self.plan.body.get("priority"))
        client = upstreams.client()
        request = client.build_request("POST", target.url("chat/completions"), json=payload,
                                       headers=meter.headers(target))  # fmt: skip
        upstreams.acquire(target)
        try:
            response = await client.send(request, stream=True)
        finally:
            upstreams.release(target)
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            raise _Broken(f"the model's deployment answered {response.status_code}: {content[:200]!r}")
        return response

    async def _native_json(self, content: bytes, meter, kind: str, rename: Callable[[dict], None],
                           store: bool = True) -> None:  # fmt: skip
        """An external deployment's whole JSON answer (``kind``: what it should be), ``rename``d as the hub's,
        metered, stored (``store``), sent."""
        try:
            payload = json.loads(content)
            rename(payload)
        except (ValueError, TypeError, AttributeError):
            meter.status = 502
            await meter.save()
            raise errors.UpstreamError(f"The model's deployment answered with something other than {kind}.") from None
        meter.take(payload.get("usage"))
        meter.first_token = time.monotonic()
        try:
            if store:
                await self._store(payload)
            await self._json(200, payload)
        finally:
            await asyncio.shield(meter.save())

    async def _relay_native(self, response: httpx.Response, meter, stream: bool) -> None:
        """An external deployment's own Responses API answer, under the hub's id and model name."""
        if not stream:
            return await self._native_json(await self._read(response, meter), meter, "a response", self._rename)
        complete = False
        try:
            await self._start_stream()
            async for line in sse_lines(response):
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                if shutdown.over():
                    raise shutdown.ShuttingDown
                event = json.loads(line[5:].strip())
                if isinstance(event.get("response"), dict):
                    self._rename(event["response"])
                if meter.first_token is None and str(event.get("type", "")).endswith(".delta"):
                    meter.first_token = time.monotonic()
                if event.get("type") in FINAL_EVENTS:
                    meter.take(event["response"].get("usage"))
                    if event["type"] == "response.failed":
                        meter.status = 502
                    else:
                        await self._store(event["response"])
                    complete = True
                await self._events([event])
            await self._end_stream()
        except asyncio.CancelledError:
            if not complete:
                meter.aborted, meter.status = True, 499
            raise
        except (httpx.TransportError, ValueError, shutdown.ShuttingDown) as exc:
            log.warning("upstream stream of %s failed: %s", self.plan.model_id, exc)
            meter.status, meter.upstream_broke = 502, isinstance(exc, httpx.TransportError)
            error = {"type": "error", "code": "server_error", "param": None, "sequence_number": 0,
                     "message": "The model's deployment failed while streaming; the answer is cut."}  # fmt: skip
            await self._events([error])
            await self._end_stream()
        finally:
            await asyncio.shield(meter.save())

    def _rename(self, response: dict) -> None:
        response["id"], response["model"] = self.plan.id, self.plan.model_id
        response["previous_response_id"] = self.plan.body.get("previous_response_id")
        response["store"], response["background"] = self.plan.store, self.plan.background
        if self.plan.background:  # the queued response's own moment, as the client was shown it
            response["created_at"] = self.plan.created_at
        response["conversation"] = None if self.plan.conversation is None else {"id": self.plan.conversation}


class _Broken(Exception):
    """The service's stream carried an error."""
