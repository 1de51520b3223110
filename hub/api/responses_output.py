"""A chat completions stream from our inference service, as a Responses API answer: the response object and its
semantic stream events, in OpenAI's order, each with its ``sequence_number``.

::

    response.created, response.in_progress
    per output item: response.output_item.added
        reasoning:      response.reasoning_text.delta ... .done
        message:        response.content_part.added, response.output_text.delta (and .annotation.added) ... .done,
                        response.content_part.done
        function_call:  response.function_call_arguments.delta ... .done
        file_search_call: response.file_search_call.in_progress, .searching, .completed
        mcp_list_tools: response.mcp_list_tools.in_progress, .completed | .failed
        mcp_call:       response.mcp_call_arguments.delta, .done, response.mcp_call.in_progress, .completed | .failed
        mcp_approval_request: (added and done only)
      response.output_item.done
    response.completed | response.incomplete (max_output_tokens) | response.failed (then ``error`` first)

Output items follow the chunks' order: the think block (``reasoning_content``) as a reasoning item, the text as
a message with one ``output_text`` part, each tool call as a ``function_call`` item (``call_id`` the service's
call id), but for the calls of a tool the hub runs itself (``hosted``: file_search, mcp), which are kept apart
(``hosted_calls``) for the relay to run and show as ``file_search_call`` and ``mcp_call`` items (or as an
``mcp_approval_request``, which ends the answer); the relay then starts the next round
(``next_round``) on the same response. The markers by which the model cites those results become ``file_citation``
annotations of the text (``citations.py``; ``response.output_text.annotation.added``). ``usage`` is the service's
counted tokens of every round, in the Responses API's names.
"""

from __future__ import annotations

import copy
import time

from hub.api.citations import Citations
from hub.api.ids import new_id
from hub.api.relay_common import token_counts

# Echoed from the request, with OpenAI's defaults.
ECHOED = {
    "instructions": None, "max_output_tokens": None, "max_tool_calls": None, "parallel_tool_calls": True,
    "previous_response_id": None, "temperature": 1.0, "tool_choice": "auto", "top_p": 1.0, "top_logprobs": 0,
    "truncation": "disabled", "safety_identifier": None, "prompt_cache_key": None,
}  # fmt: skip


def search_item() -> dict:
    """A file_search_call item, before its search."""
    return {"id": new_id("fs"), "type": "file_search_call", "status": "in_progress", "queries": [], "results": None}


def mcp_call_item(label: str, name: str, arguments: str, request_id: str | None = None) -> dict:
    """An mcp_call item, before its call; ``request_id``: the approval request it answers."""
    return {
        "id": new_id("mcp"),
        "type": "mcp_call",
        "server_label": label,
        "name": name,
        "arguments": arguments,
        "output": None,
        "error": None,
        "status": "in_progress",
        "approval_request_id": request_id,
    }


def response_object(response_id: str, body: dict, model: str, created_at: int, service_tier: str) -> dict:
    """The response object before any output (``status: in_progress``); ``service_tier``: the tier it is served in
    (``hub/api/tiers.py``), which OpenAI's answer names."""
    out = {"id": response_id, "object": "response", "created_at": created_at, "status": "in_progress",
           "background": body.get("background") is True, "completed_at": None, "error": None,
           "incomplete_details": None}  # fmt: skip
    for name, default in ECHOED.items():
        value = body.get(name)
        out[name] = default if value is None else value
    if body.get("user") is not None:  # a string when present (OpenAI's schema has no null for it)
        out["user"] = body["user"]
    reasoning, text = body.get("reasoning") or {}, body.get("text") or {}
    out.update(
        model=model, output=[], metadata=body.get("metadata") or {}, store=body.get("store") is not False,
        reasoning={"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        text={"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        tools=[_tool(t) for t in body.get("tools") or []],
        service_tier=service_tier,
    )  # fmt: skip
    # no ``usage`` until the end: OpenAI's schema has no null for it
    return out


def add_usage(a: dict | None, b: dict | None) -> dict | None:
    """Two rounds' chat usage as one."""
    if a is None or b is None:
        return a or b
    x, y = token_counts(a), token_counts(b)
    prompt, completion = x.prompt + y.prompt, x.completion + y.completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": (x.cached or 0) + (y.cached or 0)},
            "completion_tokens_details": {"reasoning_tokens": (x.reasoning or 0) + (y.reasoning or 0)}}  # fmt: skip


def _tool(tool: dict) -> dict:
    """A tool as the response echoes it, with OpenAI's defaults."""
    if tool.get("type") == "mcp":  # its authorization and headers are secrets: never echoed
        shown = {"type": "mcp", "server_label": tool["server_label"], "server_url": tool["server_url"],
                 "allowed_tools": tool.get("allowed_tools"), "headers": None,
                 "require_approval": tool.get("require_approval") or "always"}  # fmt: skip
        if tool.get("server_description") is not None:  # a string when present (OpenAI's schema has no null)
            shown["server_description"] = tool["server_description"]
        return shown
    if tool.get("type") == "file_search":
        options = tool.get("ranking_options") or {}
        ranking = {"ranker": options.get("ranker") or "auto", "score_threshold": options.get("score_threshold") or 0}
        if options.get("hybrid_search") is not None:
            ranking["hybrid_search"] = options["hybrid_search"]
        return {"type": "file_search", "vector_store_ids": tool["vector_store_ids"],
                "max_num_results": tool.get("max_num_results") or 10, "filters": tool.get("filters"),
                "ranking_options": ranking}  # fmt: skip
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict") is not False,
    }


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

    def __init__(self, response: dict, logprobs: bool = False, hosted: frozenset[str] = frozenset(),
                 citations: Citations | None = None):  # fmt: skip
        self.response = response
        self.logprobs = logprobs
        self.hosted = hosted  # the function names of the tools the hub runs itself
        self.citations = citations  # file_search's markers, taken out of the text as annotations
        self.unshown_results: dict[str, list] = {}  # a search's results the client did not ask for, by item id
        self.held_logprobs: list[dict] = []  # of text held back (a marker's start, maybe)
        self.hosted_calls: dict[int, dict] = {}  # a hosted call's index in the chunks -> its call_id, arguments
        self.carried: dict | None = None  # the usage of the rounds before this one
        self.sequence = 0
        self.item: dict | None = None  # the open output item
        self.tool_items: dict[int, dict] = {}  # a tool call's index in the chunks -> its item
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.awaiting = False  # an mcp call waits for the client's approval

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
        events = []
        open_text = self.item is not None and self.item["type"] == "message"
        if open_text and self.citations is not None and self.citations.pending:  # a marker never finished: text
            events.append(self._delta(self.citations.flush()))
        self.held_logprobs = []
        item, self.item = self.item, None
        if item is None:
            return events
        where = {"item_id": item["id"], "output_index": self.response["output"].index(item)}
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
        self.held_logprobs += [_logprob(lp) for lp in logprobs] if self.logprobs else []
        for kind, value in [("text", text)] if self.citations is None else self.citations.feed(text):
            events.append(self._delta(value) if kind == "text" else self._annotate(value))
        return events

    def _delta(self, text: str) -> dict:
        part = self.item["content"][0]
        part["text"] += text
        shown, self.held_logprobs = self.held_logprobs, []
        part["logprobs"] += shown
        return self._event("response.output_text.delta", item_id=self.item["id"], output_index=self._index,
                           content_index=0, delta=text, logprobs=shown)  # fmt: skip

    def _annotate(self, file_id: str) -> dict:
        """A citation of ``file_id`` where the text now ends."""
        part = self.item["content"][0]
        annotation = self.citations.annotation(file_id, len(part["text"]))
        part["annotations"].append(annotation)
        return self._event("response.output_text.annotation.added", item_id=self.item["id"],
                           output_index=self._index, content_index=0, annotation_index=len(part["annotations"]) - 1,
                           annotation=annotation)  # fmt: skip

    def _tool_call(self, call: dict) -> list[dict]:
        events = []
        index = call.get("index", len(self.tool_items) + len(self.hosted_calls))
        function = call.get("function") or {}
        hosted = self.hosted_calls.get(index)
        if hosted is None and index not in self.tool_items and function.get("name") in self.hosted:
            hosted = self.hosted_calls[index] = {"call_id": call.get("id") or new_id("call"),
                                                 "name": function["name"], "arguments": ""}  # fmt: skip
        if hosted is not None:
            hosted["arguments"] += function.get("arguments") or ""
            return events
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

    # --- tools the hub runs ----------------------------------------------------------------------------------

    def search_started(self) -> tuple[dict, list[dict]]:
        """A file_search_call item, searching: (the item, its events)."""
        item = search_item()
        index, events = self._shown(item)
        where = {"output_index": index, "item_id": item["id"]}
        events.append(self._event("response.file_search_call.in_progress", **where))
        item["status"] = "searching"
        events.append(self._event("response.file_search_call.searching", **where))
        return item, events

    def search_done(self, item: dict, queries: list[str], results: list[dict] | None, failed: bool = False,
                    found: list[dict] = ()) -> list:  # fmt: skip
        """The search's end: its queries, its results (None: not shown), completed (or failed); ``found``: the
        results, whether shown or not (the model may cite their files)."""
        if self.citations is not None:
            self.citations.files.update((r["file_id"], r["filename"]) for r in found)
        if results is None and not failed:
            self.unshown_results[item["id"]] = list(found)
        item.update(status="failed" if failed else "completed", queries=queries, results=results)
        index = self.response["output"].index(item)
        events = [] if failed else [self._event("response.file_search_call.completed", output_index=index,
                                                item_id=item["id"])]  # fmt: skip
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def hosted_cut(self, item: dict) -> list[dict]:
        """A hosted tool's call that ``max_output_tokens`` cut before the model had written it whole: shown, not run,
        as an ``incomplete`` item (a function call cut there is shown so too)."""
        item["status"] = "incomplete"
        index, events = self._shown(item)
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def _shown(self, item: dict) -> tuple[int, list[dict]]:
        """A hosted tool's item added to the output: (its index, its ``output_item.added`` event)."""
        events = self._close()
        self.response["output"].append(item)
        return self._index, [*events, self._event("response.output_item.added", output_index=self._index, item=item)]

    def mcp_list(self, item: dict) -> list[dict]:
        """A server's tools, listed before the model ran (``item``: as listed, with ``error`` if it failed)."""
        index, events = self._shown({**item, "tools": [], "error": None})
        where = {"output_index": index, "item_id": item["id"]}
        events.append(self._event("response.mcp_list_tools.in_progress", **where))
        self.response["output"][index] = item
        done = "failed" if item.get("error") else "completed"
        events.append(self._event(f"response.mcp_list_tools.{done}", **where))
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def mcp_call_started(self, label: str, name: str, arguments: str, request_id: str | None = None) -> tuple:
        """An mcp_call item, calling: (the item, its events)."""
        item = mcp_call_item(label, name, "", request_id)
        index, events = self._shown(item)
        where = {"output_index": index, "item_id": item["id"]}
        item["arguments"] = arguments
        events.append(self._event("response.mcp_call_arguments.delta", **where, delta=arguments))
        events.append(self._event("response.mcp_call_arguments.done", **where, arguments=arguments))
        events.append(self._event("response.mcp_call.in_progress", **where))
        item["status"] = "calling"
        return item, events

    def mcp_call_done(self, item: dict, output: str | None, error: dict | None) -> list[dict]:
        index = self.response["output"].index(item)
        item.update(output=output, error=error, status="failed" if error else "completed")
        events = [self._event(f"response.mcp_call.{item['status']}", output_index=index, item_id=item["id"])]
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def mcp_approval_request(self, label: str, name: str, arguments: str) -> list[dict]:
        """A call the client must approve first: the answer ends with it (``awaiting``)."""
        item = {"id": new_id("mcpr"), "type": "mcp_approval_request", "server_label": label, "name": name,
                "arguments": arguments}  # fmt: skip
        index, events = self._shown(item)
        self.awaiting = True
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    @property
    def client_calls(self) -> bool:
        """Whether this round called a function of the client's, or asked for an approval (the answer then ends
        with it)."""
        return bool(self.tool_items) or self.awaiting

    def next_round(self) -> list[dict]:
        """The model answers again on the same response (after the hub ran its tools): the open item closed."""
        events = self._close()
        self.carried, self.usage = add_usage(self.carried, self.usage), None
        self.tool_items, self.hosted_calls, self.finish_reason = {}, {}, None
        return events

    # --- the end ---------------------------------------------------------------------------------------------

    def finish(self) -> list[dict]:
        """The stream ended: the open item closed and ``response.completed`` (or ``.incomplete`` when it was cut
        at ``max_output_tokens``), with the usage."""
        cut = self.finish_reason in ("length", "content_filter")
        events = self._close("incomplete" if cut else "completed")
        usage = usage_of(add_usage(self.carried, self.usage))
        self.response.update(status="incomplete" if cut else "completed", usage=usage, completed_at=int(time.time()))
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
                             usage=usage_of(add_usage(self.carried, self.usage)))  # fmt: skip
        events.append(self._snapshot("response.failed"))
        return events


def _logprob(entry: dict) -> dict:
    return {"token": entry.get("token", ""), "logprob": entry.get("logprob", 0.0), "bytes": entry.get("bytes") or [],
            "top_logprobs": [{"token": t.get("token", ""), "logprob": t.get("logprob", 0.0),
                              "bytes": t.get("bytes") or []} for t in entry.get("top_logprobs") or []]}  # fmt: skip
