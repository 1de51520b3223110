"""Tensor parallelism on GPUs (issue 26): a random-weight Llama split over ``--size`` ranks (NCCL, one GPU each),
one engine scheduler on rank 0 driving them, against the same model on one GPU in the same run: greedy tokens
compared, decode tok/s at batch 1 and 8. Needs ``--size`` GPUs (``benchmarks/gpu/run_issue5.sh tp``).

    python benchmarks/bench_tp.py --size 2 [--layers 8 --hidden 4096]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.config import EngineConfig  # noqa: E402
from inference.engine.llm_engine import LLMEngine  # noqa: E402
from inference.engine.parallel_runner import TensorParallelRunner, follow  # noqa: E402
from inference.loader.safetensors import load_model  # noqa: E402
from inference.parallel.tensor_parallel import shard  # noqa: E402
from inference.sampling_params import SamplingParams  # noqa: E402
from tests.support.checkpoints import IdDetokenizer, IdTokenizer  # noqa: E402
from tests.support.models import greedy_answers, run_to_end  # noqa: E402

ENGINE = {"kv_cache_tokens": 32768, "block_size": 16, "dtype": "bfloat16", "device": "cuda"}
TOKENS = 128


def _checkpoint(path: Path, layers: int, hidden: int) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = hidden // 128
    config = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=hidden * 7 // 2,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=8)  # fmt: skip
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path)
    return path


def _run(engine: LLMEngine, batch: int) -> tuple[dict, float]:
    greedy = SamplingParams(max_tokens=TOKENS, temperature=0.0, ignore_eos=True, logprobs=0)
    for i in range(batch):
        engine.add_request(str(i), [1 + i, 2, 3, 4, 5, 6, 7, 8], greedy)
    torch.cuda.synchronize()
    start = time.perf_counter()
    answers = greedy_answers(run_to_end(engine))
    torch.cuda.synchronize()
    return answers, batch * TOKENS / (time.perf_counter() - start)


def _rank(rank: int, size: int, port: int, path: str, out: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    model = shard(load_model(Path(path), dtype=torch.bfloat16, device="cuda").eval(), rank, size)
    if rank:
        follow(model, EngineConfig(**ENGINE))
    else:
        engine = LLMEngine(model, IdTokenizer(), IdDetokenizer, EngineConfig(**ENGINE))
        engine.runner = TensorParallelRunner(engine.runner)
        results = {b: [_run(engine, b) for _ in range(3)] for b in (1, 8)}
        engine.runner.stop()
        torch.save(results, out)
    dist.barrier()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=4096)
    args = parser.parse_args()
    if torch.cuda.device_count() < args.size:
        sys.exit(f"needs {args.size} GPUs, found {torch.cuda.device_count()}")
    root = Path(tempfile.mkdtemp())
    path = _checkpoint(root / "llama", args.layers, args.hidden)
    one = LLMEngine(load_model(path, dtype=torch.bfloat16, device="cuda").eval(), IdTokenizer(), IdDetokenizer,
                    EngineConfig(**ENGINE))  # fmt: skip
    alone = {b: [_run(one, b) for _ in range(3)] for b in (1, 8)}
    del one
    torch.cuda.empty_cache()
    out = root / "tp.pt"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank, args=(args.size, port, str(path), str(out)), nprocs=args.size, join=True)
    split = torch.load(out)
    for batch in (1, 8):
        same = sum(a == b for a, b in zip(alone[batch][0][0].values(), split[batch][0][0].values(), strict=True))
        print(f"batch {batch}: one GPU {statistics.median(r[1] for r in alone[batch]):.0f} tok/s, TP={args.size} "
              f"{statistics.median(r[1] for r in split[batch]):.0f} tok/s (medians of 3); greedy answers identical: "
              f"{same}/{batch}")  # fmt: skip
    print(f"shape: {args.layers} layers, hidden {args.hidden}, bf16; {torch.cuda.get_device_name()}")
    print(f"reproduce: python benchmarks/bench_tp.py --size {args.size} --layers {args.layers} --hidden {args.hidden}")


if __name__ == "__main__":
    main()
