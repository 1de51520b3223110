"""Sample requests more than one test module uses: two tools in OpenAI's shape, a conversation that called them,
and sentences for the embedding models (from the everyday to far past a 256-token limit)."""

from __future__ import annotations

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "format"],
            "additionalProperties": False,
        },
    },
}
CALC = {
    "type": "function",
    "function": {"name": "calculate", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                                                     "required": ["expression"]}},
}  # fmt: skip
TOOLS = [WEATHER, CALC]

HISTORY = [
    {"role": "user", "content": "Weather in Hamburg and Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_current_weather", "arguments": '{"location": "Hamburg", "format": "celsius"}'}},
        {"id": "call_2", "type": "function",
         "function": {"name": "get_current_weather", "arguments": '{"location": "Paris", "format": "celsius"}'}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "15 C"},
]  # fmt: skip

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A self-hosted LLM platform serves models behind an OpenAI-compatible API.",
    "Paris is the capital of France.",
    "¿Dónde está la biblioteca? Je ne sais pas.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "I love this movie!!! 10/10 would watch again 😀",
    "Quantum entanglement links the states of two particles regardless of distance.",
    "ok",
    "The stock market fell 3.2% on Tuesday after the central bank raised interest rates by 50 basis points.",
    # far past the model's 256-token limit: both sides must truncate
    " ".join(f"word{i} and some filler text about embeddings" for i in range(80)),
]
