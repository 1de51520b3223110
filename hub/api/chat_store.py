"""``store: true`` on ``POST /v1/chat/completions``: the gateway's half of OpenAI's stored chat completions.

The hub keeps them, per tenant (``accounts/chat_completions.py``), whatever the deployment: the request's ``store``
and ``metadata`` are not sent on. A stored completion gets the hub's own id (``chatcmpl-`` and 32 hex digits) in
place of the deployment's, in the answer and in every chunk of a stream, so that the id the client sees is the one
it can retrieve, unique whatever the deployment answers. A whole answer is stored as it is sent; a stream is put
together from its chunks (``ChatAssembler``) and stored once it is complete, before its ``[DONE]``: a client that
reads to the end finds it. An aborted or broken stream is not stored (it is metered, as always).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from accounts import chat_completions

log = logging.getLogger(__name__)

HUB_ONLY = ("store", "metadata")  # what the deployment never sees


def new_id() -> str:
    return f"chatcmpl-{secrets.token_hex(16)}"


@dataclass
class _Choice:
    index: int
    content: list[str] = field(default_factory=list)
    reasoning: list[str] | None = None
    tool_calls: dict[int, dict] = field(default_factory=dict)
    logprobs: list[dict] | None = None
    finish_reason: str | None = None

    def take(self, choice: dict) -> None:
        delta = choice.get("delta") or {}
        if delta.get("content"):
            self.content.append(delta["content"])
        if "reasoning_content" in delta:  # a reasoning model's messages always carry it (null when it did not think)
            self.reasoning = self.reasoning if self.reasoning is not None else []
            if delta["reasoning_content"]:
                self.reasoning.append(delta["reasoning_content"])
        for call in delta.get("tool_calls") or []:
            self._take_call(call)
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            self.logprobs = (self.logprobs or []) + list(logprobs.get("content") or [])
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]

    def _take_call(self, call: dict) -> None:
        """A tool call's first delta names it (id, type, function name); later ones add to its arguments."""
        index = call.get("index", len(self.tool_calls))
        whole = self.tool_calls.setdefault(index, {"id": None, "type": "function",
                                                   "function": {"name": "", "arguments": ""}})  # fmt: skip
        if call.get("id"):
            whole["id"] = call["id"]
        if call.get("type"):
            whole["type"] = call["type"]
        function = call.get("function") or {}
        whole["function"]["name"] += function.get("name") or ""
        whole["function"]["arguments"] += function.get("arguments") or ""

    def whole(self) -> dict:
        message: dict = {"role": "assistant", "content": "".join(self.content) or None, "refusal": None}
        if self.reasoning is not None:
            text = "".join(self.reasoning) or None
            message.update(reasoning_content=text, reasoning=text)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        elif message["content"] is None and self.reasoning is None:
            message["content"] = ""  # an answer of no text: "" as in a whole answer
        logprobs = None if self.logprobs is None else {"content": self.logprobs, "refusal": None}
        return {"index": self.index, "message": message, "logprobs": logprobs, "finish_reason": self.finish_reason}


class ChatAssembler:
    """A streamed chat completion put back together: the ``chat.completion`` object a whole answer would have been."""

    def __init__(self) -> None:
        self.head: dict = {}
        self.choices: dict[int, _Choice] = {}
        self.usage: dict | None = None

    def take(self, chunk: dict) -> None:
        if not self.head:
            self.head = {k: chunk[k] for k in ("created", "system_fingerprint", "service_tier") if k in chunk}
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            self.choices.setdefault(index, _Choice(index)).take(choice)
        if chunk.get("usage"):
            self.usage = chunk["usage"]

    def completion(self, completion_id: str, model: str) -> dict:
        choices = [self.choices[i].whole() for i in sorted(self.choices)]
        return {"id": completion_id, "object": "chat.completion", "created": self.head.get("created"), "model": model,
                **{k: v for k, v in self.head.items() if k != "created"}, "choices": choices,
                "usage": self.usage}  # fmt: skip


@dataclass
class ChatStore:
    """One ``store: true`` request: its id, what is kept with it, and (streamed) its assembler."""

    tenant_id: int
    api_key_id: int | None
    messages: list
    metadata: dict
    id: str = field(default_factory=new_id)
    assembler: ChatAssembler = field(default_factory=ChatAssembler)

    @classmethod
    def wanted(cls, ctx, body: dict) -> ChatStore | None:
        if body.get("store") is not True:
            return None
        return cls(ctx.key.tenant_id, ctx.key.key_id, body["messages"], dict(body.get("metadata") or {}))

    async def save(self, completion: dict) -> None:
        await sync_to_async(self._save, thread_sensitive=False)(completion)

    def _save(self, completion: dict) -> None:
        try:
            chat_completions.save(tenant_id=self.tenant_id, api_key_id=self.api_key_id, messages=self.messages,
                                  metadata=self.metadata, completion=completion)  # fmt: skip
        except Exception:  # noqa: BLE001 - the answer is worth more than its copy: sent anyway, the failure logged
            log.exception("chat completion %s could not be stored", self.id)
        finally:
            close_old_connections()
