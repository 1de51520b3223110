"""The prefill GEMMs in fixed row blocks (inference/weights/row_blocks.py) against one GEMM per call, on this CPU.

For each packaged generative model as ``make run`` serves it (``quantize = "auto"``: prefill on bf16 copies of the
weights), every quantized layer's prefill product once (the head is on the kernel, not timed) at a prompt of T rows:
one ``F.linear`` per layer ("plain", what ran before) and ``linear_in_blocks`` at several block sizes, alternating,
medians. Beside the times: whether a row's result depends on the row count (the last row of T rows against the same
row among two (one row alone is a GEMV), over every layer: the largest difference). Then what a prompt's first
token waits for: time to first token of a T-token prompt through the engine (prefix caching off), with the blocks
(``ROW_BLOCK``) and in one call per product, alternating, medians.

    .venv/bin/python benchmarks/bench_row_blocks.py [--rounds 5] [--rows 16,128,512,2048] [--blocks 64,128,256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import DEFAULT_MODELS, EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from inference.weights import row_blocks  # noqa: E402
from inference.weights.quantize import QuantizedLinear  # noqa: E402
from inference.weights.row_blocks import linear_in_blocks  # noqa: E402


def _cpu() -> str:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    return f"{name}, {'AMX' if ' amx_bf16' in flags else 'no AMX'}, {torch.get_num_threads()} threads"


def ttft(engine: LLMEngine, ids: list[int]) -> float:
    """Milliseconds from submitting a prompt to its first token (the engine otherwise idle)."""
    start = time.perf_counter()
    engine.add_request(f"r{start}", ids, SamplingParams(max_tokens=1, temperature=0.0, ignore_eos=True))
    while engine.has_work:
        engine.step()
    return (time.perf_counter() - start) * 1000


def engine_ttft(model, tokenizer, rows: list[int], rounds: int) -> None:
    cfg = EngineConfig(kv_cache_tokens=max(rows) + 512, max_num_seqs=4, enable_prefix_caching=False)
    engine = LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), cfg)
    gen = torch.Generator().manual_seed(1)
    blocks = row_blocks.ROW_BLOCK or 128
    print(f"{'prompt':>6} {'TTFT ms, blocks of ' + str(blocks):>24} {'one call':>10}")
    for t in rows:
        ids = torch.randint(100, 20000, (t,), generator=gen).tolist()
        times: dict[int, list[float]] = {blocks: [], 0: []}
        for _ in range(rounds + 1):  # the first round warms up, not counted
            for block in times:
                row_blocks.ROW_BLOCK = block
                times[block].append(ttft(engine, ids))
        print(f"{t:6d} {statistics.median(times[blocks][1:]):24.1f} {statistics.median(times[0][1:]):10.1f}")
    row_blocks.ROW_BLOCK = row_blocks._default_block()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", default="16,128,512,2048")
    parser.add_argument("--blocks", default="64,128,256")
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    ways = {"plain": F.linear, **{f"blocks of {b}": partial(linear_in_blocks, block=int(b)) for b in
                                  args.blocks.split(",")}}  # fmt: skip
    print(_cpu())
    for spec in (s for s in DEFAULT_MODELS if s.kind in ("chat", "completion")):
        model, tokenizer, _ = build_model(spec)
        weights = [m.prefill_weight for m in model.modules() if isinstance(m, QuantizedLinear) and not m.head]
        weights = [w for w in weights if w is not None]
        gen = torch.Generator().manual_seed(0)
        print(f"\n{spec.id}: {len(weights)} prefill GEMMs; ms for all of them once, median of {args.rounds}")
        print(f"{'rows':>6} " + " ".join(f"{name:>14}" for name in ways) + "   a row drifts (plain / blocks)")
        for t in rows:
            inputs = {w.shape[1]: torch.randn(t, w.shape[1], generator=gen).bfloat16() for w in weights}
            times: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds + 1):  # the first round warms up, not counted
                for name, fn in ways.items():
                    start = time.perf_counter()
                    for w in weights:
                        fn(inputs[w.shape[1]], w)
                    times[name].append((time.perf_counter() - start) * 1000)
            drift = {}
            for name, fn in (
                ("plain", F.linear),
                ("blocks", partial(linear_in_blocks, block=row_blocks.ROW_BLOCK or 128)),
            ):
                drift[name] = max((fn(inputs[w.shape[1]], w)[-1:].float() - fn(inputs[w.shape[1]][-2:], w)[-1:].float())
                                  .abs().max().item() for w in weights)  # fmt: skip
            cells = " ".join(f"{statistics.median(v[1:]):14.2f}" for v in times.values())
            print(f"{t:6d} {cells}   {drift['plain']:.3g} / {drift['blocks']:.3g}")
        engine_ttft(model, tokenizer, rows, args.rounds)
    print("\nreproduce: .venv/bin/python benchmarks/bench_row_blocks.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
