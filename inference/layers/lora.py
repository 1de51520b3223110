"""LoRA adapters on a served model (vLLM's multi-LoRA serving): a request may name an adapter, and the rows of a step
that belong to adapter ``slot`` get ``scale * (x @ A.T) @ B.T`` added to the output of each projection it targets.

The base weights are never changed, so a request without an adapter runs exactly as it would without any loaded
(bit for bit, whatever shares its step), and any number of adapters run in one step. Each target projection gets a
forward hook (``LoRAHook``); the module itself, quantized or not, is untouched. The fused CPU decode step and CUDA
graphs read the modules' weights without calling them, so the model runner sends a step that holds adapter rows
through the plain forward (``inference/engine/model_runner.py``).

Batch invariance: the low-rank product runs in float32 in calls of exactly ``ROWS`` rows (the last padded with
zeros), so a row's bits do not depend on how many rows of its adapter share the step (a float32 GEMM's do follow
its row count).
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers.context import current_context

# rows per call of the low-rank products (fixed: the call's shape decides a row's bits); small, since most steps
# decode a few rows and a decode row would otherwise pay for a block of padding
ROWS = 8


def _fixed_rows(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [n, k] @ weight [m, k].T -> [n, m], in calls of exactly ``ROWS`` rows."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (0, 0, 0, -n % ROWS)) if n % ROWS else x
    out = padded.new_empty(padded.shape[0], weight.shape[0])
    for start in range(0, padded.shape[0], ROWS):
        torch.mm(padded[start : start + ROWS], weight.t(), out=out[start : start + ROWS])
    return out[:n]


class LoRAHook:
    """The forward hook of one projection: what each adapter slot adds to its output, as one low-rank pair over the
    whole output (the shards of a merged projection, q/k/v of ``qkv_proj``, side by side: two products a call)."""

    def __init__(self, out_features: int) -> None:
        self.out_features = out_features
        self.adapters: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # slot -> (A [R, in], B [out, R]) float32

    def add(self, slot: int, offset: int, a: torch.Tensor, b: torch.Tensor) -> None:
        """Adapter ``slot``'s update of the output columns from ``offset``: a [r, in], b [size, r], scaled."""
        full = b.new_zeros(self.out_features, b.shape[1])
        full[offset : offset + b.shape[0]] = b
        if slot in self.adapters:  # another shard of the same projection: ranks side by side, B block-diagonal
            a0, b0 = self.adapters[slot]
            a, full = torch.cat([a0, a]), torch.cat([b0, full], dim=1)
        self.adapters[slot] = (a.contiguous(), full.contiguous())

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        ctx = current_context()
        if ctx is None or ctx.lora_ids is None:
            return None
        x = inputs[0]
        if x.dim() != 2 or x.shape[0] != ctx.num_tokens:  # the models call projections on the flat batch
            return None
        groups = ctx.lora_rows()
        for slot, rows in groups.items():
            pair = self.adapters.get(slot)
            if pair is None:
                continue
            a, b = pair
            if len(groups) == 1 and rows.shape[0] == x.shape[0]:  # every row on this adapter: no gather, no scatter
                output += _fixed_rows(_fixed_rows(x.float(), a), b).to(output.dtype)
                continue
            delta = _fixed_rows(_fixed_rows(x.index_select(0, rows).float(), a), b)
            output.index_add_(0, rows, delta.to(output.dtype))
        return output


def hook_of(module: nn.Module) -> LoRAHook:
    """``module``'s LoRA hook, registered on first use."""
    hook = getattr(module, "lora_hook", None)
    if hook is None:
        hook = LoRAHook(module.out_features)
        module.register_forward_hook(hook)
        module.lora_hook = hook
    return hook
