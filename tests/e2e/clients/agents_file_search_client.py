"""The OpenAI Agents SDK's ``FileSearchTool`` against the hub: an agent that searches a vector store of the hub's
(made by the test) before it answers; run by the e2e tests in ``.venv-agents``. With ``tool_choice="file_search"``
the first turn searches, and ``max_tool_calls`` 1 has the hub run that one search only (a small model copies the
passages' file markers into new searches). The answer is an ``output_type`` whose one string has a ``maxLength``:
the hub's grammar ends it within ``max_tokens`` whatever the model would write (the SDK fails a run whose answer is
cut, and the markers carry the files' random ids, so a small model's free text changes length from run to run).
Prints one JSON object with what the run returned; exits non-zero on any error.

usage: python agents_file_search_client.py BASE_URL API_KEY MODEL VECTOR_STORE_ID
"""

import asyncio
import json
import sys

from agents import Agent, FileSearchTool, ModelSettings, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI
from pydantic import BaseModel, Field


class Answer(BaseModel):
    answer: str = Field(max_length=80)


async def main(base_url: str, api_key: str, model: str, store_id: str) -> dict:
    set_tracing_disabled(True)  # no internet: never export traces to OpenAI
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    agent = Agent(
        name="Librarian",
        instructions="Answer from the user's files: search them first, then answer in one sentence.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=ModelSettings(tool_choice="file_search", max_tokens=160, temperature=0,
                                     extra_args={"max_tool_calls": 1}),
        output_type=Answer,
        tools=[FileSearchTool(vector_store_ids=[store_id], max_num_results=2, include_search_results=True)],
    )  # fmt: skip
    result = await Runner.run(agent, "What is the capital of France?", max_turns=2)
    searches = [item.raw_item for item in result.new_items if item.type == "tool_call_item"]
    return {
        "items": [item.type for item in result.new_items],
        "searches": [{"type": s.type, "queries": s.queries, "files": [r.filename for r in s.results or []]}
                     for s in searches],
        "final_output": result.final_output.answer,
        "responses": len(result.raw_responses),
    }  # fmt: skip


if __name__ == "__main__":  # an error raises out of here: its traceback on stderr, exit status 1
    print(json.dumps(asyncio.run(main(*sys.argv[1:5])), default=str))
