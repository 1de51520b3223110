"""Priority scheduling on the CPU, the packaged chat model as ``make run`` serves it (SmolLM2-135M, the default
quantization and engine settings: 32 sequences at once), through the engine: what an interactive user waits for
while a batch job fills the engine, with the batch at a lower priority (how the hub sends batch lines,
``hub/api/tiers.py``) and with every request at the same priority (first come, first served).

The batch: 64 requests of 128 greedy tokens, all submitted at once (twice the engine's slots). Once it runs, an
interactive user sends 6 requests one after another (each 24 tokens, the next when the last is answered). Per
round: the user's first request (time to first token, whole answer), the means over the 6 (under FCFS the first
waits for the batch's queue and the others then find the engine free), and how long the batch took in all. The two
modes alternate, and the figures are medians over the rounds.

    .venv/bin/python benchmarks/bench_priority.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import DEFAULT_MODELS  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402

BATCH, BATCH_TOKENS, TURNS, TURN_TOKENS = 64, 128, 6, 24
TOPICS = ["rivers", "bridges", "bees", "volcanoes", "trains", "tea", "comets", "forests"]


def served_engine() -> LLMEngine:
    spec = next(s for s in DEFAULT_MODELS if s.id == "smollm2-135m-instruct")
    model, tokenizer, _ = build_model(spec)
    return LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), spec.engine)


def one_round(engine: LLMEngine, batch_priority: int, salt: int) -> tuple[float, ...]:
    """(the first request's time to first token and answer time, their means over the user's requests, the batch's
    whole time, preemptions) of one round."""
    tok = engine.tokenizer
    chat = lambda text: tok.apply_chat_template([{"role": "user", "content": text}])  # noqa: E731
    preempted = 0
    preempt = engine.scheduler._preempt

    def counted(victim, step):
        nonlocal preempted
        preempted += 1
        return preempt(victim, step)

    engine.scheduler._preempt = counted
    start = time.perf_counter()
    batch = SamplingParams(max_tokens=BATCH_TOKENS, temperature=0.0, ignore_eos=True, priority=batch_priority)
    for i in range(BATCH):  # a new salt each round: no prompt is in the prefix cache from an earlier round
        engine.add_request(f"b{i}", chat(f"Job {salt}-{i}. Write about {TOPICS[i % len(TOPICS)]}."), batch)
    left = set(range(BATCH))

    def step() -> list:
        deltas = engine.step()
        for d in deltas:
            if d.request_id.startswith("b") and d.finish_reason is not None:
                left.discard(int(d.request_id[1:]))
        return deltas

    for _ in range(3):  # the batch is running
        step()
    firsts, answers = [], []
    user = SamplingParams(max_tokens=TURN_TOKENS, temperature=0.0, ignore_eos=True)
    for turn in range(TURNS):
        asked = time.perf_counter()
        engine.add_request(f"u{turn}", chat(f"Question {salt}-{turn}: name a {TOPICS[turn]} fact."), user)
        first = None
        while True:
            mine = [d for d in step() if d.request_id == f"u{turn}"]
            if mine and first is None:
                first = time.perf_counter() - asked
            if any(d.finish_reason is not None for d in mine):
                break
        firsts.append(first)
        answers.append(time.perf_counter() - asked)
    while left:
        step()
    engine.scheduler._preempt = preempt
    whole = time.perf_counter() - start
    return firsts[0], answers[0], statistics.mean(firsts), statistics.mean(answers), whole, preempted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engine = served_engine()
    cfg = engine.cfg
    print(f"SmolLM2-135M (quantize {cfg.quantize or 'auto'}), max_num_seqs {cfg.max_num_seqs}, "
          f"max_batched_tokens {cfg.max_batched_tokens}; batch {BATCH} x {BATCH_TOKENS} tokens, "
          f"user {TURNS} x {TURN_TOKENS} tokens")  # fmt: skip
    one_round(engine, 2, -1)  # warm-up: the step shapes' first runs
    modes = {"batch at priority 2 (the hub's batch tier)": 2, "everything at priority 0 (FCFS)": 0}
    results: dict[str, list[tuple[float, ...]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode, priority in modes.items() if r % 2 == 0 else reversed(modes.items()):
            results[mode].append(one_round(engine, priority, r))
    print(f"| mode | user's first request: first token / answer | user's {TURNS} requests (mean): first token / "
          f"answer | batch: all {BATCH} | preemptions |")  # fmt: skip
    print("|---|---|---|---|---|")
    for mode, runs in results.items():
        first, answer, mean_first, mean_answer, whole, preemptions = (
            statistics.median(run[i] for run in runs) for i in range(6)
        )
        print(f"| {mode} | {first:.2f} s / {answer:.2f} s | {mean_first:.2f} s / {mean_answer:.2f} s | {whole:.1f} s "
              f"| {preemptions:g} |")  # fmt: skip
    print(f"(medians of {args.rounds} alternating rounds)")
    print(f"reproduce: .venv/bin/python benchmarks/bench_priority.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
