"""DeepSeek-V2 (V2, V2-Lite, Coder-V2): multi-head latent attention (MLA) and a mixture of experts with shared
experts, the first layers dense.

MLA, as it runs here: per token the cache holds one vector, the normed latent c [L] (``kv_lora_rank``) and the
rotated rope key k_pe [R], shared by every head (a single KV head of L + R: DeepSeek-V2-Lite's 576 values against
a dense cache's 2 x 16 heads x 192). Attention absorbs the up-projections (``kv_b_proj`` = W_UK | W_UV per head):
the query's no-rope part is taken into the latent space (q_nope W_UK), so the scores are
[q_nope W_UK, q_pe] . [c, k_pe] = q_nope . k_nope + q_pe . k_pe, exactly the expanded attention; the values are
the latents themselves (the buffer's first L columns), and the output goes out through W_UV per head. The same
``Attention`` runs it (its K and V one buffer, ``shared_kv``), on the torch path and the kernels.

Rope: DeepSeek rotates interleaved pairs (2i, 2i + 1); our rotary rotates halves (i, i + R/2). The rope rows of
the q and k projections are permuted once at load (evens first, then odds), which turns one into the other: the
scores, dot products of q and k permuted alike, do not change.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from inference.layers.attention import Attention
from inference.layers.invariant_rows import in_row_blocks
from inference.layers.moe import FusedMoE, route
from inference.layers.norm import RMSNorm
from inference.layers.rotary import Rope, apply_rope
from inference.models.llama import PACKED_MODULES, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP, LlamaModel
from inference.models.moe_block import expert_name
from inference.models.moe_config import DeepseekV2Config


def _softmax_scale(config: DeepseekV2Config) -> float:
    """qk_head_dim^-0.5, times yarn's mscale(factor, mscale_all_dim)^2 when the rope sets one (transformers'
    ``yarn_apply_mscale``)."""
    scale = config.qk_head_dim**-0.5
    rope = config.rope
    if rope.type != "default" and rope.mscale_all_dim:
        import math

        m = 0.1 * rope.mscale_all_dim * math.log(rope.factor) + 1.0 if rope.factor > 1 else 1.0
        scale *= m * m
    return scale


class DeepseekV2Attention(nn.Module):
    def __init__(self, config: DeepseekV2Config, layer_idx: int):
        super().__init__()
        self.num_heads, self.latent = config.num_attention_heads, config.kv_lora_rank
        self.nope, self.rope_dim, self.v_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        hidden, q_size = config.hidden_size, self.num_heads * config.qk_head_dim
        if config.q_lora_rank is None:
            self.q_proj = nn.Linear(hidden, q_size, bias=False)
        else:
            self.q_a_proj = nn.Linear(hidden, config.q_lora_rank, bias=config.qkv_bias)
            self.q_a_layernorm = RMSNorm(config.q_lora_rank, config.rms_norm_eps)
            self.q_b_proj = nn.Linear(config.q_lora_rank, q_size, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(hidden, self.latent + self.rope_dim, bias=config.qkv_bias)
        self.kv_a_layernorm = RMSNorm(self.latent, config.rms_norm_eps)
        self.kv_b_proj = nn.Linear(self.latent, self.num_heads * (self.nope + self.v_dim), bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.v_dim, hidden, bias=config.o_bias)
        # one KV head of latent + rope key; v is k (its first `latent` columns are the values)
        self.attn = Attention(self.num_heads, 1, self.latent + self.rope_dim, scale=_softmax_scale(config),
                              sliding_window=config.sliding_windows[layer_idx], shared_kv=True)  # fmt: skip

    def _q(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "q_proj"):
            return self.q_proj(x)
        return self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))

    def forward(self, x: torch.Tensor, rope: Rope) -> torch.Tensor:
        """x [T, hidden] -> [T, hidden]."""
        T, H = x.shape[0], self.num_heads
        q_nope, q_pe = self._q(x).view(T, H, self.nope + self.rope_dim).split([self.nope, self.rope_dim], dim=-1)
        latent, k_pe = self.kv_a_proj_with_mqa(x).split([self.latent, self.rope_dim], dim=-1)
        q_pe, k_pe = apply_rope(q_pe.contiguous(), k_pe.reshape(T, 1, self.rope_dim).contiguous(), rope)
        w = self.kv_b_proj.weight.view(H, self.nope + self.v_dim, self.latent)
        w_uk, w_uv = w[:, : self.nope], w[:, self.nope :]  # [H, nope, L], [H, v, L]
        # the query's no-rope part in the latent space, and below the values out of it: fp32 products over the rows,
        # in fixed row blocks (a row's bits never follow the batch)
        q_latent = in_row_blocks(lambda rows: torch.einsum("thn,hnl->thl", rows, w_uk), q_nope)
        q = torch.cat([q_latent, q_pe], dim=-1).reshape(T, -1)  # [T, H * (L + R)]
        kv = torch.cat([self.kv_a_layernorm(latent), k_pe.reshape(T, self.rope_dim)], dim=-1)  # [T, L + R]
        out = self.attn(q, kv, kv).view(T, H, self.latent + self.rope_dim)[..., : self.latent]  # [T, H, L]
        values = in_row_blocks(lambda rows: torch.einsum("thl,hvl->thv", rows, w_uv), out)
        return self.o_proj(values.reshape(T, H * self.v_dim))


class DeepseekV2MoE(nn.Module):
    """Routed experts (softmax, top k, group-limited where configured, times routed_scaling_factor) plus the
    shared experts (one MLP of n_shared_experts x moe_intermediate_size), ungated."""

    def __init__(self, config: DeepseekV2Config):
        super().__init__()
        hidden = config.hidden_size
        self.top_k, self.renormalize, self.scale = (
            config.num_experts_per_tok, config.norm_topk_prob, config.routed_scaling_factor)  # fmt: skip
        grouped = config.topk_method == "group_limited_greedy"
        self.groups = (config.n_group, config.topk_group) if grouped else None
        self.gate = nn.Linear(hidden, config.num_experts, bias=False)
        self.experts = FusedMoE(config.num_experts, hidden, config.moe_intermediate_size, config.hidden_act)
        shared = config.moe_intermediate_size * config.n_shared_experts
        self.shared_experts = LlamaMLP(hidden, shared, config.hidden_act) if shared else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = route(self.gate(x), self.top_k, self.renormalize, groups=self.groups, scale=self.scale)
        out = self.experts(x, weights, ids)
        return out + self.shared_experts(x) if self.shared_experts is not None else out


class DeepseekV2DecoderLayer(LlamaDecoderLayer):
    def __init__(self, config: DeepseekV2Config, layer_idx: int):
        nn.Module.__init__(self)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DeepseekV2Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        if config.sparse_layers[layer_idx]:
            self.mlp = DeepseekV2MoE(config)
        else:
            self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act)


class DeepseekV2Model(LlamaModel):
    layer_class = DeepseekV2DecoderLayer  # Llama's rotary over head_dim: the rope part's, as the config sets it


def _interleaved_to_halves(rope_dim: int) -> torch.Tensor:
    """The rope rows' new order: the even ones, then the odd ones."""
    return torch.cat([torch.arange(0, rope_dim, 2), torch.arange(1, rope_dim, 2)])


class DeepseekV2ForCausalLM(LlamaForCausalLM):
    config_class = DeepseekV2Config
    model_class = DeepseekV2Model
    checkpoint_name = staticmethod(expert_name)  # mlp.experts.{e}.*; the shared experts are a plain MLP
    packed_modules = {n: PACKED_MODULES[n] for n in ("gate_proj", "up_proj")}  # MLA's projections stay apart

    # read as matrices (W_UK absorbed into the query, W_UV applied to the output), never called: weights kept in
    # GGUF blocks leave them dense
    dense_only = ("kv_b_proj",)

    def row_order(self, module_name: str) -> torch.Tensor | None:
        """How ``load_weights`` reorders a projection's rows (its weight becomes ``weight[order]``): the rope rows of
        q and of kv_a's rope key de-interleaved; None for the others. Weights kept in GGUF blocks reorder the same."""
        cfg: DeepseekV2Config = self.config
        leaf = module_name.rpartition(".")[2]
        perm = _interleaved_to_halves(cfg.qk_rope_head_dim)
        if leaf in ("q_proj", "q_b_proj"):
            rows = torch.arange(cfg.num_attention_heads * cfg.qk_head_dim).view(cfg.num_attention_heads, -1)
            rows[:, cfg.qk_nope_head_dim :] = rows[:, cfg.qk_nope_head_dim :][:, perm]
            return rows.reshape(-1)
        if leaf == "kv_a_proj_with_mqa":
            rows = torch.arange(cfg.kv_lora_rank + cfg.qk_rope_head_dim)
            rows[cfg.kv_lora_rank :] = rows[cfg.kv_lora_rank :][perm]
            return rows
        return None

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        super().load_weights(weights)
        with torch.no_grad():
            for name, module in self.named_modules():
                order = self.row_order(name) if isinstance(module, nn.Linear) else None
                if order is not None:
                    if hasattr(module, "weight"):  # not when its rows stay GGUF blocks (reordered as they load)
                        module.weight.data = module.weight.data[order.to(module.weight.device)]
                    if module.bias is not None:
                        module.bias.data = module.bias.data[order.to(module.bias.device)]
