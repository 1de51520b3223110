"""Automatic prefix caching on the CPU with the packaged chat model as ``make run`` serves it (SmolLM2-135M, the
default quantization), through the engine:

1. time to first token of a request whose ~1,500-token prefix (a long system prompt) is cached, against the same
   request with a prefix the cache has never seen (cold), alternating, medians;
2. a 10-turn conversation replayed by 4 concurrent users (each turn: the history so far + a new question, a
   32-token answer), with the cache and without: total time and prompt tokens computed;
3. a tool-calling request (two tools, their prompt as the service writes it) repeated with other questions: time
   to first token, first against repeats.

    .venv/bin/python benchmarks/bench_prefix.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import DEFAULT_MODELS, EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402

SYSTEM = (
    "You are the support assistant of a bicycle shop. Answer politely and briefly. Our opening hours are Monday to "
    "Friday 9:00-18:00 and Saturday 10:00-14:00. We repair every brand; a standard service costs 49 euros and takes "
    "two days. Rules: never promise a repair date without checking the calendar; recommend a helmet with every "
    "sale; refunds within 30 days with the receipt. Catalogue entry {i}: city bike model C{i}, aluminium frame, "
    "{g} gears, weight {w} kg, price {p} euros, colours black, silver and green, available in sizes S, M and L. "
)
QUESTIONS = ["Do you repair e-bikes?", "What does a service cost?", "Are you open on Sunday?",
             "Which bike is lightest?", "Can I return a helmet?", "How long does a repair take?",
             "Do you sell children's bikes?", "What colours does C3 come in?", "Is there a student discount?",
             "Can I pay by card?"]  # fmt: skip


def served_engine(caching: bool) -> LLMEngine:
    spec = next(s for s in DEFAULT_MODELS if s.id == "smollm2-135m-instruct")
    model, tokenizer = _model(spec)
    cfg = EngineConfig(kv_cache_tokens=16384, max_num_seqs=8, enable_prefix_caching=caching)
    return LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), cfg)


_MODELS: dict = {}


def _model(spec):
    if spec.id not in _MODELS:
        model, tokenizer, _ = build_model(spec)
        _MODELS[spec.id] = (model, tokenizer)
    return _MODELS[spec.id]


def system_prompt(tokenizer, tokens: int, salt: str = "") -> str:
    text, i = salt, 0
    while len(tokenizer.encode(text, add_special_tokens=False)) < tokens:
        text += SYSTEM.format(i=i, g=3 + i % 9, w=10 + i % 7, p=400 + 37 * i)
        i += 1
    return text


def ttft(engine: LLMEngine, ids: list[int], max_tokens: int = 1) -> float:
    """Seconds from submitting the request to its first token (the engine otherwise idle)."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    engine.add_request(f"r{start}", ids, params)
    first = None
    while engine.has_work:
        if engine.step() and first is None:
            first = time.perf_counter() - start
    return first


def cached_prefix(rounds: int) -> None:
    engine = served_engine(True)
    tok = engine.tokenizer
    cold_times, warm_times = [], []
    warm_system = system_prompt(tok, 1500)
    chat = lambda system, q: tok.apply_chat_template(  # noqa: E731
        [{"role": "system", "content": system}, {"role": "user", "content": q}]
    )
    ttft(engine, chat(warm_system, QUESTIONS[0]))  # computes the prefix once: cached from now on
    length = len(chat(warm_system, QUESTIONS[1]))
    for r in range(rounds):  # alternating; a cold prefix differs from its first token on
        cold_times.append(ttft(engine, chat(system_prompt(tok, 1500, salt=f"Session {r}. "), QUESTIONS[1])))
        warm_times.append(ttft(engine, chat(warm_system, QUESTIONS[2 + r % 8])))
    cold, warm = statistics.median(cold_times), statistics.median(warm_times)
    print(f"1. {length}-token prompt, time to first token: cold {cold * 1000:.0f} ms, prefix cached "
          f"{warm * 1000:.0f} ms: {cold / warm:.1f}x faster (medians of {rounds})")  # fmt: skip


def conversation(users: int = 4, turns: int = 10, answer: int = 32) -> None:
    for caching in (False, True):
        engine = served_engine(caching)
        tok = engine.tokenizer
        params = SamplingParams(max_tokens=answer, temperature=0.0, ignore_eos=True)
        histories = [[{"role": "system", "content": system_prompt(tok, 300, f"Shop {u}. ")}] for u in range(users)]
        prompt_total = 0
        start = time.perf_counter()
        for turn in range(turns):
            outputs: dict[str, list[int]] = {}
            for u, history in enumerate(histories):
                history.append({"role": "user", "content": QUESTIONS[(turn + u) % len(QUESTIONS)]})
                ids = tok.apply_chat_template(history)
                prompt_total += len(ids)
                engine.add_request(str(u), ids, params)
            while engine.has_work:
                for d in engine.step():
                    outputs.setdefault(d.request_id, []).extend(d.token_ids)
            for u, history in enumerate(histories):
                history.append({"role": "assistant", "content": tok.decode(outputs[str(u)], skip_special_tokens=True)})
        seconds = time.perf_counter() - start
        computed = prompt_total - engine.blocks.hit_tokens
        label = "with the cache   " if caching else "without the cache"
        print(f"2. {users} users x {turns} turns {label}: {seconds:.1f} s, prompt tokens computed {computed:,} of "
              f"{prompt_total:,}")  # fmt: skip


def tool_calls(rounds: int) -> None:
    from inference.function_calling.formats import FORMATS
    from inference.function_calling.prompt import prepare
    from inference.function_calling.request import read_tool_request
    from tests.support.samples import TOOLS

    engine = served_engine(True)
    tok = engine.tokenizer
    request = read_tool_request({"tools": TOOLS, "tool_choice": "auto"})

    def ids(question: str) -> list[int]:
        messages, tools = prepare([{"role": "user", "content": question}], request, tok.chat_template,
                                  FORMATS["hermes"])  # fmt: skip
        return tok.apply_chat_template(messages, tools=tools)

    first = ttft(engine, ids(QUESTIONS[0]))
    repeats = [ttft(engine, ids(QUESTIONS[1 + r % 9])) for r in range(rounds)]
    print(f"3. tool-calling request ({len(ids(QUESTIONS[0]))} tokens with its two tools), time to first token: "
          f"first {first * 1000:.0f} ms, repeated with other questions {statistics.median(repeats) * 1000:.0f} ms "
          f"(median of {rounds}): {first / statistics.median(repeats):.1f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cached_prefix(args.rounds)
    conversation()
    tool_calls(args.rounds)
    print(f"reproduce: .venv/bin/python benchmarks/bench_prefix.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
