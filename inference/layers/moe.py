"""Mixture-of-experts MLP: a router picks ``top_k`` of ``E`` experts per token, each a SiLU-gated MLP, and the
token's output is their outputs weighted by the router.

The experts' weights are stacked, as the fused kernels read them: ``w13`` [E, 2I, H] (each expert's gate rows
then its up rows) and ``w2`` [E, H, I]. Checkpoints store one matrix per expert (``experts.{e}.w1`` or
``experts.{e}.gate_proj``...); ``load_shard`` copies each into its expert's slice (``load_hf_weights`` reads
``param_shards`` to know what must be loaded). On the kernels one fused Triton kernel pair runs every expert
(``kernels/fused_moe.py``); the torch path is its reference, which sorts the (token, expert) pairs by expert and
runs one matmul per expert that has tokens: no per-token Python loop.
"""

from __future__ import annotations

import torch
from torch import nn

from inference.layers.activation import sigmoid

SCORINGS = ("softmax", "sigmoid")
# HF hidden_act -> the fused kernel's activation
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}


def route(
    router_logits: torch.Tensor,
    top_k: int,
    renormalize: bool,
    scoring: str = "softmax",
    groups: tuple[int, int] | None = None,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """router_logits [T, E] -> (weights [T, top_k] float32, expert ids [T, top_k] int64): the top_k experts by
    score (softmax, as Mixtral, Qwen and DeepSeek-V2; sigmoid, as DeepSeek-V3), their scores renormalised to sum
    to 1 when ``renormalize`` (Mixtral, Qwen3-MoE) or kept as they are (Qwen2-MoE, DeepSeek-V2), then times
    ``scale`` (DeepSeek's routed_scaling_factor). ``groups`` (n_group, topk_group): DeepSeek-V2's group-limited
    routing, the experts of the topk_group groups whose best expert scores highest only."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring {scoring!r} is not supported ({', '.join(SCORINGS)})")
    logits = router_logits.float()
    scores = logits.softmax(dim=-1) if scoring == "softmax" else sigmoid(logits)
    if groups is not None:
        n_group, topk_group = groups
        best = scores.view(scores.shape[0], n_group, -1).amax(dim=-1)  # [T, n_group]
        keep = torch.zeros_like(best, dtype=torch.bool).scatter_(1, torch.topk(best, topk_group, dim=-1).indices, True)
        scores = scores.masked_fill(~keep.repeat_interleave(scores.shape[1] // n_group, dim=1), 0.0)
    weights, ids = torch.topk(scores, top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights * scale if scale != 1.0 else weights, ids


class FusedMoE(nn.Module):
    """``E`` experts of intermediate size ``I`` over hidden size ``H``: forward(x [T, H], weights [T, k],
    ids [T, k]) -> [T, H], the routed experts' outputs summed with their weights."""

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, hidden_act: str = "silu"):
        super().__init__()
        self.num_experts, self.intermediate_size = num_experts, intermediate_size
        self.w13_weight = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.w2_weight = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        if hidden_act not in _ACTIVATIONS:
            raise ValueError(f"experts' activation {hidden_act!r} is not supported ({', '.join(_ACTIVATIONS)})")
        self.activation = _ACTIVATIONS[hidden_act]

    kernels = False  # on the Triton kernels (set for the whole model by inference.layers.kernel_switch)

    # --- loading: one checkpoint matrix per expert and projection ----------------------------------------

    def param_shards(self) -> dict[str, list[str]]:
        """Each parameter's shards, named ``{expert}.{gate|up|down}``, for ``load_hf_weights``."""
        experts = range(self.num_experts)
        return {
            "w13_weight": [f"{e}.{p}" for e in experts for p in ("gate", "up")],
            "w2_weight": [f"{e}.down" for e in experts],
        }

    def load_shard(self, param: nn.Parameter, shard: str, tensor: torch.Tensor, hf_name: str) -> None:
        from inference.layers.linear import copy_checked

        expert, proj = shard.split(".")
        target = param.data[int(expert)]
        if proj != "down":
            size = self.intermediate_size
            target = target[:size] if proj == "gate" else target[size:]
        copy_checked(target, tensor, hf_name)

    # --- compute ----------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.kernels:
            from kernels.fused_moe import fused_moe
        else:  # the torch path: the kernel's reference, one matmul per expert over its tokens
            from kernels.reference import fused_moe
        return fused_moe(x, self.w13_weight, self.w2_weight, weights, ids, self.activation)
