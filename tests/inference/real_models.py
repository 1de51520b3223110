"""The packaged models, converted once per machine (cached) and loaded once per test session."""

from __future__ import annotations

import functools

from inference.config import EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.loader.sources import resolve_source
from inference.tokenizer.detokenizer import IncrementalDetokenizer
from inference.tokenizer.tokenizer import Tokenizer


@functools.cache
def model_dir(name: str):
    return resolve_source(f"packaged:{name}")


@functools.cache
def loaded(name: str):
    directory = model_dir(name)
    return load_model(directory).eval(), Tokenizer.from_dir(directory)


def make_engine(name: str, **engine_options) -> LLMEngine:
    model, tokenizer = loaded(name)
    options = {"kv_cache_tokens": 1024, **engine_options}
    return LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), EngineConfig(**options))


def run_to_end(engine: LLMEngine) -> dict[tuple[str, int], dict]:
    """Step until idle; per (request, choice): token ids, text, finish reason, logprobs."""
    results: dict[tuple[str, int], dict] = {}
    while engine.has_work:
        for delta in engine.step():
            r = results.setdefault((delta.request_id, delta.index), {"ids": [], "text": "", "finish": None, "lp": []})
            r["ids"] += delta.token_ids
            r["text"] += delta.text
            r["lp"] += delta.logprobs
            r["finish"] = delta.finish_reason or r["finish"]
    return results
