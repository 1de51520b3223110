"""The engine alone (no HTTP) on a random-weight model of a real architecture's shape, on any device.

Prefill tok/s on a 512-token prompt, decode tok/s at batch 1, and total tok/s with N concurrent
sequences, for a Llama-shaped model (default: Llama 3.2 1B's shape). Random weights cost nothing to
ship and give the same speed as trained ones; nothing here needs a model hub.

    .venv/bin/python benchmarks/bench_engine.py --device cpu --shape smollm2 --dtype float32
    python3 benchmarks/bench_engine.py --device cuda --shape llama-1b --dtype bfloat16 --concurrency 1 8 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.models.registry import build_model  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402

# HF config.json fields of a few Llama-family shapes
SHAPES = {
    "smollm2": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, tie_word_embeddings=True),
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "llama-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=False),
}  # fmt: skip


class _Tokenizer:
    stop_token_ids: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return ""


class _Detokenizer:
    def __init__(self, tokenizer, prompt_ids):
        pass

    def add(self, token_id: int) -> str:
        return ""

    def flush(self) -> str:
        return ""


def random_model(shape: str, dtype: torch.dtype, device: str) -> torch.nn.Module:
    hf = {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
          "rope_theta": 500000.0, **SHAPES[shape]}  # fmt: skip
    with torch.device("meta"):
        model = build_model(hf)
    model.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    return model.eval().requires_grad_(False)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(engine: LLMEngine, prompts: list[list[int]], max_tokens: int, device: str) -> tuple[float, float, int]:
    """(seconds to the first step's end, total seconds, tokens generated) for prompts submitted together."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    for i, p in enumerate(prompts):
        engine.add_request(f"r{time.perf_counter_ns()}-{i}", p, params)
    sync(device)
    start = time.perf_counter()
    first = None
    tokens = 0
    while engine.has_work:
        tokens += sum(len(d.token_ids) for d in engine.step())
        sync(device)
        first = first or time.perf_counter() - start
    return first, time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="llama-1b", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--decode-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = random_model(args.shape, getattr(torch, args.dtype), args.device)
    vocab = model.config.vocab_size
    cfg = EngineConfig(device=args.device, dtype=args.dtype, max_num_seqs=max(max(args.concurrency), 1),
                       kv_cache_tokens=max(args.concurrency) * 1024 + 1024, max_batched_tokens=2048)  # fmt: skip
    engine = LLMEngine(model, _Tokenizer(), _Detokenizer, cfg)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, vocab, (512,), generator=gen).tolist()
    run(engine, [prompt[:16]], 8, args.device)  # warm-up
    prefill = statistics.median(512 / run(engine, [prompt], 1, args.device)[0] for _ in range(args.rounds))
    print(f"{args.shape} {args.dtype} on {args.device}: prefill {prefill:.0f} tok/s (512-token prompt)")
    for n in args.concurrency:
        rates = []
        for _ in range(args.rounds):
            prompts = [torch.randint(0, vocab, (16,), generator=gen).tolist() for _ in range(n)]
            first, total, tokens = run(engine, prompts, args.decode_tokens, args.device)
            rates.append((tokens - n) / (total - first))  # decode steps only: the prefill step excluded
        print(f"{args.shape} {args.dtype} on {args.device}: decode {statistics.median(rates):.1f} tok/s total "
              f"with {n} concurrent sequence(s)")  # fmt: skip
    print(f"reproduce: python benchmarks/bench_engine.py --device {args.device} --shape {args.shape} "
          f"--dtype {args.dtype} --concurrency {' '.join(map(str, args.concurrency))}")  # fmt: skip


if __name__ == "__main__":
    main()
