"""``truncation: "auto"`` on a Responses request: a context longer than the model's leaves out items from its
beginning, as OpenAI's does, until the prompt and ``max_output_tokens`` fit the model's length (the instructions
stay). It is cut only before a user's message, so that what the model reads starts as a conversation does (a tool's
output never without its call); when even the last user's message and what follows do not fit, the service refuses
the request (400 ``context_length_exceeded``), as with ``"disabled"``.

A context whose bound (its bytes, ``ratelimit.chat_prompt_bound``) fits is sent at once; another is counted by our
inference service (``responses_count.count``: exact, nothing run), and the cut found by bisection, a count per
step. Only the request sent is cut: the stored response keeps the whole context. An external deployment is sent
``truncation`` itself."""

from __future__ import annotations

from dataclasses import replace

from hub.api import file_inputs, responses_count
from hub.api.ratelimit import chat_prompt_bound
from hub.api.responses_chat import messages
from hub.api.responses_relay import ResponsePlan
from hub.api.upstream import ModelInfo, Target


def _cut(plan: ResponsePlan, start: int) -> dict:
    """The plan's chat request with the context from item ``start`` on."""
    items = (plan.history + plan.items)[start:]
    chat = messages(plan.body.get("instructions"), items, plan.summaries)
    return {**plan.chat, "messages": file_inputs.apply(chat, plan.files)}


async def fit(plan: ResponsePlan, info: ModelInfo, targets: list[Target], request_id: str) -> None:
    """Cut ``plan.chat``'s context to the model's length, if it must be and can be."""
    own = [target for target in targets if not target.external]
    if not own or not info.max_sequence_length:
        return
    room = info.max_sequence_length - (plan.chat.get("max_completion_tokens") or 1)
    if chat_prompt_bound(plan.chat) <= room:
        return

    async def fits(start: int) -> bool:
        return await responses_count.count(replace(plan, chat=_cut(plan, start)), own, request_id) <= room

    context = plan.history + plan.items
    starts = [i for i, item in enumerate(context) if item.get("type") == "message" and item.get("role") == "user"]
    if await fits(0) or not starts:
        return
    low, high = 0, len(starts) - 1  # the first start that fits lies in starts[low..high], if any does
    if starts[0] == 0:
        low = 1
    while low < high:
        middle = (low + high) // 2
        if await fits(starts[middle]):
            high = middle
        else:
            low = middle + 1
    if low < len(starts):
        plan.chat = _cut(plan, starts[low])
