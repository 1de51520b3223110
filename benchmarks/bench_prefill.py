"""Prefill on this CPU: the service's prompt tok/s with the prompt GEMMs in bf16 and in fp32
(``INFERENCE_PREFILL_DTYPE``; ``auto``, the default, picks bf16 only where the CPU multiplies bf16 natively:
``inference/weights/quantize.resolve_prefill``), and the GEMM itself in both dtypes, plain, in fixed row blocks and as
the service makes it.

For each packaged generative model as ``make run`` serves it (``--quantize auto``): the service started with each
prefill dtype in turn (alternating, one up at a time; the prepared weights of each are cached by a first start that
is not timed), a completion of 1 token for a fresh prompt (no prefix cached) of each length, medians over rounds.

    .venv/bin/python benchmarks/bench_prefill.py [--rounds 3] [--lengths 512 2048] [--models smollm2,gemma3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_quantize import _best_and_median  # noqa: E402  (a warm-up call, then the best and median of repeat)

from inference.layers.invariant_rows import FLOAT_ROW_BLOCK  # noqa: E402
from inference.weights.quantize import native_bf16, resolve_prefill  # noqa: E402
from inference.weights.row_blocks import float_linear, linear_in_blocks  # noqa: E402
from tests.support.processes import Process, free_port  # noqa: E402

WORDS = "the press spread across Europe printing books pamphlets and newspapers for readers in every city".split()
DTYPES = ("bfloat16", "float32")


def gemm_figures(rows: int = 512, k: int = 576, n: int = 1536, repeat: int = 20) -> dict[str, float]:
    """GFLOP/s of rows x k @ k x n (SmolLM2's gate/up shape) in each way, medians of ``repeat``."""
    x, w = torch.randn(rows, k), torch.randn(n, k)
    ways = {
        "fp32, one call": lambda: F.linear(x, w),
        f"fp32, blocks of {FLOAT_ROW_BLOCK}": lambda: linear_in_blocks(x, w, FLOAT_ROW_BLOCK),
        "fp32, as the service does (float_linear)": lambda: float_linear(x, w),
        "bf16, one call": lambda: F.linear(x.bfloat16(), w.bfloat16()),
    }
    return {name: 2 * rows * k * n / _best_and_median(run, repeat)[1] / 1e9 for name, run in ways.items()}


def start(model: str, prefill: str) -> tuple[Process, str]:
    port = free_port()
    env = {**os.environ, "INFERENCE_PREFILL_DTYPE": prefill}
    cmd = [sys.executable, "-m", "inference", "serve", "--port", str(port), "--quantize", "auto",
           "--model", f"m=packaged:{model}:completion"]  # fmt: skip
    process = Process(f"bench-prefill-{model}-{prefill}", cmd, env)
    url = f"http://127.0.0.1:{port}"
    process.wait_healthy(f"{url}/health", timeout=900)
    return process, url


def prefill_seconds(url: str, tokens: int, tag: str) -> tuple[float, int]:
    """Seconds to a 1-token completion of a fresh ~``tokens``-token prompt, and its prompt tokens."""
    prompt = f"{tag} " + " ".join(f"{WORDS[i % len(WORDS)]}{i % 13}" for i in range(tokens // 2))
    begin = time.perf_counter()
    answer = httpx.post(f"{url}/v1/completions", json={"model": "m", "prompt": prompt, "max_tokens": 1},
                        timeout=900).json()  # fmt: skip
    return time.perf_counter() - begin, answer["usage"]["prompt_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--models", default="smollm2,gemma3")
    args = parser.parse_args()
    print(f"CPU: native bf16 {native_bf16()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} threads; auto picks {resolve_prefill('auto')}")  # fmt: skip
    for name, value in gemm_figures().items():
        print(f"GEMM 512 x 576 @ 576 x 1536, {name}: {value:.1f} GFLOP/s")
    rows = []
    for model in args.models.split(","):
        for prefill in DTYPES:  # the prepared weights of each, cached: later starts map them
            process, _ = start(model, prefill)
            process.stop(timeout=60)
        speeds: dict[tuple[str, int], list[float]] = {(p, n): [] for p in DTYPES for n in args.lengths}
        counted: dict[int, int] = {}
        for round_ in range(args.rounds):
            for prefill in DTYPES:
                process, url = start(model, prefill)
                try:
                    prefill_seconds(url, 64, "warm")  # the first call's one-time costs
                    for n in args.lengths:
                        seconds, counted[n] = prefill_seconds(url, n, f"r{round_}-{prefill}-{n}")
                        speeds[(prefill, n)].append(counted[n] / seconds)
                finally:
                    process.stop(timeout=60)
        for n in args.lengths:
            bf16, fp32 = (statistics.median(speeds[(p, n)]) for p in DTYPES)
            rows.append((model, counted[n], bf16, fp32))
    print("\n| model | prompt tokens | prefill tok/s, bf16 | prefill tok/s, fp32 | fp32 / bf16 |")
    print("|---|---|---|---|---|")
    for model, n, bf16, fp32 in rows:
        print(f"| {model} | {n} | {bf16:.1f} | {fp32:.1f} | {fp32 / bf16:.2f}x |")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_prefill.py --rounds {args.rounds} --lengths "
          f"{' '.join(map(str, args.lengths))} --models {args.models}")  # fmt: skip


if __name__ == "__main__":
    main()
