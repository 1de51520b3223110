"""Tiny random-weight mixture-of-experts checkpoints written with transformers: enough experts and layers that
routing (top-k of many), renormalisation or not, the shared expert and its gate, and dense layers among sparse
ones are all exercised."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.checkpoints import VOCAB, _randomize, _save

_COMMON = dict(
    vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=256, rms_norm_eps=1e-6, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    tie_word_embeddings=False,
)  # fmt: skip


def mixtral_checkpoint(path: Path, sliding_window: int | None = None) -> Path:
    """8 experts of 48, the top 2 renormalised, on every layer; ``sliding_window`` on every layer if given."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    config = MixtralConfig(**_COMMON, intermediate_size=48, num_local_experts=8, num_experts_per_tok=2,
                           sliding_window=sliding_window,
                           rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})  # fmt: skip
    model = MixtralForCausalLM(config)
    _randomize(model, seed=21, embed_std=1.0)
    return _save(model, path)


def qwen2_moe_checkpoint(path: Path) -> Path:
    """6 experts of 32, the top 3 not renormalised, a shared expert of 80 with its gate; layer 1 dense (in
    ``mlp_only_layers``, its MLP of 96); q/k/v biases."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen2MoeConfig(**_COMMON, intermediate_size=96, moe_intermediate_size=32, num_experts=6,
                            num_experts_per_tok=3, norm_topk_prob=False, shared_expert_intermediate_size=80,
                            decoder_sparse_step=1, mlp_only_layers=[1], use_sliding_window=False,
                            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})  # fmt: skip
    model = Qwen2MoeForCausalLM(config)
    _randomize(model, seed=22, embed_std=1.0)
    return _save(model, path)


def qwen3_moe_checkpoint(path: Path) -> Path:
    """QK-norm, head_dim 24 (!= 64 / 4), 10 experts of 32, the top 4 renormalised; sparse every second layer
    (``decoder_sparse_step`` 2: layer 1 only), the others dense (96)."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(**_COMMON, head_dim=24, intermediate_size=96, moe_intermediate_size=32,
                            num_experts=10, num_experts_per_tok=4, norm_topk_prob=True, decoder_sparse_step=2,
                            mlp_only_layers=[], use_sliding_window=False,
                            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0})  # fmt: skip
    model = Qwen3MoeForCausalLM(config)
    _randomize(model, seed=23, embed_std=1.0)
    return _save(model, path)


def deepseek_v2_checkpoint(
    path: Path, q_lora_rank: int | None = None, grouped: bool = False, vocab_size: int = VOCAB
) -> Path:
    """DeepSeek-V2's shape in miniature: MLA (kv latent 32, q/k heads of 16 no-rope + 8 rope, v heads of 12;
    ``q_lora_rank``: V2's low-rank q, else V2-Lite's plain q_proj), yarn rope with mscale (as V2-Lite's), 8
    experts of 32, the top 3 scaled by 1.5 (``grouped``: within the best 2 of 4 groups), 2 shared experts, the
    first layer dense."""
    from transformers import DeepseekV2Config, DeepseekV2ForCausalLM

    torch.manual_seed(0)
    rope = {"rope_type": "yarn", "rope_theta": 10_000.0, "factor": 4.0, "original_max_position_embeddings": 64,
            "mscale": 0.707, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}  # fmt: skip
    config = DeepseekV2Config(
        **{**_COMMON, "num_key_value_heads": 4, "vocab_size": vocab_size}, intermediate_size=96,
        moe_intermediate_size=32,
        q_lora_rank=q_lora_rank, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=12,
        n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=2, first_k_dense_replace=1,
        routed_scaling_factor=1.5, topk_method="group_limited_greedy" if grouped else "greedy",
        n_group=4 if grouped else None, topk_group=2 if grouped else None, norm_topk_prob=False,
        rope_parameters=rope,
    )  # fmt: skip
    model = DeepseekV2ForCausalLM(config)
    _randomize(model, seed=24, embed_std=1.0)
    return _save(model, path)
