"""Offline throughput in the shape of the published ones (vLLM's / SGLang's ``bench_offline_throughput``): N
prompts submitted at once to the engine (no HTTP), each with its own input and output length, run to the end;
total output tok/s (and total tok/s, requests/s).

The lengths are ShareGPT-like, drawn from a fixed seed (the dataset itself is not shipped): input and output
lengths log-normal around ShareGPT V3's means once tokenized by Llama 3's tokenizer (~230 and ~200 tokens, long
tails), cut to [4, 1024] (seed 0, 1,000 prompts: means 216 and 181). The prompts' token ids are random (a
random-weight model of a real shape: weights and ids cost nothing to ship and run as fast as real ones); every
request generates exactly its output length (``ignore_eos``), so the work is the same in every run and on every
engine.

    python3 benchmarks/bench_offline.py --shape llama-8b --dtype bfloat16 --prompts 1000      # on a GPU
    .venv/bin/python benchmarks/bench_offline.py --device cpu --shape tiny --dtype float32 --prompts 16 --scale 0.1
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import SHAPES, _Detokenizer, _Tokenizer, random_model, sync  # noqa: E402
from bench_kernels import commit  # noqa: E402

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402

INPUT_MEAN, OUTPUT_MEAN, SIGMA = 230.0, 200.0, 1.0  # log-normal: mean = exp(mu + sigma^2 / 2)
LENGTHS = (4, 1024)


def lengths(n: int, seed: int, scale: float) -> list[tuple[int, int]]:
    """(input, output) token counts of ``n`` requests, the same for the same seed and scale."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for mean in (INPUT_MEAN, OUTPUT_MEAN):
        mu = math.log(mean * scale) - SIGMA**2 / 2
        drawn = torch.randn(n, generator=gen, dtype=torch.float64).mul(SIGMA).add(mu).exp()
        out.append([min(max(round(float(v)), LENGTHS[0]), LENGTHS[1]) for v in drawn])
    return list(zip(*out, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="llama-8b", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="lengths' means times this (CPU smoke runs)")
    parser.add_argument("--max-num-seqs", type=int, default=256)
    parser.add_argument("--max-batched-tokens", type=int, default=8192)
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    model = random_model(args.shape, dtype, args.device)
    config = EngineConfig(
        device=args.device, dtype=args.dtype, max_num_seqs=args.max_num_seqs,
        max_batched_tokens=args.max_batched_tokens, max_model_len=2 * LENGTHS[1], enable_prefix_caching=False,
    )  # fmt: skip
    engine = LLMEngine(model, _Tokenizer(), _Detokenizer, config)
    work = lengths(args.prompts, args.seed, args.scale)
    gen = torch.Generator().manual_seed(args.seed + 1)
    vocab = model.config.vocab_size
    requests = [(torch.randint(3, vocab, (n_in,), generator=gen).tolist(), n_out) for n_in, n_out in work]

    # warm-up: a few requests through every path (prefill chunks, decode, sampling) before the clock starts
    for i, (ids, _) in enumerate(requests[:4]):
        engine.add_request(f"warm-{i}", ids[:32], SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
    while engine.has_work:
        engine.step()

    for i, (ids, n_out) in enumerate(requests):
        engine.add_request(str(i), ids, SamplingParams(max_tokens=n_out, temperature=0.0, ignore_eos=True))
    sync(args.device)
    start, produced = time.perf_counter(), 0
    while engine.has_work:
        produced += sum(len(d.token_ids) for d in engine.step())
    sync(args.device)
    elapsed = time.perf_counter() - start

    n_in, n_out = sum(w[0] for w in work), sum(w[1] for w in work)
    assert produced == n_out, f"generated {produced} tokens, expected {n_out}"
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"{device}, {args.shape} {args.dtype}, commit {commit()}, {time.strftime('%Y-%m-%d')}")
    print(f"{args.prompts} prompts (seed {args.seed}): {n_in} input tokens (mean {n_in / args.prompts:.0f}), "
          f"{n_out} output tokens (mean {n_out / args.prompts:.0f}); max_num_seqs {args.max_num_seqs}, "
          f"max_batched_tokens {args.max_batched_tokens}")  # fmt: skip
    print(f"elapsed {elapsed:.1f} s: output {n_out / elapsed:,.0f} tok/s, total {(n_in + n_out) / elapsed:,.0f} tok/s, "
          f"{args.prompts / elapsed:.2f} requests/s")  # fmt: skip
    print("command: python3 benchmarks/bench_offline.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
