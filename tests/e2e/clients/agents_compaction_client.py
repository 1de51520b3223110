"""The OpenAI Agents SDK's ``OpenAIResponsesCompactionSession`` against the hub: a session that calls
``responses.compact`` after each turn (its decision hook says yes every time), so that the second turn runs on the
first's compacted history. The session needs an OpenAI model name (``gpt-*``): the test serves the packaged chat
model under one. Prints one JSON object with the session's items after each turn; exits non-zero on any error.

usage: python agents_compaction_client.py BASE_URL API_KEY CHAT_MODEL OPENAI_NAMED_MODEL
"""

import asyncio
import json
import sys

from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, SQLiteSession, set_tracing_disabled
from agents.memory import OpenAIResponsesCompactionSession
from openai import AsyncOpenAI


def _kinds(items: list) -> list[str]:
    return [f"{item.get('type', 'message')}:{item.get('role', '')}" for item in items]


async def main(base_url: str, api_key: str, _chat: str, model: str) -> dict:
    set_tracing_disabled(True)  # no internet: never export traces to OpenAI
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    session = OpenAIResponsesCompactionSession("bees", SQLiteSession("bees"), client=client, model=model,
                                               should_trigger_compaction=lambda context: True)  # fmt: skip
    agent = Agent(name="Keeper", instructions="Answer in one short sentence.",
                  model=OpenAIResponsesModel(model=model, openai_client=client),
                  model_settings=ModelSettings(max_tokens=256, temperature=0))  # fmt: skip
    first = await Runner.run(agent, "My name is Ada and I keep bees.", session=session)
    after_first = await session.get_items()
    second = await Runner.run(agent, "What is my name?", session=session)
    after_second = await session.get_items()
    return {"after_first": _kinds(after_first), "after_second": _kinds(after_second),
            "outputs": [str(first.final_output), str(second.final_output)]}  # fmt: skip


if __name__ == "__main__":  # an error raises out of here: its traceback on stderr, exit status 1
    print(json.dumps(asyncio.run(main(*sys.argv[1:5])), default=str))
