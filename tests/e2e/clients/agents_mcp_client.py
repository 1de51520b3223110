"""The OpenAI Agents SDK's ``HostedMCPTool`` against the hub: an agent whose remote MCP server (a test's, on
loopback) the hub lists and calls; run by the e2e tests in ``.venv-agents``. The server's tools need approval (OpenAI's
default): the SDK asks ``on_approval_request`` (which approves, and records what it was asked) and runs the agent
again with the approval, and the hub runs the call then. ``MCPToolChoice`` makes the model call ``add``, and
``max_tool_calls`` 1 has the hub run that one call only (a small model, free to, calls it again and again). The answer
is an ``output_type`` whose one string has a ``maxLength`` (the hub's grammar ends it within ``max_tokens``). Prints
one JSON object with what the run returned; exits non-zero on any error.

usage: python agents_mcp_client.py BASE_URL API_KEY MODEL SERVER_URL
"""

import asyncio
import json
import sys

from agents import Agent, HostedMCPTool, ModelSettings, OpenAIResponsesModel, Runner, set_tracing_disabled
from agents.model_settings import MCPToolChoice
from openai import AsyncOpenAI
from pydantic import BaseModel, Field


class Answer(BaseModel):
    answer: str = Field(max_length=80)


async def main(base_url: str, api_key: str, model: str, server_url: str) -> dict:
    set_tracing_disabled(True)  # no internet: never export traces to OpenAI
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    asked = []

    def approve(request) -> dict:
        asked.append({"name": request.data.name, "arguments": request.data.arguments})
        return {"approve": True}

    tool = HostedMCPTool(tool_config={"type": "mcp", "server_label": "calculator", "server_url": server_url,
                                      "allowed_tools": ["add"], "require_approval": "always"},
                         on_approval_request=approve)  # fmt: skip
    agent = Agent(
        name="Calculator",
        instructions="Use the calculator's tools to answer, then answer in one sentence.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=ModelSettings(tool_choice=MCPToolChoice(server_label="calculator", name="add"),
                                     max_tokens=160, temperature=0, extra_args={"max_tool_calls": 1}),
        output_type=Answer,
        tools=[tool],
    )  # fmt: skip
    result = await Runner.run(agent, "What is 17 plus 25?", max_turns=3)
    calls = [item.raw_item for item in result.new_items if getattr(item.raw_item, "type", None) == "mcp_call"]
    return {
        "items": [f"{item.type}:{getattr(item.raw_item, 'type', '')}" for item in result.new_items],
        "asked": asked,
        "calls": [{"name": c.name, "arguments": c.arguments, "output": c.output} for c in calls],
        "final_output": result.final_output.answer,
        "responses": len(result.raw_responses),
    }


if __name__ == "__main__":  # an error raises out of here: its traceback on stderr, exit status 1
    print(json.dumps(asyncio.run(main(*sys.argv[1:5])), default=str))
