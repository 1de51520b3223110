"""Where a batch-1 decode step's time goes, on the torch path and on the fused CPU path (a script, not a test).

For each packaged model as ``make run`` serves it (``--quantize auto``), greedy batch-1 decode through
``LLMEngine``, the torch path (``fused_decode=False``) and the fused C++ step alternating, rounds of
``--tokens`` steps. Each step is split by timers around its parts: scheduling and the step's tensors
(``prepare``), the forward pass, the output head (``compute_logits``), sampling, and output processing (the
detokenizer); "other" is the rest of ``LLMEngine.step``. A torch.profiler pass over the same steps counts the
ATen ops per step and the time inside the quantized matmul kernels. Medians over the rounds.

    .venv/bin/python benchmarks/bench_decode_step.py [--rounds 3] [--tokens 64] [--models gemma-3-270m ...]

``--paths torch`` runs the torch path alone, also in a checkout from before the fused path (a true "before").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import DEFAULT_MODELS, EngineConfig  # noqa: E402
from inference.engine import llm_engine  # noqa: E402
from inference.engine.output import OutputProcessor  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from inference.weights.quantize import QuantizedLinear  # noqa: E402

PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
PARTS = ("prepare", "forward", "head", "sample", "output")
MATMULS = ("aten::_weight_int4pack_mm_for_cpu", "aten::_weight_int8pack_mm")


class Timers:
    """Wraps callables so that their time adds up per part (only while ``on``)."""

    def __init__(self):
        self.spent: dict[str, float] = defaultdict(float)
        self.on = False

    def wrap(self, part: str, fn):
        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - start

        return timed


def _engine(model, tokenizer, fused: bool) -> llm_engine.LLMEngine:
    # (a checkout from before the fused path has no such setting: --paths torch runs there, for a "before")
    option = {"fused_decode": fused} if "fused_decode" in EngineConfig.__dataclass_fields__ else {}
    config = EngineConfig(kv_cache_tokens=2048, **option)
    return llm_engine.LLMEngine(model, tokenizer, lambda t, p: IncrementalDetokenizer(t, p), config)


def measure(model, tokenizer, fused: bool, tokens: int, profile: bool) -> dict[str, float]:
    """ms per decode step of each part (and ``ops``, ``matmuls`` from the profiler when ``profile``)."""
    if not fused:  # the torch path as before the fused one: a row alone multiplied as two (see fused_decoder.py)
        for module in model.modules():
            if isinstance(module, QuantizedLinear):
                module.one_row = None  # unchecked: two rows, as the torch path did
    engine = _engine(model, tokenizer, fused)
    assert (getattr(engine.runner, "fused", None) is not None) == fused, "the fused path is not available here"
    timers = Timers()
    runner = engine.runner
    runner.prepare = timers.wrap("prepare", runner.prepare)
    if fused:
        runner._forward_fused = timers.wrap("forward", runner._forward_fused)
    else:
        model.forward = timers.wrap("forward", type(model).forward.__get__(model))
    model.compute_logits = timers.wrap("head", type(model).compute_logits.__get__(model))
    sample, on_token = llm_engine.sample, OutputProcessor.on_token
    llm_engine.sample = timers.wrap("sample", sample)
    OutputProcessor.on_token = timers.wrap("output", on_token)
    try:
        prompt = tokenizer.encode(PROMPT, add_special_tokens=True)
        engine.add_request("r", prompt, SamplingParams(max_tokens=tokens + 1, temperature=0.0, ignore_eos=True))
        engine.step()  # the prefill
        timers.on = True
        steps, start = 0, time.perf_counter()
        profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) if profile else None
        if profiler is not None:
            profiler.__enter__()
        while engine.has_work:
            engine.step()
            steps += 1
        total = time.perf_counter() - start
        if profiler is not None:
            profiler.__exit__(None, None, None)
    finally:
        llm_engine.sample, OutputProcessor.on_token = sample, on_token
        for name in ("forward", "compute_logits"):
            model.__dict__.pop(name, None)
    result = {part: timers.spent[part] / steps * 1e3 for part in PARTS}
    result["total"] = total / steps * 1e3
    result["other"] = result["total"] - sum(result[p] for p in PARTS)
    if profiler is not None:
        events = profiler.key_averages()
        result["ops"] = sum(e.count for e in events if e.key.startswith("aten::")) / steps
        result["matmuls"] = sum(e.self_cpu_time_total for e in events if e.key in MATMULS) / steps / 1e3
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--paths", nargs="+", default=["torch", "fused"], choices=["torch", "fused"])
    args = parser.parse_args()
    paths = [p == "fused" for p in args.paths]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for model_id in args.models:
        spec = next(s for s in DEFAULT_MODELS if s.id == model_id)
        model, tokenizer, _ = build_model(spec)
        runs: dict[bool, list[dict[str, float]]] = {fused: [] for fused in paths}
        profiles: dict[bool, dict[str, float]] = {}
        for fused in paths:  # warm-up: first calls, allocations
            measure(model, tokenizer, fused, 8, False)
        for _ in range(args.rounds):
            for fused in paths:
                runs[fused].append(measure(model, tokenizer, fused, args.tokens, False))
        for fused in paths:
            profiles[fused] = measure(model, tokenizer, fused, min(args.tokens, 16), True)
        print(f"\n{model_id} (quantize {spec.quantize_mode()}), batch-1 greedy decode, ms per step, "
              f"median of {args.rounds} rounds of {args.tokens} steps")  # fmt: skip
        print(f"  {'path':7s} {'total':>7s} {'tok/s':>7s} " + " ".join(f"{p:>8s}" for p in (*PARTS, "other"))
              + f" {'ATen ops':>9s} {'in matmuls':>11s}")  # fmt: skip
        for fused in paths:
            med = {k: statistics.median(r[k] for r in runs[fused]) for k in (*PARTS, "other", "total")}
            print(f"  {'fused' if fused else 'torch':7s} {med['total']:7.2f} {1e3 / med['total']:7.1f} "
                  + " ".join(f"{med[p]:8.2f}" for p in (*PARTS, "other"))
                  + f" {profiles[fused]['ops']:9.0f} {profiles[fused]['matmuls']:8.2f} ms")  # fmt: skip
    print("\ncommand: .venv/bin/python benchmarks/bench_decode_step.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
