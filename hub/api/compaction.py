"""OpenAI's ``POST /v1/responses/compact`` (``client.responses.compact``; the Agents SDK's
``OpenAIResponsesCompactionSession`` calls it when a session grows).

The context (``input``, after the stored response ``previous_response_id`` names; ``instructions`` first) is sent to
the model once more, with a last user message asking for a summary of it for the model's own later use (greedy:
the same context gets the same summary). The answer is
OpenAI's ``response.compaction``: the context's user messages as they were, then one ``compaction`` item holding the
summary (``compaction_items.py``), which stands for everything else (the assistant's messages, tool calls and their
outputs, reasoning, earlier compactions) when the output is sent back as the next input. Checked, limited and
metered like a response (route ``responses/compact``); not streamed; a model served by an external deployment gets the
request as it came (its own compaction)."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
from django.conf import settings

from accounts.authn import KeyContext
from accounts.models import ModelKind
from hub import shutdown
from hub.api import errors
from hub.api.compaction_items import seal
from hub.api.ids import new_id
from hub.api.responses_output import ResponseBuilder, usage_of
from hub.api.responses_relay import ResponsePlan, _Broken
from hub.api.responses_relay import plan as plan_response
from hub.api.upstream import ModelInfo, Target
from hub.api.validation import wrong_type

log = logging.getLogger(__name__)

ROUTE = "responses/compact"
ASK = (
    "You are performing a CONTEXT CHECKPOINT COMPACTION. Summarize the conversation above for your own later use, "
    "in place of it: the user's goals, constraints and preferences; what was done, found and decided, tool results "
    "included; and what remains to do. Keep names, numbers and exact values. Write only the summary."
)
_FIELDS = ("model", "input", "previous_response_id", "instructions", "prompt_cache_key", "prompt_cache_retention",
           "prompt_cache_options", "service_tier")  # fmt: skip


def _check(body: dict) -> None:
    """What the response's own check (``plan_response``, given the context) does not see: a falsy ``input`` of the
    wrong type, and fields a compaction does not take."""
    if body.get("input") is not None and not isinstance(body["input"], (str, list)):
        raise wrong_type("input", "a string or an array of input items", body["input"])
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise errors.InvalidRequest(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                                    code="unknown_parameter")  # fmt: skip


async def plan(key: KeyContext, body: dict, model_id: str, info: ModelInfo) -> ResponsePlan:
    """The context read as a response's would be (its stored response, its compaction items), and the chat request
    that asks the model for its summary."""
    _check(body)
    context = {"model": model_id, "input": body.get("input") or [], "store": False}
    for name in ("previous_response_id", "instructions", "prompt_cache_key"):
        if body.get(name) is not None:
            context[name] = body[name]
    found = await plan_response(key, context, model_id, empty_input=True, vision=info.kind == ModelKind.VISION)
    if not found.history + found.items:
        raise errors.InvalidRequest("There is nothing to compact: give 'input', or 'previous_response_id'.",
                                    param="input", code="missing_required_parameter")  # fmt: skip
    most = settings.HUB_COMPACTION_MAX_TOKENS
    # greedy: a summary to rely on is the model's likeliest, the same for the same context
    found.chat = {"model": model_id, "messages": [*found.chat["messages"], {"role": "user", "content": ASK}],
                  "stream": True, "max_completion_tokens": min(most, info.max_output_length or most),
                  "temperature": 0}  # fmt: skip
    found.body, found.route = body, ROUTE
    return found


def resource(found: ResponsePlan, tenant_id: int, summary: str, usage: dict | None) -> dict:
    """OpenAI's CompactResource: the context's user messages, then the compaction item."""
    kept = [item for item in found.history + found.items if item["type"] == "message" and item["role"] == "user"]
    compaction = {"type": "compaction", "id": new_id("cmp"), "encrypted_content": seal(tenant_id, summary)}
    return {"id": found.id, "object": "response.compaction", "output": [*kept, compaction],
            "created_at": int(time.time()), "usage": usage_of(usage)}  # fmt: skip


def _summary(response: dict) -> str:
    """The answer's text (its think block, if any, left out)."""
    parts = [p for item in response["output"] if item["type"] == "message" for p in item["content"]]
    return "".join(p.get("text", "") for p in parts).strip()


class CompactionRelay:
    """``GatewayConsumer``'s half for this route (it provides ``_read``, ``_refused``, ``_native_json``,
    ``_consume``, ``_json``, ``plan``)."""

    async def _relay_compaction(self, response: httpx.Response, target: Target, meter) -> None:
        if response.status_code != 200:
            await self._refused(response, target, meter)
        if target.external:
            content = await self._read(response, meter)  # an external deployment's own compaction, under the hub's id
            return await self._native_json(content, meter, "a compaction", self._name, store=False)
        builder = ResponseBuilder(self.plan.new_response(self.shown_tier))
        try:
            await self._consume(response, builder, meter, stream=False)
            builder.finish()
            answer = resource(self.plan, self.scope["hub"].key.tenant_id, _summary(builder.response), builder.usage)
            await self._json(200, answer)
        except asyncio.CancelledError:
            meter.aborted, meter.status = True, 499
            raise
        except shutdown.ShuttingDown:
            meter.status = 503
            raise errors.ServiceUnavailable(shutdown.ShuttingDown.message) from None
        except (httpx.TransportError, ValueError, _Broken) as exc:
            log.warning("compaction by %s failed: %s", self.plan.model_id, exc)
            meter.status, meter.upstream_broke = 502, isinstance(exc, httpx.TransportError)
            raise errors.UpstreamError("The model's deployment failed while compacting.") from None
        finally:
            await asyncio.shield(meter.save())

    def _name(self, payload: dict) -> None:
        payload["id"] = self.plan.id
