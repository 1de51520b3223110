"""The OpenAI Agents SDK's conversation memory on the hub's Conversations API; run by the e2e tests in
``.venv-agents``. Two turns with an ``OpenAIConversationsSession`` (the SDK reads the conversation's items, sends
them before the new input, then adds the turn's items itself), ``pop_item`` (the last item, deleted), then a third
turn with ``conversation_id`` (the hub adds the turn's items). Prints one JSON object; exits non-zero on any error.

usage: python agents_session_client.py BASE_URL API_KEY MODEL
"""

import asyncio
import json
import sys

from agents import Agent, ModelSettings, OpenAIConversationsSession, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI
from pydantic import BaseModel, Field


class Reply(BaseModel):
    """A short answer: its JSON schema (maxLength) bounds the model's output, which must end for the SDK."""

    text: str = Field(max_length=24)


async def main(base_url: str, api_key: str, model: str) -> dict:
    set_tracing_disabled(True)  # no internet: never export traces to OpenAI
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    agent = Agent(
        name="Brief",
        instructions="Reply with one short sentence.",
        output_type=Reply,
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=ModelSettings(max_tokens=64, temperature=0),
    )
    session = OpenAIConversationsSession(openai_client=client)
    first = await Runner.run(agent, "My name is Ann.", session=session)
    second = await Runner.run(agent, "What is my name?", session=session)
    conversation_id = await session._get_session_id()
    after_two = await session.get_items()
    popped = await session.pop_item()
    third = await Runner.run(agent, "Say hello.", conversation_id=conversation_id)
    return {
        "conversation_id": conversation_id,
        "after_two": [(item.get("type", "message"), item.get("role")) for item in after_two],
        "popped": popped["id"],
        "response_ids": [r.raw_responses[-1].response_id for r in (first, second, third)],
        "third_output_ids": [item.raw_item.id for item in third.new_items],
    }


if __name__ == "__main__":  # an error raises out of here: its traceback on stderr, exit status 1
    print(json.dumps(asyncio.run(main(*sys.argv[1:4])), default=str))
