"""fp32 prefill products (where bf16 is emulated): padded to at most 16 rows in one call, against blocks of 128 rows.

Both keep a prompt row's bits independent of its batch (``inference/weights/row_blocks.float_linear``); they differ
in what few rows cost. For each packaged generative model as ``make run`` serves it (``quantize = "auto"``, prefill
in fp32 on this CPU), through the engine, each way in turn, alternating, medians:

- time to first token of a T-token prompt (prefix caching off, the engine otherwise idle);
- the step that prefills a new T-token prompt beside 7 sequences decoding: what their next token waits for.

    .venv/bin/python benchmarks/bench_float_rows.py [--rounds 5] [--rows 8,16,40,128,512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_row_blocks import ttft as ms_to_first_token  # noqa: E402  (the engine otherwise idle)

from inference.config import DEFAULT_MODELS, EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from inference.server.registry import build_model  # noqa: E402
from inference.tokenizer.detokenizer import IncrementalDetokenizer  # noqa: E402
from inference.weights import row_blocks  # noqa: E402
from inference.weights.quantize import resolve_prefill  # noqa: E402

CHECKED = row_blocks._small_counts  # the counts a product is padded to; None: blocks
WAYS = {"padded, one call": CHECKED, "blocks of 128": lambda weight: None}


def ms_of_a_joining_step(engine: LLMEngine, ids: list[int], decoding: list[list[int]]) -> float:
    """The step in which ``ids`` is prefilled beside ``decoding``'s sequences, each already generating."""
    params = SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True)
    for i, prompt in enumerate(decoding):
        engine.add_request(f"d{i}-{time.perf_counter()}", prompt, params)
    for _ in range(2):  # their prefill, then a step of decoding alone
        engine.step()
    engine.add_request(f"j{time.perf_counter()}", ids, params)
    start = time.perf_counter()
    engine.step()
    elapsed = (time.perf_counter() - start) * 1000
    while engine.has_work:
        engine.step()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", default="8,16,40,128,512")
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    prefill = resolve_prefill("auto")
    print(f"prefill dtype here: {prefill}, {torch.get_num_threads()} threads")
    if prefill != "float32":
        print("this CPU multiplies bf16 natively: the service's prefill is not fp32 here (INFERENCE_PREFILL_DTYPE)")
    for spec in (s for s in DEFAULT_MODELS if s.kind in ("chat", "completion")):
        model, tokenizer, _ = build_model(spec)
        cfg = EngineConfig(kv_cache_tokens=4096, max_num_seqs=16, enable_prefix_caching=False)
        engine = LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), cfg)
        gen = torch.Generator().manual_seed(1)
        decoding = [torch.randint(100, 20000, (24,), generator=gen).tolist() for _ in range(7)]
        print(f"\n{spec.id}: ms, median of {args.rounds}")
        print(f"{'prompt':>6} " + " ".join(f"{'TTFT, ' + w:>30}" for w in WAYS)
              + " " + " ".join(f"{'joining step, ' + w:>38}" for w in WAYS))  # fmt: skip
        for t in rows:
            ids = torch.randint(100, 20000, (t,), generator=gen).tolist()
            first: dict[str, list[float]] = {w: [] for w in WAYS}
            joining: dict[str, list[float]] = {w: [] for w in WAYS}
            for _ in range(args.rounds + 1):  # the first round warms up, not counted
                for way, holds in WAYS.items():
                    row_blocks._small_counts = holds
                    first[way].append(ms_to_first_token(engine, ids))
                    joining[way].append(ms_of_a_joining_step(engine, ids, decoding))
            row_blocks._small_counts = CHECKED
            cells = [statistics.median(v[1:]) for v in (*first.values(), *joining.values())]
            print(
                f"{t:6d} " + " ".join(f"{c:30.1f}" for c in cells[:2]) + " " + " ".join(f"{c:38.1f}" for c in cells[2:])
            )
    print("\nreproduce: .venv/bin/python benchmarks/bench_float_rows.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
