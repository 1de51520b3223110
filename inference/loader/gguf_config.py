"""GGUF metadata -> the HF ``config.json`` of the same model, one builder per llama.cpp architecture.

Llama 3.1+ files carry their llama3 rope scaling as a tensor, ``rope_freqs.weight``: llama.cpp's converter
turns (factor, low / high_freq_factor, original context) into one divisor per rotary frequency and stores
only those. HF needs the parameters, so ``llama3_rope_from_freqs`` finds the ones that reproduce the divisors
(Meta's published sets first, then a fit to the tensor) and checks them with our own ``rope_inv_freq``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from inference.layers.rotary import RopeParams, rope_inv_freq

ROPE_FREQS = "rope_freqs.weight"
# (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings): Llama 3.1, Llama 3.2
LLAMA3_ROPE_PRESETS = ((8.0, 1.0, 4.0, 8192), (32.0, 1.0, 4.0, 8192))


class ConversionError(ValueError):
    """A GGUF file we cannot convert; the message says why."""


def get(meta: dict[str, Any], arch: str, key: str, default: Any = None) -> Any:
    value = meta.get(f"{arch}.{key}", default)
    return value.item() if isinstance(value, np.generic) else value


def _require(meta: dict[str, Any], arch: str, key: str) -> int:
    value = get(meta, arch, key)
    if not isinstance(value, int):
        raise ConversionError(f"the GGUF metadata has no integer {arch}.{key}")
    return value


def token_id(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(f"tokenizer.ggml.{key}")
    return int(value) if value is not None else None


def hf_config(arch: str, meta: dict[str, Any], tensors: dict[str, Any], rope_freqs: torch.Tensor | None) -> dict:
    """config.json for a GGUF of ``arch``; ``rope_freqs``: the file's ``rope_freqs.weight``, if it has one."""
    if arch == "gemma3":
        if rope_freqs is not None:
            raise ConversionError("a rope_freqs tensor in a gemma3 file is not supported")
        return _gemma3_config(meta, tensors)
    if arch == "deepseek2":
        return _deepseek2_config(meta, tensors)
    config = _common_config(meta, tensors, arch)
    rope = _rope(meta, arch, float(get(meta, arch, "rope.freq_base", 10000.0)))
    if rope_freqs is not None:
        if rope["rope_type"] != "default":
            raise ConversionError(f"rope scaling {rope['rope_type']!r} together with a rope_freqs tensor")
        rope = llama3_rope_from_freqs(rope_freqs, rope["rope_theta"], config["head_dim"])
    config["rope_parameters"] = rope
    if arch == "llama" and get(meta, "llama", "expert_count"):
        return {
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            **config,
            "hidden_act": "silu",
            "num_local_experts": int(get(meta, "llama", "expert_count")),
            "num_experts_per_tok": int(_require(meta, "llama", "expert_used_count")),
            "sliding_window": get(meta, "llama", "attention.sliding_window"),
        }
    if arch in ("qwen2moe", "qwen3moe"):
        return _qwen_moe_config(arch, meta, config)
    if arch == "llama":
        window = get(meta, "llama", "attention.sliding_window")
        # Mistral's GGUFs are `llama` files; llama.cpp writes no window for them (v0.2 on has none anyway)
        names = ("MistralForCausalLM", "mistral") if window else ("LlamaForCausalLM", "llama")
        extra = {"sliding_window": int(window)} if window else {"pretraining_tp": 1}
        return {
            "architectures": [names[0]],
            "model_type": names[1],
            **config,
            "hidden_act": "silu",
            "mlp_bias": "blk.0.ffn_up.bias" in tensors,
            **extra,
        }
    # qwen2 / qwen3: llama.cpp runs them without a sliding window, as their released configs do
    name = "Qwen2ForCausalLM" if arch == "qwen2" else "Qwen3ForCausalLM"
    if arch == "qwen2" and not config["attention_bias"]:
        raise ConversionError("a qwen2 file without q/k/v biases (blk.0.attn_q.bias) is not a Qwen2")
    if arch == "qwen3" and "blk.0.attn_q_norm.weight" not in tensors:
        raise ConversionError("a qwen3 file without blk.0.attn_q_norm.weight is not a Qwen3")
    if arch == "qwen2":
        del config["attention_bias"]  # Qwen2Config has none: q/k/v always carry biases, o_proj never
    return {
        "architectures": [name],
        "model_type": arch,
        **config,
        "hidden_act": "silu",
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": config["num_hidden_layers"],
    }


def _qwen_moe_config(arch: str, meta: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Qwen2-MoE (a shared expert: ``expert_shared_feed_forward_length``) and Qwen3-MoE; llama.cpp renormalises
    the top-k weights for Qwen3-MoE and not for Qwen2-MoE, as their released configs say."""
    moe = {
        "num_experts": int(_require(meta, arch, "expert_count")),
        "num_experts_per_tok": int(_require(meta, arch, "expert_used_count")),
        "moe_intermediate_size": int(_require(meta, arch, "expert_feed_forward_length")),
        "norm_topk_prob": arch == "qwen3moe",
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
    }
    if arch == "qwen2moe":
        moe["shared_expert_intermediate_size"] = int(_require(meta, arch, "expert_shared_feed_forward_length"))
        del config["attention_bias"]  # like Qwen2: q/k/v biases always, none on o_proj
    return {
        "architectures": ["Qwen2MoeForCausalLM" if arch == "qwen2moe" else "Qwen3MoeForCausalLM"],
        "model_type": "qwen2_moe" if arch == "qwen2moe" else "qwen3_moe",
        **config,
        **moe,
        "hidden_act": "silu",
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": config["num_hidden_layers"],
    }


def _shared_fields(meta: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """What every architecture's config.json holds alike: special tokens, tying, the training-only fields."""
    return {
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        # llama.cpp writes the output projection only when it is not the embedding matrix
        "tie_word_embeddings": "output.weight" not in tensors,
        "bos_token_id": token_id(meta, "bos_token_id"),
        "eos_token_id": token_id(meta, "eos_token_id"),
        "pad_token_id": token_id(meta, "padding_token_id"),
        "use_cache": True,
        "dtype": "float32",
    }


def _deepseek2_config(meta: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """DeepSeek-V2 / V2-Lite / Coder-V2. llama.cpp writes MLA as one KV head: newer files (``attn_k_b`` /
    ``attn_v_b``) give the latent's lengths as key/value_length and the heads' as key/value_length_mla, older ones
    (``attn_kv_b``) the heads' as key/value_length. Its yarn keeps ``0.1 * mscale_all_dim`` (the log multiplier)
    only; DeepSeek's released configs have mscale equal to it, which is what makes the query's and key's mscales
    cancel. DeepSeek-V3's sigmoid routing (gating function 2, ``exp_probs_b``) is refused."""
    arch = "deepseek2"
    if "tokenizer.ggml.tokens" not in meta:
        raise ConversionError("the GGUF metadata has no tokenizer.ggml.tokens; a vocabulary is needed")
    if (
        get(meta, arch, "expert_gating_func", 1) != 1
        or "blk.0.exp_probs_b.bias" in tensors
        or any(name.endswith("exp_probs_b.bias") for name in tensors)
    ):
        raise ConversionError("DeepSeek-V3's sigmoid routing (expert_gating_func 2, exp_probs_b) is not supported")
    heads = _require(meta, arch, "attention.head_count")
    rope_dim = _require(meta, arch, "rope.dimension_count")
    if get(meta, arch, "attention.key_length_mla"):
        qk_head, v_head = (
            _require(meta, arch, "attention.key_length_mla"),
            _require(meta, arch, "attention.value_length_mla"),
        )
    else:
        qk_head, v_head = _require(meta, arch, "attention.key_length"), _require(meta, arch, "attention.value_length")
    groups = int(get(meta, arch, "expert_group_count", 1) or 1)
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": float(get(meta, arch, "rope.freq_base", 10000.0))}
    if get(meta, arch, "rope.scaling.type", "none") == "yarn":
        # a float32 in the file: 0.1 * 0.707 comes back as 0.70699997 without the rounding
        mscale = float(f"{float(get(meta, arch, 'rope.scaling.yarn_log_multiplier', 0.0)) / 0.1:.6g}")
        rope.update(
            rope_type="yarn", factor=float(get(meta, arch, "rope.scaling.factor")), mscale=mscale,
            mscale_all_dim=mscale, beta_fast=float(get(meta, arch, "rope.scaling.yarn_beta_fast", 32.0)),
            beta_slow=float(get(meta, arch, "rope.scaling.yarn_beta_slow", 1.0)),
            original_max_position_embeddings=int(_require(meta, arch, "rope.scaling.original_context_length")),
        )  # fmt: skip
    elif get(meta, arch, "rope.scaling.type", "none") != "none":
        raise ConversionError(f"deepseek2 rope scaling {get(meta, arch, 'rope.scaling.type')!r} is not supported")
    return {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "vocab_size": int(get(meta, arch, "vocab_size", len(meta["tokenizer.ggml.tokens"]))),
        "hidden_size": _require(meta, arch, "embedding_length"),
        "intermediate_size": _require(meta, arch, "feed_forward_length"),
        "moe_intermediate_size": _require(meta, arch, "expert_feed_forward_length"),
        "num_hidden_layers": _require(meta, arch, "block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "n_routed_experts": _require(meta, arch, "expert_count"),
        "num_experts_per_tok": _require(meta, arch, "expert_used_count"),
        "n_shared_experts": int(get(meta, arch, "expert_shared_count", 0)),
        "routed_scaling_factor": float(get(meta, arch, "expert_weights_scale", 1.0)),
        "norm_topk_prob": bool(get(meta, arch, "expert_weights_norm", False)),
        "topk_method": "group_limited_greedy" if groups > 1 else "greedy",
        "n_group": groups,
        "topk_group": int(get(meta, arch, "expert_group_used_count", 1) or 1),
        "first_k_dense_replace": int(get(meta, arch, "leading_dense_block_count", 0)),
        "q_lora_rank": get(meta, arch, "attention.q_lora_rank") or None,
        "kv_lora_rank": _require(meta, arch, "attention.kv_lora_rank"),
        "qk_nope_head_dim": qk_head - rope_dim,
        "qk_rope_head_dim": rope_dim,
        "head_dim": rope_dim,
        "v_head_dim": v_head,
        "hidden_act": "silu",
        "max_position_embeddings": int(get(meta, arch, "context_length", 2048)),
        "rms_norm_eps": float(get(meta, arch, "attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_parameters": rope,
        "attention_bias": False,
        **_shared_fields(meta, tensors),
    }


def _common_config(meta: dict[str, Any], tensors: dict[str, Any], arch: str) -> dict[str, Any]:
    if "tokenizer.ggml.tokens" not in meta:
        raise ConversionError("the GGUF metadata has no tokenizer.ggml.tokens; a vocabulary is needed")
    hidden = _require(meta, arch, "embedding_length")
    heads = _require(meta, arch, "attention.head_count")
    kv_heads = get(meta, arch, "attention.head_count_kv", heads)
    if not isinstance(kv_heads, int):  # an array means per-layer counts, which HF cannot express
        raise ConversionError(f"{arch}.attention.head_count_kv varies per layer; not supported")
    head_dim = get(meta, arch, "attention.key_length") or get(meta, arch, "rope.dimension_count") or hidden // heads
    if get(meta, arch, "attention.value_length", head_dim) != head_dim:
        raise ConversionError("attention key_length != value_length is not supported")
    if get(meta, arch, "rope.dimension_count", head_dim) != head_dim:
        raise ConversionError("partial rotary embeddings (rope.dimension_count != head_dim) are not supported")
    scaling = get(meta, arch, "rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise ConversionError(f"rope scaling {scaling!r} is not supported (supported: none, linear)")
    return {
        "vocab_size": int(get(meta, arch, "vocab_size", len(meta["tokenizer.ggml.tokens"]))),
        "hidden_size": hidden,
        "intermediate_size": _require(meta, arch, "feed_forward_length"),
        "num_hidden_layers": _require(meta, arch, "block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": int(kv_heads),
        "head_dim": int(head_dim),
        "max_position_embeddings": int(get(meta, arch, "context_length", 2048)),
        "rms_norm_eps": float(get(meta, arch, "attention.layer_norm_rms_epsilon", 1e-6)),
        "attention_bias": "blk.0.attn_q.bias" in tensors,
        **_shared_fields(meta, tensors),
    }


def _rope(meta: dict[str, Any], arch: str, theta: float) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": theta}
    if get(meta, arch, "rope.scaling.type", "none") == "linear":
        rope.update(rope_type="linear", factor=float(get(meta, arch, "rope.scaling.factor")))
    return rope


def llama3_rope_from_freqs(divisors: torch.Tensor, theta: float, head_dim: int) -> dict[str, Any]:
    """HF ``rope_parameters`` of type llama3 whose frequencies equal base frequencies / ``divisors`` [head_dim/2].

    llama.cpp divides frequency i by divisors[i]: 1 above the high band, ``factor`` below the low one and
    1 / ((1 - s) / factor + s) between, s linear in 1 / wavelength. Meta's sets are tried first, then one fitted
    to the tensor; each is accepted only if ``rope_inv_freq`` reproduces the divided frequencies."""
    divisors = divisors.detach().float().reshape(-1)
    if divisors.numel() != head_dim // 2:
        raise ConversionError(f"rope_freqs has {divisors.numel()} entries; head_dim {head_dim} needs {head_dim // 2}")
    target = rope_inv_freq(RopeParams(theta=theta), head_dim) / divisors
    for factor, low, high, original in (*LLAMA3_ROPE_PRESETS, *_fitted(divisors, theta, head_dim)):
        params = RopeParams(
            theta=theta, type="llama3", factor=factor, low_freq_factor=low, high_freq_factor=high,
            original_max_position_embeddings=original,
        )  # fmt: skip
        if torch.allclose(rope_inv_freq(params, head_dim), target, rtol=1e-5, atol=0.0):
            return {
                "rope_type": "llama3", "rope_theta": theta, "factor": factor, "low_freq_factor": low,
                "high_freq_factor": high, "original_max_position_embeddings": original,
            }  # fmt: skip
    raise ConversionError(
        "the rope_freqs tensor matches no llama3 rope scaling (factor, low/high_freq_factor, original context): "
        f"divisors {[round(d, 4) for d in divisors.tolist()]}"
    )


def _fitted(divisors: torch.Tensor, theta: float, head_dim: int) -> list[tuple[float, float, float, int]]:
    """The llama3 parameters the divisors imply, with low_freq_factor 1 (only ratios to it matter)."""
    factor = float(divisors.max())
    inv = rope_inv_freq(RopeParams(theta=theta), head_dim).double()
    d = divisors.double()
    medium = (d > 1 + 1e-6) & (d < factor * (1 - 1e-6))
    if factor <= 1 or int(medium.sum()) < 2:
        return []
    # 1/d = (1 - s)/factor + s  =>  s;  s (high - 1) + 1 = original / wavelength: linear in (high - 1, original)
    s = (1 / d[medium] - 1 / factor) / (1 - 1 / factor)
    inv_wavelen = inv[medium] / (2 * math.pi)
    solution = torch.linalg.lstsq(torch.stack([s, -inv_wavelen], dim=1), -torch.ones_like(s)[:, None]).solution
    high, original = float(solution[0, 0]) + 1, round(float(solution[1, 0]))
    if not (high > 1 and original > 0):
        return []
    return [(factor, 1.0, float(f"{high:.6g}"), original)]


def _gemma3_config(meta: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    config = _common_config(meta, tensors, "gemma3")
    layers = config["num_hidden_layers"]
    # llama.cpp hard-codes Gemma 3's layout: 5 sliding-window layers (rope base 10k), then 1 global
    pattern = get(meta, "gemma3", "attention.sliding_window_pattern", 6)
    if isinstance(pattern, int):
        sliding = [bool((i + 1) % pattern) for i in range(layers)]
    else:  # newer files: one flag per layer, true for sliding
        sliding = [bool(flag) for flag in pattern]
    return {
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        **config,
        "hidden_activation": "gelu_pytorch_tanh",
        "query_pre_attn_scalar": config["head_dim"],
        "sliding_window": int(get(meta, "gemma3", "attention.sliding_window", 512)),
        "layer_types": ["sliding_attention" if s else "full_attention" for s in sliding],
        "rope_parameters": {
            "full_attention": _rope(meta, "gemma3", float(get(meta, "gemma3", "rope.freq_base", 1_000_000.0))),
            "sliding_attention": {
                "rope_type": "default",
                "rope_theta": float(get(meta, "gemma3", "rope.freq_base_swa", 10_000.0)),
            },
        },
        "final_logit_softcapping": get(meta, "gemma3", "final_logit_softcapping"),
        "attn_logit_softcapping": get(meta, "gemma3", "attn_logit_softcapping"),
        "use_bidirectional_attention": False,
    }
