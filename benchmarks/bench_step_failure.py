"""What a failing request costs the others (``inference/engine/quarantine.py``), on the packaged chat model as
``make run`` serves it (SmolLM2-135M, the default quantization), through the engine.

Eight requests decode 64 greedy tokens each. In the poisoned runs a ninth request joins after 16 steps whose prompt
makes the model's forward pass raise (a forward pre-hook, as a bug in a model's code would): that step fails, its
requests run again one per step, and only the ninth fails. Clean and poisoned runs alternate; medians. The eight
answers are checked to be the clean runs' own.

    .venv/bin/python benchmarks/bench_step_failure.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import DEFAULT_MODELS, EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.engine.output import RequestFailed  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402

PROMPTS = [
    "The history of the bicycle begins",
    "A recipe for bread needs",
    "The three largest cities of Germany are",
    "def quicksort(items):",
    "Dear customer, thank you for",
    "The weather tomorrow will be",
    "In 1969 the first people",
    "The rules of chess say that",
]
JOIN_AFTER_STEPS = 16


def run(engine: LLMEngine, prompts: list[list[int]], poison: list[int] | None) -> tuple[float, dict, int, int]:
    """(seconds, answers, steps, failed requests) of the eight requests, the poisoned one joining mid-flight."""
    params = SamplingParams(max_tokens=64, temperature=0.0, ignore_eos=True)
    start = time.perf_counter()
    for i, ids in enumerate(prompts):
        engine.add_request(f"r{i}", ids, params)
    answers: dict[str, list[int]] = {}
    steps = failed = 0
    while engine.has_work:
        if steps == JOIN_AFTER_STEPS and poison is not None:
            engine.add_request("poison", poison, params)
        for out in engine.step():
            if isinstance(out, RequestFailed):
                failed += 1
            else:
                answers.setdefault(out.request_id, []).extend(out.token_ids)
        steps += 1
    return time.perf_counter() - start, answers, steps, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = next(s for s in DEFAULT_MODELS if s.id == "smollm2-135m-instruct")
    model, tokenizer, _ = build_model(spec)
    cfg = EngineConfig(kv_cache_tokens=8192, max_num_seqs=16)
    engine = LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), cfg)
    prompts = [tokenizer.encode(text, add_special_tokens=True) for text in PROMPTS]
    second = {ids[1] for ids in prompts}
    marker = next(i for i in range(100, 1000) if i not in second)
    poison = [prompts[0][0], marker, *prompts[0][1:]]

    def hook(module, inputs):
        ids, positions = inputs[0], inputs[1]
        if bool(((ids == marker) & (positions == 1)).any()):
            raise RuntimeError("the poisoned prompt")

    model.register_forward_pre_hook(hook)
    logging.getLogger("inference.engine").setLevel(logging.CRITICAL)  # each failed step logs its traceback
    run(engine, prompts, None)  # warm-up
    clean, poisoned = [], []
    reference, same, detail = None, True, None
    for _ in range(args.rounds):
        seconds, answers, steps, _ = run(engine, prompts, None)
        clean.append(seconds)
        reference = reference or answers
        same &= answers == reference
        seconds, answers, poisoned_steps, failed = run(engine, prompts, poison)
        poisoned.append(seconds)
        same &= answers == reference
        detail = (steps, poisoned_steps, failed, engine.failed_steps)
    steps, poisoned_steps, failed, failed_steps = detail
    a, b = statistics.median(clean), statistics.median(poisoned)
    print(f"SmolLM2-135M as served, 8 requests x 64 tokens, medians of {args.rounds} rounds, alternating")
    print(f"  clean:    {a:.2f} s in {steps} steps")
    print(f"  poisoned: {b:.2f} s in {poisoned_steps} steps ({b - a:+.2f} s, {(b / a - 1) * 100:+.0f}%); "
          f"{failed} request failed; {failed_steps} steps failed in all runs")  # fmt: skip
    print(f"  the eight answers equal the clean runs': {'yes' if same else 'NO'}")
    print(f"reproduce: .venv/bin/python benchmarks/bench_step_failure.py --rounds {args.rounds}")


if __name__ == "__main__":
    main()
