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

from dataclasses import dataclass

import torch
from torch import nn

from inference.layers.context import current_context

ROWS = 32  # rows per call of the low-rank products (fixed: the call's shape decides a row's bits)


@dataclass
class LoRAShard:
    """One adapter's update of one projection, or of one shard of a merged one (q of qkv_proj)."""

    offset: int  # the first output column it adds to
    a: torch.Tensor  # [r, in] float32
    b: torch.Tensor  # [size, r] float32, scaled (alpha / r, or alpha / sqrt(r) for rsLoRA)


def _fixed_rows(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [n, k] @ weight [m, k].T -> [n, m], in calls of exactly ``ROWS`` rows."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, (0, 0, 0, -n % ROWS)) if n % ROWS else x
    out = padded.new_empty(padded.shape[0], weight.shape[0])
    for start in range(0, padded.shape[0], ROWS):
        torch.mm(padded[start : start + ROWS], weight.t(), out=out[start : start + ROWS])
    return out[:n]


class LoRAHook:
    """The forward hook of one projection: what each adapter slot adds to its output."""

    def __init__(self) -> None:
        self.adapters: dict[int, list[LoRAShard]] = {}

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        ctx = current_context()
        if ctx is None or ctx.lora_ids is None:
            return None
        x = inputs[0]
        if x.dim() != 2 or x.shape[0] != ctx.num_tokens:  # the models call projections on the flat batch
            return None
        for slot, rows in ctx.lora_rows().items():
            for shard in self.adapters.get(slot, ()):
                delta = _fixed_rows(_fixed_rows(x[rows].float(), shard.a), shard.b)
                output[rows, shard.offset : shard.offset + shard.b.shape[0]] += delta.to(output.dtype)
        return output


def hook_of(module: nn.Module) -> LoRAHook:
    """``module``'s LoRA hook, registered on first use."""
    hook = getattr(module, "lora_hook", None)
    if hook is None:
        hook = LoRAHook()
        module.register_forward_hook(hook)
        module.lora_hook = hook
    return hook
