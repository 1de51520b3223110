"""LlamaIndex's ``OpenAILike`` as a client of the hub; run by ``test_frameworks.py`` in ``.venv-llamaindex``
(LlamaIndex's OpenAI integration needs openai<3). Prints one JSON object with what each call returned.

usage: python llamaindex_client.py BASE_URL API_KEY MODEL
"""

import asyncio
import json
import sys

from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

base_url, api_key, model = sys.argv[1:4]
llm = OpenAILike(
    model=model, api_base=base_url, api_key=api_key, is_chat_model=True, context_window=8192,
    max_tokens=12, temperature=0, max_retries=0,
)  # fmt: skip
messages = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Say hello.")]
chat = llm.chat(messages)
completion = llm.complete("Name a colour.")
streamed = [part.delta for part in llm.stream_chat(messages)]


async def achat() -> str:
    return (await llm.achat(messages)).message.content


print(
    json.dumps(
        {
            "chat": chat.message.content,
            "chat_usage": dict(chat.raw.usage) if chat.raw and chat.raw.usage else None,
            "complete": completion.text,
            "stream": streamed,
            "achat": asyncio.run(achat()),
        },
        default=str,
    )
)
