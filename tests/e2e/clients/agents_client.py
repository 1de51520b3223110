"""The OpenAI Agents SDK (``openai-agents``) as a client of the hub's Responses API; run by the e2e tests in
``.venv-agents`` (requirements-agents.txt). One agent, one function tool: with ``tool_choice="required"`` the
model must call the tool on the first turn, and the SDK resets the tool choice (``reset_tool_choice``) so that
the second turn may answer. Prints one JSON object with what the run returned; exits non-zero on any error.

usage: python agents_client.py BASE_URL API_KEY MODEL
"""

import asyncio
import json
import sys

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

calls: list[dict] = []


@function_tool
def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city's name, e.g. Paris.
    """
    calls.append({"city": city})
    return f"sunny and 21 C in {city}"


async def main(base_url: str, api_key: str, model: str) -> dict:
    set_tracing_disabled(True)  # no internet: never export traces to OpenAI
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    agent = Agent(
        name="Weather",
        instructions="You answer questions about the weather. Always use the get_weather tool, then answer briefly.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=ModelSettings(tool_choice="required", max_tokens=128, temperature=0),
        tools=[get_weather],
        reset_tool_choice=True,  # the default, stated: "required" holds for the first turn only
    )  # fmt: skip
    result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
    return {
        "tool_calls": calls,
        "final_output": result.final_output if isinstance(result.final_output, str) else str(result.final_output),
        "responses": len(result.raw_responses),
        "usage": [
            {"input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens} for r in result.raw_responses
        ],
        "response_ids": [r.response_id for r in result.raw_responses],
        "items": [item.type for item in result.new_items],
    }


if __name__ == "__main__":  # an error raises out of here: its traceback on stderr, exit status 1
    print(json.dumps(asyncio.run(main(*sys.argv[1:4])), default=str))
