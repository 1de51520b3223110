"""Whether an answer depends on what else is in the batch, on a device: prompts decoded greedily alone, then all
together (prefill cut into chunks, half of them joining mid-flight), their tokens and logprobs compared bit for bit.

On the CPU the default configuration is batch-invariant by construction and tested (docs/architecture.md, "Batch
invariance"). On CUDA, where the Triton kernels pick tiles and splits by the batch's size, CUDA graphs pad it, and
cuBLAS picks its own algorithms, it is not yet established: this measures it, on the kernels and on the torch layers.

    python3 benchmarks/bench_invariance.py --device cuda --shape llama-1b --dtype bfloat16
    python3 benchmarks/bench_invariance.py --device cpu --shape tiny --dtype float32 --tokens 8   # checks the script
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import SHAPES, _Detokenizer, _Tokenizer, random_model  # noqa: E402
from bench_kernels import commit  # noqa: E402
from bench_quality import run  # noqa: E402

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402

Answer = tuple[list[int], list[float]]  # greedy tokens, their logprobs


def answers(engine: LLMEngine, prompts: list[list[int]], tokens: int, together: bool) -> dict[str, Answer]:
    params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, logprobs=0)
    out: dict[str, Answer] = {}
    if not together:
        for i, p in enumerate(prompts):
            engine.add_request(str(i), p, params)
            run(engine, out)
        return out
    half = len(prompts) // 2
    for i, p in enumerate(prompts[:half]):
        engine.add_request(str(i), p, params)
    run(engine, out, steps=5)  # the others join while these decode
    for i, p in enumerate(prompts[half:], half):
        engine.add_request(str(i), p, params)
    return run(engine, out)


def compare(alone: dict[str, Answer], together: dict[str, Answer]) -> tuple[int, int, list[int]]:
    """(prompts whose tokens match, whose tokens and logprobs match bit for bit, each prompt's first differing
    token: its length where none differs)."""
    same_tokens = same_all = 0
    first = []
    for key, (ids, lps) in alone.items():
        ids2, lps2 = together[key]
        same_tokens += ids == ids2
        same_all += ids == ids2 and lps == lps2
        first.append(next((j for j, (a, b) in enumerate(zip(ids, ids2, strict=True)) if a != b), len(ids)))
    return same_tokens, same_all, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="llama-1b", choices=sorted(SHAPES), help="a random-weight model")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--kernels", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=37, help="prefill tokens per step when together")
    args = parser.parse_args()
    model = random_model(args.shape, getattr(torch, args.dtype), args.device)
    gen = torch.Generator().manual_seed(2)
    vocab = model.config.vocab_size
    lengths = torch.randint(5, 200, (args.prompts,), generator=gen).tolist()
    prompts = [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]
    print(f"{args.shape}, {args.dtype}, on {args.device}"
          f"{' (' + torch.cuda.get_device_name() + ')' if args.device.startswith('cuda') else ''}, commit {commit()}, "
          f"{time.strftime('%Y-%m-%d')}; {args.prompts} prompts of 5-199 tokens, {args.tokens} greedy tokens each, "
          f"together in {args.chunk}-token prefill chunks, half joining after 5 steps")  # fmt: skip
    print(f"{'kernels':>8}{'CUDA graphs':>13}{'same tokens':>13}{'same logprobs too':>19}  first differing token")
    kv = args.prompts * (max(lengths) + args.tokens) + 1024
    for kernels in args.kernels:
        runs = []
        for together in (False, True):
            cfg = EngineConfig(device=args.device, dtype=args.dtype, kernels=kernels, max_num_seqs=args.prompts,
                               kv_cache_tokens=kv, max_batched_tokens=args.chunk if together else 2048)  # fmt: skip
            engine = LLMEngine(model, _Tokenizer(), _Detokenizer, cfg)
            runs.append(answers(engine, prompts, args.tokens, together))
            graphs = engine.runner.graphs is not None
            del engine
        same_tokens, same_all, first = compare(*runs)
        print(f"{kernels:>8}{graphs!s:>13}{same_tokens:>8} / {args.prompts:<3}{same_all:>12} / {args.prompts:<5} "
              f"{sorted(first)}", flush=True)  # fmt: skip
    print("\nreproduce: python3 benchmarks/bench_invariance.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
