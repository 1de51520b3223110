"""Mixture of experts: a small random MoE's decode step against its dense equivalent (the same active parameters),
through the engine, alternating, medians; on a GPU also the fused MoE kernel against its torch reference (one
matmul per expert) and ``torch.compile`` of it, at Mixtral-8x7B's and Qwen3-30B-A3B's expert shapes, with the
share of the GPU's bandwidth the active experts' bytes take.

    .venv/bin/python benchmarks/bench_moe.py --device cpu --rounds 5                   # weights as served: auto
    .venv/bin/python benchmarks/bench_moe.py --device cpu --rounds 5 --quantize none   # float32
    python3 benchmarks/bench_moe.py                      # on a GPU: the engine pair and the kernel
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import _Detokenizer, _Tokenizer, peak_bandwidth, random_model, run, sync  # noqa: E402

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.layers.moe import route  # noqa: E402

PAIR = ("moe-small", "moe-small-dense")
# (name, experts, top k, hidden, intermediate)
KERNEL_SHAPES = [("mixtral-8x7b", 8, 2, 4096, 14336), ("qwen3-30b-a3b", 128, 8, 2048, 768)]


def decode_step_ms(engine: LLMEngine, batch: int, tokens: int, device: str, gen: torch.Generator) -> float:
    vocab = engine.model.config.vocab_size
    prompts = [torch.randint(0, vocab, (16,), generator=gen).tolist() for _ in range(batch)]
    first, total, generated = run(engine, prompts, tokens, device)
    steps = generated / batch - 1  # the prefill step made the first token
    return (total - first) / steps * 1000


def engine_pair(device: str, dtype: str, batches: list[int], tokens: int, rounds: int, quantize: str) -> None:
    engines = {}
    for shape in PAIR:
        model = random_model(shape, getattr(torch, dtype), device)
        active = sum(p.numel() for p in model.parameters())
        if quantize != "none":  # as the service prepares CPU weights: the experts' stacks included
            from inference.weights.quantize import quantize as quantize_model

            quantize_model(model, quantize)
        cfg = EngineConfig(device=device, dtype=dtype, max_num_seqs=max(batches), kv_cache_tokens=8192,
                           max_batched_tokens=2048, quantize=quantize)  # fmt: skip
        engines[shape] = LLMEngine(model, _Tokenizer(), _Detokenizer, cfg)
        print(f"{shape}: {active / 1e6:.1f}M parameters, weights {quantize}")
    gen = torch.Generator().manual_seed(0)
    for engine in engines.values():
        decode_step_ms(engine, 1, 4, device, gen)  # warm-up
    print(f"{'batch':>6}{'MoE ms/step':>13}{'dense ms/step':>15}{'MoE / dense':>13}")
    for batch in batches:
        times: dict[str, list[float]] = {shape: [] for shape in PAIR}
        for _ in range(rounds):  # alternating: a core another process takes costs both alike
            for shape, engine in engines.items():
                times[shape].append(decode_step_ms(engine, batch, tokens, device, gen))
        moe, dense = (statistics.median(times[s]) for s in PAIR)
        print(f"{batch:>6}{moe:>13.2f}{dense:>15.2f}{moe / dense:>12.2f}x", flush=True)


def kernel_rates(rounds: int) -> None:
    from kernels import reference
    from kernels.fused_moe import fused_moe

    bandwidth, gpu = peak_bandwidth("cuda")
    compiled = torch.compile(reference.fused_moe)
    print(f"fused MoE on {gpu} (bf16; us per call, medians of {rounds}; bandwidth share of the experts read)")
    print(f"{'shape':>16}{'tokens':>8}{'kernel':>10}{'torch':>10}{'compile':>10}{'of peak':>9}")
    for name, experts, k, hidden, inter in KERNEL_SHAPES:
        gen = torch.Generator(device="cuda").manual_seed(0)
        w13 = torch.randn(experts, 2 * inter, hidden, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
        w2 = torch.randn(experts, hidden, inter, device="cuda", dtype=torch.bfloat16, generator=gen) * 0.02
        for tokens in (1, 16, 256, 2048):
            x = torch.randn(tokens, hidden, device="cuda", dtype=torch.bfloat16, generator=gen)
            weights, ids = route(torch.randn(tokens, experts, device="cuda", generator=gen), k, True)
            args = (x, w13, w2, weights, ids)
            row = []
            for fn in (fused_moe, reference.fused_moe, compiled):
                fn(*args)  # warm-up (and compile)
                samples = []
                for _ in range(rounds):
                    sync("cuda")
                    start = time.perf_counter()
                    fn(*args)
                    sync("cuda")
                    samples.append(time.perf_counter() - start)
                row.append(statistics.median(samples))
            touched = ids.unique().numel()
            bytes_read = touched * (w13[0].numel() + w2[0].numel()) * 2
            share = bytes_read / row[0] / (bandwidth * 1e9)
            print(f"{name:>16}{tokens:>8}" + "".join(f"{t * 1e6:>10.0f}" for t in row) + f"{share:>9.0%}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="default: float32 on the CPU, bfloat16 on a GPU")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quantize", default=None, choices=["none", "int8", "int4", "int4x2", "auto"],
                        help="CPU weights (default auto, as the service serves them; none on a GPU)")  # fmt: skip
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    engine_pair(
        args.device, dtype, args.batch, args.decode_tokens, args.rounds, args.quantize or ("none" if gpu else "auto")
    )
    if args.device.startswith("cuda"):
        kernel_rates(args.rounds)
    print(f"reproduce: python3 benchmarks/bench_moe.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
