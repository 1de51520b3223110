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
