"""Tiny random-weight HF checkpoints written with transformers (a test-only dependency).

Every weight is re-drawn so that nothing sits at an identity-like init: norms away from 1 (or from 0
for Gemma's zero-centred ones), non-zero biases, projections scaled to keep activations O(1) so that
attention patterns and logits are far from uniform and a wrong detail shows up in the numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

VOCAB = 128


def _randomize(model: nn.Module, seed: int, embed_std: float, zero_centred_norms: bool = False) -> None:
    """``embed_std``: with tied embeddings a large one makes the input token dominate the last hidden state,
    so greedy decoding just repeats it; 0.1 keeps the generated tokens varied."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                if zero_centred_norms:  # Gemma: applied as 1 + w
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
                else:
                    p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * embed_std)
            else:  # Linear [out, in]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def _save(model: nn.Module, path: Path, max_shard_size: str | None = None) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, **kwargs)
    return path


def llama_checkpoint(path: Path) -> Path:
    """GQA (4 heads / 2 kv), head_dim 24 != 64/4, untied lm_head, q/k/v/o and MLP biases, llama3 rope scaling
    whose original context (16) is short enough that all three frequency bands occur."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=24,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=True,
        mlp_bias=True,
        bos_token_id=None,
        eos_token_id=None,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    )
    model = LlamaForCausalLM(config)
    _randomize(model, seed=1, embed_std=1.0)
    return _save(model, path)


def qwen2_checkpoint(path: Path, sliding_window: bool = False) -> Path:
    """q/k/v biases, one kv head, tied embeddings, linear rope scaling, saved in several shards (with an
    index). ``sliding_window``: turn on Qwen2's window (12) for layers >= 1; otherwise the config still carries
    a window of 4 that must be ignored because ``use_sliding_window`` is off."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        use_sliding_window=sliding_window,
        sliding_window=12 if sliding_window else 4,
        max_window_layers=1,
        bos_token_id=None,
        eos_token_id=None,
        rope_parameters={"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 2.0},
    )
    model = Qwen2ForCausalLM(config)
    _randomize(model, seed=2, embed_std=0.1)
    return _save(model, path, max_shard_size="100KB")


def gemma3_checkpoint(path: Path) -> Path:
    """7 layers (sliding x5, full, sliding: the default pattern of 6), window 8, local base 10k and a global
    base of 1M with linear scaling, QK-norm, attention scale 24**-0.5 != head_dim**-0.5, final softcapping."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=7,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=24,
        sliding_window=8,
        max_position_embeddings=512,
        final_logit_softcapping=30.0,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 8.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        },
    )
    model = Gemma3ForCausalLM(config)
    _randomize(model, seed=3, embed_std=0.1, zero_centred_norms=True)
    return _save(model, path)


def bert_checkpoint(path: Path) -> Path:
    """A 2-layer BERT with two token types and a pooler (which our encoder must ignore)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    model = BertModel(config)
    _randomize(model, seed=4, embed_std=1.0)
    return _save(model, path)
