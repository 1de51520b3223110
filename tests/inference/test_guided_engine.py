"""Constrained decoding inside the batched engine, on SmolLM2-135M sampling at temperature 1: every answer under
a grammar that ends parses and validates against its schema (one cut by max_tokens ends with "length", as
OpenAI's), and a free sequence batched with constrained ones is not held back."""

from __future__ import annotations

import json

import jsonschema
import pytest

from inference.engine.guided import GuideCompiler
from inference.function_calling.formats import FORMATS
from inference.function_calling.grammar import build_grammar
from inference.function_calling.parsers import parse_tool_calls
from inference.function_calling.prompt import prepare
from inference.function_calling.request import read_tool_request
from inference.sampling_params import SamplingParams
from tests.support.models import make_engine, run_to_end
from tests.support.samples import TOOLS, WEATHER

pytestmark = pytest.mark.real_model

QUESTION = [{"role": "user", "content": "What's the weather like today in Hamburg?"}]


@pytest.fixture(scope="module")
def engine():
    return make_engine("smollm2", kv_cache_tokens=8192, max_num_seqs=16)


@pytest.fixture(scope="module")
def compiler(engine) -> GuideCompiler:
    tok = engine.tokenizer
    return GuideCompiler(tok.tokenizer_json, tok.stop_token_ids, engine.model.config.vocab_size)


def _prompt(engine, body: dict) -> tuple[list[int], object]:
    request = read_tool_request(body)
    messages, tools = prepare(QUESTION, request, engine.tokenizer.chat_template, FORMATS["hermes"])
    return engine.tokenizer.apply_chat_template(messages, tools=tools), request


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_current_weather"}}], ids=["required", "named"]
)
def test_forced_calls_always_parse_and_validate(engine, compiler, choice):
    ids, request = _prompt(engine, {"tools": TOOLS, "tool_choice": choice, "parallel_tool_calls": False})
    guide = compiler.compile(build_grammar(request, FORMATS["hermes"], {}, compiler.check))
    params = SamplingParams(max_tokens=160, temperature=1.0, seed=7, guide=guide)
    engine.add_request("forced", ids, params, n=8)
    results = run_to_end(engine)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    finished = [r for r in results.values() if r["finish"] == "stop"]
    # a 135M model at temperature 1 can ramble inside a string until max_tokens; with this seed most end
    assert len(finished) >= 6 and all(r["finish"] in ("stop", "length") for r in results.values())
    for result in finished:
        parsed = parse_tool_calls(result["text"], list(schemas), "hermes", live=True)
        assert parsed.content is None and len(parsed.tool_calls) == 1, result["text"]
        call = parsed.tool_calls[0]
        if isinstance(choice, dict):
            assert call.name == "get_current_weather"
        jsonschema.validate(json.loads(call.arguments), schemas[call.name])


def test_json_schema_answers_validate(engine, compiler):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
              "temperature": {"type": "number"}, "sunny": {"type": "boolean"}},
              "required": ["city", "temperature", "sunny"], "additionalProperties": False}  # fmt: skip
    body = {"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}}}
    ids, request = _prompt(engine, body)
    guide = compiler.compile(build_grammar(request, FORMATS["hermes"], {}, compiler.check))
    engine.add_request("json", ids, SamplingParams(max_tokens=120, temperature=1.0, seed=3, guide=guide), n=6)
    results = run_to_end(engine).values()
    assert sum(r["finish"] == "stop" for r in results) >= 5
    for result in results:
        if result["finish"] == "stop":
            jsonschema.validate(json.loads(result["text"]), schema)


def test_a_free_sequence_batched_with_constrained_ones_gives_its_own_answer(engine, compiler):
    free = engine.tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}])
    engine.add_request("alone", free, SamplingParams(max_tokens=24, temperature=0))
    alone = run_to_end(engine)[("alone", 0)]

    ids, request = _prompt(engine, {"tools": [WEATHER], "tool_choice": "required"})
    guide = compiler.compile(build_grammar(request, FORMATS["hermes"], {}, compiler.check))
    engine.add_request("forced", ids, SamplingParams(max_tokens=60, temperature=1.0, seed=1, guide=guide), n=4)
    engine.add_request("free", free, SamplingParams(max_tokens=24, temperature=0))
    steps_with_free = 0
    results: dict = {}
    while engine.has_work:
        deltas = engine.step()
        steps_with_free += any(d.request_id == "free" for d in deltas)
        for d in deltas:
            r = results.setdefault((d.request_id, d.index), {"ids": [], "finish": None})
            r["ids"] += d.token_ids
            r["finish"] = d.finish_reason or r["finish"]
    assert results[("free", 0)]["ids"] == alone["ids"]
    # one token per step for the free sequence, like alone: the grammars never made it skip a step
    assert steps_with_free == len(alone["ids"])
    assert all(results[("forced", i)]["finish"] in ("stop", "length") for i in range(4))
