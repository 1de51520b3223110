"""Tensor parallelism on the CPU (gloo): a model split over 2 processes (``inference.parallel.tensor_parallel``:
heads, MLP columns and rows, vocab-parallel embedding and head) gives the logits of the whole model on one
process within 1e-4 (fp32), and the same greedy next tokens, for Llama, Qwen2 (q/k/v biases), Qwen3 (q/k norms)
and Gemma 3 (tied embeddings, softcapping) tiny checkpoints. Each rank is its own process, as in serving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inference.loader.safetensors import load_model
from inference.parallel.tensor_parallel import shard
from tests.support import checkpoints as rc
from tests.support.processes import free_port

BUILDERS = {
    "llama": rc.llama_checkpoint,
    "qwen2": rc.qwen2_checkpoint,
    "qwen3": rc.qwen3_checkpoint,
    "gemma3": rc.gemma3_checkpoint,
}
PROMPTS = [[1, 5, 9, 33, 2, 7, 100, 12, 4], [3, 64, 65, 8], [17] * 13]


def _rank(rank: int, size: int, port: int, path: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    try:
        torch.set_num_threads(1)
        model = shard(load_model(Path(path)).eval(), rank, size)
        logits = rc.prefill_logits(model, PROMPTS)
        if rank == 0:
            torch.save(logits, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_two_ranks_give_the_whole_models_logits(name, tmp_path):
    path = BUILDERS[name](tmp_path / name)
    whole = rc.prefill_logits(load_model(path).eval(), PROMPTS)
    out = tmp_path / "logits.pt"
    mp.spawn(_rank, args=(2, free_port(), str(path), str(out)), nprocs=2, join=True)
    split = torch.load(out)
    assert split.shape == whole.shape
    assert (split - whole).abs().max().item() < 1e-4
    assert torch.equal(split.argmax(-1), whole.argmax(-1))


def test_heads_that_do_not_divide_are_refused(tmp_path):
    model = load_model(rc.llama_checkpoint(tmp_path / "llama")).eval()  # 4 heads, 2 key-value heads
    with pytest.raises(ValueError, match="attention heads divisible by 3"):
        shard(model, 0, 3)
