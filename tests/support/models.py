"""The packaged models, converted once per machine (cached) and loaded once per test session."""

from __future__ import annotations

import functools

from inference.config import EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.loader.sources import resolve_source
from inference.tokenizer.detokenizer import IncrementalDetokenizer
from inference.tokenizer.tokenizer import Tokenizer
from tests.support.markers import require


def model_dir(name: str):
    """The packaged model's directory (its tokenizer and config; converted once per machine, cached)."""
    return _resolved(name)


def loaded(name: str):
    require("real_model", f"loads the packaged model {name}")
    return _loaded(name)


@functools.cache
def _resolved(name: str):
    return resolve_source(f"packaged:{name}")


@functools.cache
def _loaded(name: str):
    directory = _resolved(name)
    return load_model(directory).eval(), Tokenizer.from_dir(directory)


def make_engine(name: str, **engine_options) -> LLMEngine:
    """An engine on the packaged model ``name`` (loaded once per session)."""
    return engine_on(*loaded(name), **engine_options)


def engine_on(model, tokenizer: Tokenizer, **engine_options) -> LLMEngine:
    """An engine on ``model`` with a 1024-token KV cache unless ``engine_options`` say otherwise."""
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


def watch_preemptions(engine: LLMEngine) -> list[str]:
    """The request ids the engine's scheduler preempts, in order, as it does."""
    preempted: list[str] = []
    preempt = engine.scheduler._preempt
    engine.scheduler._preempt = lambda victim, step: preempted.append(victim.request_id) or preempt(victim, step)
    return preempted


def greedy_answers(results: dict) -> dict[str, tuple[list[int], list[float]]]:
    """``run_to_end``'s results → request id → (token ids, their logprobs)."""
    return {key[0]: (r["ids"], [lp.logprob for lp in r["lp"]]) for key, r in results.items()}


def answers_joining_mid_flight(engine: LLMEngine, prompts: list[list[int]], params, steps: int = 4) -> dict:
    """The first prompt decoding alone for ``steps`` steps, then the others joining: ``greedy_answers``' shape."""
    engine.add_request("0", prompts[0], params)
    partial: dict = {}
    for _ in range(steps):
        for d in engine.step():
            entry = partial.setdefault(d.request_id, ([], []))
            entry[0].extend(d.token_ids)
            entry[1].extend(lp.logprob for lp in d.logprobs)
    for i, prompt in enumerate(prompts[1:], start=1):
        engine.add_request(str(i), prompt, params)
    for key, (tokens, logprobs) in greedy_answers(run_to_end(engine)).items():
        entry = partial.setdefault(key, ([], []))
        entry[0].extend(tokens)
        entry[1].extend(logprobs)
    return partial
