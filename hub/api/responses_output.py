"""A chat completions stream from our inference service, as a Responses API answer: the response object and its
semantic stream events, in OpenAI's order, each with its ``sequence_number``.

::

    response.created, response.in_progress
    per output item: response.output_item.added
        reasoning:      response.reasoning_text.delta ... .done
        message:        response.content_part.added, response.output_text.delta ... .done, response.content_part.done
        function_call:  response.function_call_arguments.delta ... .done
      response.output_item.done
    response.completed | response.incomplete (max_output_tokens) | response.failed (then ``error`` first)

Output items follow the chunks' order: the think block (``reasoning_content``) as a reasoning item, the text as
a message with one ``output_text`` part, each tool call as a ``function_call`` item (``call_id`` the service's
call id). ``usage`` is the service's counted tokens in the Responses API's names.
"""

from __future__ import annotations

import copy
import time

from hub.api.responses_input import new_id

# Echoed from the request, with OpenAI's defaults.
ECHOED = {
    "instructions": None, "max_output_tokens": None, "max_tool_calls": None, "parallel_tool_calls": True,
    "previous_response_id": None, "temperature": 1.0, "tool_choice": "auto", "top_p": 1.0, "top_logprobs": 0,
    "truncation": "disabled", "safety_identifier": None, "prompt_cache_key": None,
}  # fmt: skip


def response_object(response_id: str, body: dict, model: str, created_at: int, service_tier: str) -> dict:
    """The response object before any output (``status: in_progress``); ``service_tier``: the tier it is served in
    (``hub/api/tiers.py``), which OpenAI's answer names."""
    out = {"id": response_id, "object": "response", "created_at": created_at, "status": "in_progress",
           "background": False, "completed_at": None, "error": None, "incomplete_details": None}  # fmt: skip
    for name, default in ECHOED.items():
        value = body.get(name)
        out[name] = default if value is None else value
    if body.get("user") is not None:  # a string when present (OpenAI's schema has no null for it)
        out["user"] = body["user"]
    reasoning = body.get("reasoning") or {}
    out.update(
        model=model, output=[], metadata=body.get("metadata") or {}, store=body.get("store") is not False,
        reasoning={"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        text={"format": (body.get("text") or {}).get("format") or {"type": "text"}, "verbosity": "medium"},
        tools=[{"type": "function", "name": t["name"], "description": t.get("description"),
                "parameters": t.get("parameters"), "strict": t.get("strict") is not False}
               for t in body.get("tools") or []],
        service_tier=service_tier,
    )  # fmt: skip
    # no ``usage`` until the end: OpenAI's schema has no null for it
    return out


def usage_of(usage: dict | None) -> dict:
    usage = usage or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    # written: the prompt tokens computed afresh, which the service's prefix cache then holds
    details = {"cached_tokens": cached, "cache_write_tokens": max(prompt - cached, 0)}
    return {"input_tokens": prompt, "input_tokens_details": details, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning}, "total_tokens": prompt + completion}  # fmt: skip


class ResponseBuilder:
    """Fed the service's chat chunks (``feed``), it returns the events they make and keeps the response object."""

    def __init__(self, response: dict, logprobs: bool = False):
        self.response = response
        self.logprobs = logprobs
        self.sequence = 0
        self.item: dict | None = None  # the open output item
        self.tool_items: dict[int, dict] = {}  # a tool call's index in the chunks -> its item
        self.finish_reason: str | None = None
        self.usage: dict | None = None

    # --- events ----------------------------------------------------------------------------------------------

    def _event(self, kind: str, **fields) -> dict:
        # a copy: the items go on changing after their event is made, and events may be sent later
        event = {"type": kind, **copy.deepcopy(fields), "sequence_number": self.sequence}
        self.sequence += 1
        return event

    def _snapshot(self, kind: str) -> dict:
        return self._event(kind, response=self.response)

    def start(self) -> list[dict]:
        return [self._snapshot("response.created"), self._snapshot("response.in_progress")]

    @property
    def _index(self) -> int:
        return len(self.response["output"]) - 1

    def _open(self, item: dict) -> list[dict]:
        events = self._close()
        self.response["output"].append(item)
        self.item = item
        events.append(self._event("response.output_item.added", output_index=self._index, item=item))
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events.append(self._event("response.content_part.added", item_id=item["id"], output_index=self._index,
                                      content_index=0, part=part))  # fmt: skip
        elif item["type"] == "reasoning":
            item["content"].append({"type": "reasoning_text", "text": ""})
        return events

    def _close(self, status: str = "completed") -> list[dict]:
        item, self.item = self.item, None
        if item is None:
            return []
        where = {"item_id": item["id"], "output_index": self.response["output"].index(item)}
        events = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(self._event("response.output_text.done", **where, content_index=0, text=part["text"],
                                      logprobs=part["logprobs"]))  # fmt: skip
            events.append(self._event("response.content_part.done", **where, content_index=0, part=part))
        elif item["type"] == "reasoning":
            text = item["content"][0]["text"]
            events.append(self._event("response.reasoning_text.done", **where, content_index=0, text=text))
        else:
            events.append(self._event("response.function_call_arguments.done", **where, name=item["name"],
                                      arguments=item["arguments"]))  # fmt: skip
        item["status"] = status
        events.append(self._event("response.output_item.done", output_index=where["output_index"], item=item))
        return events

    # --- the chat stream -------------------------------------------------------------------------------------

    def feed(self, chunk: dict) -> list[dict]:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        events: list[dict] = []
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning:
                if self.item is None or self.item["type"] != "reasoning":
                    events += self._open({"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [],
                                          "status": "in_progress"})  # fmt: skip
                self.item["content"][0]["text"] += reasoning
                events.append(self._event("response.reasoning_text.delta", item_id=self.item["id"],
                                          output_index=self._index, content_index=0, delta=reasoning))  # fmt: skip
            if delta.get("content"):
                events += self._text(delta["content"], (choice.get("logprobs") or {}).get("content") or [])
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _text(self, text: str, logprobs: list[dict]) -> list[dict]:
        events = []
        if self.item is None or self.item["type"] != "message":
            events += self._open({"id": new_id("msg"), "type": "message", "role": "assistant", "content": [],
                                  "status": "in_progress"})  # fmt: skip
        part = self.item["content"][0]
        part["text"] += text
        shown = [_logprob(lp) for lp in logprobs] if self.logprobs else []
        part["logprobs"] += shown
        events.append(self._event("response.output_text.delta", item_id=self.item["id"], output_index=self._index,
                                  content_index=0, delta=text, logprobs=shown))  # fmt: skip
        return events

    def _tool_call(self, call: dict) -> list[dict]:
        events = []
        index = call.get("index", len(self.tool_items))
        function = call.get("function") or {}
        item = self.tool_items.get(index)
        if item is None:
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": call.get("id") or new_id("call"), "name": function.get("name") or ""}  # fmt: skip
            self.tool_items[index] = item
            events += self._open(item)
        if function.get("arguments"):
            item["arguments"] += function["arguments"]
            events.append(self._event("response.function_call_arguments.delta", item_id=item["id"],
                                      output_index=self.response["output"].index(item),
                                      delta=function["arguments"]))  # fmt: skip
        return events

    # --- the end ---------------------------------------------------------------------------------------------

    def finish(self) -> list[dict]:
        """The stream ended: the open item closed and ``response.completed`` (or ``.incomplete`` when it was cut
        at ``max_output_tokens``), with the usage."""
        cut = self.finish_reason in ("length", "content_filter")
        events = self._close("incomplete" if cut else "completed")
        self.response.update(status="incomplete" if cut else "completed", usage=usage_of(self.usage),
                             completed_at=int(time.time()))  # fmt: skip
        if cut:
            reason = "max_output_tokens" if self.finish_reason == "length" else "content_filter"
            self.response["incomplete_details"] = {"reason": reason}
        events.append(self._snapshot("response.incomplete" if cut else "response.completed"))
        return events

    def fail(self, message: str, code: str = "server_error") -> list[dict]:
        """The service failed mid-answer: an ``error`` event, then ``response.failed`` with what was produced."""
        events = self._close("incomplete")
        events.append(self._event("error", code=code, message=message, param=None))
        self.response.update(status="failed", error={"code": "server_error", "message": message},
                             usage=usage_of(self.usage))  # fmt: skip
        events.append(self._snapshot("response.failed"))
        return events


def _logprob(entry: dict) -> dict:
    return {"token": entry.get("token", ""), "logprob": entry.get("logprob", 0.0), "bytes": entry.get("bytes") or [],
            "top_logprobs": [{"token": t.get("token", ""), "logprob": t.get("logprob", 0.0),
                              "bytes": t.get("bytes") or []} for t in entry.get("top_logprobs") or []]}  # fmt: skip
