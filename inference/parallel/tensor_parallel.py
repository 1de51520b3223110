"""Tensor parallelism (Megatron-LM's split) over ``torch.distributed``: each of ``size`` processes keeps a slice
of every layer and the processes sum or gather their partial results (gloo on the CPU, NCCL on CUDA).

``shard(model, rank, size)`` turns a loaded decoder into this rank's slice, in place:

- attention: the q/k/v rows of this rank's heads (``qkv_proj``, column parallel; its KV cache then holds only
  those heads), ``o_proj``'s columns of the same heads (row parallel: [T, hidden] partial sums, all-reduced, the
  bias added once after the sum);
- MLP: gate/up rows of this rank's part of the intermediate size, ``down_proj``'s columns (row parallel);
- the embedding: this rank's rows of the vocabulary (other ids look up zeros; summed over ranks); the head:
  this rank's rows, the logits all-gathered ([N, vocab] on every rank, so any rank can sample);
- norms, rotary, the residual stream and everything after the head (Gemma's softcapping) replicated.

Every rank must run the same forward passes in the same order (the collectives pair up). The heads and the
intermediate size must divide by ``size``; key-value heads too, or, fewer than the ranks, divide ``size`` (then
each rank keeps the one its q heads read).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from inference.layers.linear import MergedLinear


class RowParallelLinear(nn.Module):
    """x [T, in/size] (this rank's slice of the input features) -> [T, out], summed over the ranks."""

    def __init__(self, linear: nn.Linear, rank: int, size: int):
        super().__init__()
        cols = linear.in_features // size
        self.in_features, self.out_features = cols, linear.out_features
        self.weight = nn.Parameter(linear.weight.data[:, rank * cols : (rank + 1) * cols].clone(), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight)
        dist.all_reduce(out)
        return out if self.bias is None else out + self.bias


class VocabParallelEmbedding(nn.Module):
    """ids [T] -> [T, hidden]: this rank's rows of the vocabulary looked up, the rest zeros, summed over ranks."""

    def __init__(self, embedding: nn.Embedding, rank: int, size: int):
        super().__init__()
        vocab = embedding.num_embeddings
        per = -(-vocab // size)
        self.start, self.end = min(rank * per, vocab), min((rank + 1) * per, vocab)
        self.num_embeddings, self.vocab = self.end - self.start, vocab
        self.weight = nn.Parameter(embedding.weight.data[self.start : self.end].clone(), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = ids - self.start
        outside = (local < 0) | (local >= self.num_embeddings)
        out = F.embedding(local.clamp(0, max(self.num_embeddings - 1, 0)), self.weight)
        out = out.masked_fill(outside.unsqueeze(-1), 0)
        dist.all_reduce(out)
        return out


class VocabParallelHead(nn.Module):
    """hidden [N, hidden] -> logits [N, vocab]: this rank's rows of the head's weight, gathered from all ranks."""

    def __init__(self, weight: torch.Tensor, rank: int, size: int, bias: torch.Tensor | None = None):
        super().__init__()
        vocab = weight.shape[0]
        self.per, self.vocab, self.size = -(-vocab // size), vocab, size
        rows = weight.data[min(rank * self.per, vocab) : min((rank + 1) * self.per, vocab)]
        pad = self.per - rows.shape[0]  # the last rank's slice padded: all_gather wants equal shapes
        self.weight = nn.Parameter(F.pad(rows, (0, 0, 0, pad)).clone(), requires_grad=False)
        self.bias = None
        if bias is not None:
            part = bias.data[min(rank * self.per, vocab) : min((rank + 1) * self.per, vocab)]
            self.bias = nn.Parameter(F.pad(part, (0, pad)).clone(), requires_grad=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        local = F.linear(hidden, self.weight, self.bias).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local)
        return torch.cat(parts, dim=-1)[..., : self.vocab]


def _column(linear: MergedLinear, slices: dict[str, tuple[int, int]]) -> MergedLinear:
    """The rows ``slices`` names (shard -> (first row in the shard, rows)) of a merged projection."""
    out = MergedLinear(linear.in_features, {name: rows for name, (_, rows) in slices.items()}, linear.bias is not None)
    index, offset = [], 0
    for name, size in linear.shard_sizes.items():
        first, rows = slices[name]
        index.append(torch.arange(offset + first, offset + first + rows))
        offset += size
    index = torch.cat(index)
    with torch.no_grad():
        out.weight.copy_(linear.weight.data[index])
        if linear.bias is not None:
            out.bias.copy_(linear.bias.data[index])
    out.requires_grad_(False)
    return out


def _even(linear: MergedLinear, rank: int, size: int) -> dict[str, tuple[int, int]]:
    return {name: (rank * (n // size), n // size) for name, n in linear.shard_sizes.items()}


def _heads(module: nn.Module, rank: int, size: int) -> dict[str, tuple[int, int]]:
    """This rank's q heads (an equal share) and the key-value heads they read: an equal share too, or, with fewer
    key-value heads than ranks, the one its q heads share (replicated on the ranks that need it, as vLLM does)."""
    heads, kv_heads, dim = module.num_heads, module.num_kv_heads, module.head_dim
    _divisible("the attention heads", heads, size)
    if kv_heads % size and size % kv_heads:
        raise ValueError(f"tensor parallelism over {size} processes needs the key-value heads ({kv_heads}) to divide "
                         f"by {size} or {size} to divide by them")  # fmt: skip
    q_per_rank = heads // size
    kv_count = max(1, kv_heads // size)
    kv_first = (rank * q_per_rank) // (heads // kv_heads)
    q, kv = (rank * q_per_rank * dim, q_per_rank * dim), (kv_first * dim, kv_count * dim)
    return {"q": q, "k": kv, "v": kv}


def _divisible(what: str, value: int, size: int) -> None:
    if value % size:
        raise ValueError(f"tensor parallelism over {size} processes needs {what} divisible by {size}; it is {value}")


def shard(model: nn.Module, rank: int, size: int) -> nn.Module:
    """This rank's slice of ``model`` (see the module docstring), in place; ``size`` 1 leaves it as it is."""
    if size == 1:
        return model
    for module in list(model.modules()):
        if isinstance(getattr(module, "qkv_proj", None), MergedLinear) and hasattr(module, "attn"):
            module.qkv_proj = _column(module.qkv_proj, _heads(module, rank, size))
            module.o_proj = RowParallelLinear(module.o_proj, rank, size)
            module.num_heads //= size
            module.num_kv_heads = max(1, module.num_kv_heads // size)
            module.attn.num_heads, module.attn.num_kv_heads = module.num_heads, module.num_kv_heads
        elif isinstance(getattr(module, "gate_up_proj", None), MergedLinear) and hasattr(module, "down_proj"):
            _divisible("the MLP's intermediate size", module.down_proj.in_features, size)
            module.gate_up_proj = _column(module.gate_up_proj, _even(module.gate_up_proj, rank, size))
            module.down_proj = RowParallelLinear(module.down_proj, rank, size)
    embedding = model.model.embed_tokens
    head = getattr(model, "lm_head", None)
    head_weight, head_bias = (embedding.weight, None) if head is None else (head.weight, head.bias)
    model.lm_head = VocabParallelHead(head_weight, rank, size, head_bias)  # tied or not: its own slice
    model.model.embed_tokens = VocabParallelEmbedding(embedding, rank, size)
    return model
