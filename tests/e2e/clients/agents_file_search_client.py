"""The OpenAI Agents SDK's ``FileSearchTool`` against the hub: an agent that searches a vector store of the hub's
(made by the test) before it answers; run by the e2e tests in ``.venv-agents``. With ``tool_choice="file_search"``
the first turn searches; the SDK resets the choice so that the model then answers. Prints one JSON object with
what the run returned; exits non-zero on any error.

usage: python agents_file_search_client.py BASE_URL API_KEY MODEL VECTOR_STORE_ID
"""

import asyncio
import json
import sys

from agents import Agent, FileSearchTool, ModelSettings, OpenAIResponsesModel, Runner, set_tracing_disabled
from openai import AsyncOpenAI


async def main(base_url: str, api_key: str, model: str, store_id: str) -> dict:
    set_tracing_disabled(True)  # no internet: never export traces to OpenAI
    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    agent = Agent(
        name="Librarian",
        instructions="Answer from the user's files: search them first, then answer in one sentence.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        model_settings=ModelSettings(tool_choice="file_search", max_tokens=48, temperature=0),
        tools=[FileSearchTool(vector_store_ids=[store_id], max_num_results=2, include_search_results=True)],
    )  # fmt: skip
    result = await Runner.run(agent, "What is the capital of France?", max_turns=2)
    searches = [item.raw_item for item in result.new_items if item.type == "tool_call_item"]
    return {
        "items": [item.type for item in result.new_items],
        "searches": [{"type": s.type, "queries": s.queries, "files": [r.filename for r in s.results or []]}
                     for s in searches],
        "final_output": str(result.final_output),
        "responses": len(result.raw_responses),
    }  # fmt: skip


if __name__ == "__main__":  # an error raises out of here: its traceback on stderr, exit status 1
    print(json.dumps(asyncio.run(main(*sys.argv[1:5])), default=str))
