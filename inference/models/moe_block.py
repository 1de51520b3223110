"""What the mixture-of-experts decoders share: the sparse MLP block (router, experts, an optional shared expert),
the decoder layer that holds it (or a dense MLP, on the layers a config keeps dense) and the checkpoint names of
the experts' matrices mapped onto the stacked ``FusedMoE`` parameters."""

from __future__ import annotations

import re

import torch
from torch import nn

from inference.layers.moe import FusedMoE, route, sigmoid
from inference.layers.norm import RMSNorm
from inference.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaMLP
from inference.models.moe_config import MoEConfig


class SparseMoeBlock(nn.Module):
    """x [T, H] -> [T, H]: the router (``gate``) scores the experts, the top k run (``experts``), and a shared
    expert (Qwen2-MoE), scaled by the sigmoid of its own gate, is added to every token."""

    def __init__(self, config: MoEConfig):
        super().__init__()
        hidden = config.hidden_size
        self.top_k, self.renormalize = config.num_experts_per_tok, config.norm_topk_prob
        self.gate = nn.Linear(hidden, config.num_experts, bias=False)
        self.experts = FusedMoE(config.num_experts, hidden, config.moe_intermediate_size, config.hidden_act)
        self.shared_expert = self.shared_expert_gate = None
        if config.shared_expert_intermediate_size:
            self.shared_expert = LlamaMLP(hidden, config.shared_expert_intermediate_size, config.hidden_act)
            self.shared_expert_gate = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = route(self.gate(x), self.top_k, self.renormalize)
        out = self.experts(x, weights, ids)
        if self.shared_expert is not None:
            out = out + sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return out


class MoEDecoderLayer(LlamaDecoderLayer):
    """Llama's layer (pre-norms, fused residual adds) with a sparse MLP, or a dense one where the config says."""

    attention_class: type[nn.Module] = LlamaAttention

    def __init__(self, config: MoEConfig, layer_idx: int):
        nn.Module.__init__(self)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = self.attention_class(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.sparse_layers[layer_idx]:
            self.mlp = SparseMoeBlock(config)
        else:
            self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act, config.mlp_bias)


# an expert's matrix: Mixtral's block_sparse_moe.experts.{e}.w1 / w3 / w2, or Qwen's mlp.experts.{e}.gate_proj...
_EXPERT = re.compile(
    r"^(.*)\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(w1|w3|w2|gate_proj|up_proj|down_proj)\.weight$"
)
_PROJECTION = {"w1": "gate", "gate_proj": "gate", "w3": "up", "up_proj": "up", "w2": "down", "down_proj": "down"}


def expert_name(name: str) -> str | tuple[str, str]:
    """A checkpoint name -> ours: an expert's matrix -> (the stacked parameter, ``{expert}.{gate|up|down}``);
    Mixtral's ``block_sparse_moe`` is our ``mlp``; anything else as it is."""
    match = _EXPERT.match(name)
    if match is None:
        return name.replace(".block_sparse_moe.", ".mlp.")
    layer, expert, projection = match.groups()
    shard = _PROJECTION[projection]
    return f"{layer}.mlp.experts.{'w2' if shard == 'down' else 'w13'}_weight", f"{expert}.{shard}"
