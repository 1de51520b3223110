"""The calls of the tools the hub runs itself, in a Responses API answer (``responses_relay.py``): ``file_search``
(``file_search.py``) and ``mcp`` (``mcp_tools.py``), each shown as its items and events (``responses_output.py``)
and answered to the model in the next round."""

from __future__ import annotations

import logging

from hub.api import file_search, mcp_items, mcp_tools
from hub.api.responses_output import ResponseBuilder, mcp_call_item, search_item
from hub.vector_stores.embed import EmbeddingFailed

log = logging.getLogger(__name__)


class HostedTools:
    """A half of ``ResponsesRelay`` (which provides ``plan``, ``scope`` and ``_events``)."""

    async def _shown(self, events: list[dict], stream: bool) -> None:
        if stream:
            await self._events(events)

    def hosted_names(self) -> frozenset[str]:
        """The function names the model calls the hub's tools by."""
        names = set() if self.plan.mcp is None else set(self.plan.mcp.functions)
        if self.plan.file_search is not None:
            names.add(file_search.FILE_SEARCH_NAME)
        return frozenset(names)

    def _prepared(self, builder: ResponseBuilder) -> list[dict]:
        """What the hub did before the model first ran: the servers listed, the approved calls run."""
        mcp, events = self.plan.mcp, []
        if mcp is None:
            return events
        for item in mcp.new_lists:
            events += builder.mcp_list(item)
        for request, output, error in mcp.ran:
            item, started = builder.mcp_call_started(request["server_label"], request["name"], request["arguments"],
                                                     request["id"])  # fmt: skip
            events += started + builder.mcp_call_done(item, output, error)
        return events

    async def _hosted(self, builder: ResponseBuilder, stream: bool, limit: int | None) -> tuple[int, list[dict]]:
        """Run the round's calls of the hub's tools, the first ``limit`` of them (``max_tool_calls``: the others are
        ignored, as OpenAI's); how many were made, and the chat messages that give the model its calls and their
        outputs (an mcp call waiting for approval has none: the answer ends with it)."""
        taken = sorted(builder.hosted_calls.items())[:limit]
        calls, outputs = [], []
        for _, call in taken:
            if self.plan.file_search is not None and call["name"] == file_search.FILE_SEARCH_NAME:
                text = await self._search(builder, stream, call)
            else:
                text = await self._mcp_call(builder, stream, call)
                if text is None:
                    continue
            calls.append({"id": call["call_id"], "type": "function",
                          "function": {"name": call["name"], "arguments": call["arguments"]}})  # fmt: skip
            outputs.append({"role": "tool", "tool_call_id": call["call_id"], "content": text})
        said = [{"role": "assistant", "content": None, "tool_calls": calls}, *outputs] if calls else []
        return len(taken), said

    async def _cut_hosted(self, builder: ResponseBuilder, stream: bool) -> None:
        """The round's calls of the hub's tools that ``max_output_tokens`` cut (their arguments unfinished): shown
        as incomplete items, not run (they were left out of the output)."""
        for _, call in sorted(builder.hosted_calls.items()):
            if self.plan.file_search is not None and call["name"] == file_search.FILE_SEARCH_NAME:
                item = search_item()
            else:
                label, tool = self.plan.mcp.functions[call["name"]]
                item = mcp_call_item(label, tool["name"], call["arguments"])
            await self._shown(builder.hosted_cut(item), stream)

    async def _search(self, builder: ResponseBuilder, stream: bool, call: dict) -> str:
        """A file_search call, shown as a file_search_call item; what the model reads of it."""
        search, key = self.plan.file_search, self.scope["hub"].key
        queries = file_search.queries(call["arguments"])
        item, events = builder.search_started()
        await self._shown(events, stream)
        failed, results = False, []
        if queries:
            try:
                results = await search.run(key, queries)
            except EmbeddingFailed as failure:
                log.warning("file_search of response %s failed: %s", self.plan.id, failure)
                failed = True
        events = builder.search_done(item, queries, results if search.include_results else None, failed, results)
        await self._shown(events, stream)
        return "The search failed." if failed else file_search.results_text(results)

    async def _mcp_call(self, builder: ResponseBuilder, stream: bool, call: dict) -> str | None:
        """An mcp call, run and shown as an mcp_call item (what the model reads of it), or shown as an
        mcp_approval_request where the tool asks for approval (None)."""
        label, tool = self.plan.mcp.functions[call["name"]]
        config = self.plan.mcp.configs[label]
        if mcp_tools.needs_approval(config, tool):
            await self._shown(builder.mcp_approval_request(label, tool["name"], call["arguments"]), stream)
            return None
        item, events = builder.mcp_call_started(label, tool["name"], call["arguments"])
        await self._shown(events, stream)
        output, error = await mcp_tools.call(config, tool["name"], call["arguments"])
        await self._shown(builder.mcp_call_done(item, output, error), stream)
        return mcp_items.call_output(output, error)
