"""How many tokens the paged KV cache holds: on CUDA, what fits in the GPU's memory after the weights and
the activations of the largest step (measured by running one); on the CPU, one context (capped)."""

from __future__ import annotations

import torch

from inference.env import ConfigError
from inference.layers.context import ForwardContext, forward_context


def kv_bytes_per_token(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """K and V of one token across every attention layer of ``model`` (one buffer for MLA's shared latent)."""
    size = torch.tensor([], dtype=dtype).element_size()
    return sum((1 if layer.shared_kv else 2) * layer.num_kv_heads * layer.head_dim * size
               for layer in model.attention_layers())  # fmt: skip


def describe_kv_cache(model: torch.nn.Module, dtype: torch.dtype, tokens: int) -> str:
    """The start-up line about the cache; for MLA (a shared latent per token) the saving against the dense cache
    of the same heads (k of qk_head_dim and v of v_head_dim per head)."""
    per_token = kv_bytes_per_token(model, dtype)
    line = f"KV cache: {tokens} tokens, {per_token} bytes per token"
    cfg = model.config
    if any(layer.shared_kv for layer in model.attention_layers()) and hasattr(cfg, "v_head_dim"):
        size = torch.tensor([], dtype=dtype).element_size()
        dense = cfg.num_hidden_layers * cfg.num_attention_heads * (cfg.qk_head_dim + cfg.v_head_dim) * size
        line += f" (MLA latents: a dense cache of the same heads would take {dense}, {dense / per_token:.1f}x more)"
    return line


def kv_tokens_for_memory(
    free: int, total: int, utilization: float, peak_activation: int, per_token: int, block_size: int
) -> int:
    """Tokens (a whole number of blocks) that fit in ``utilization`` of the GPU, given what is in use now
    (``total - free``: weights, the CUDA context, other processes) and the activations a step needs."""
    budget = int(total * utilization) - (total - free) - peak_activation
    tokens = max(0, budget // per_token) // block_size * block_size
    if tokens < block_size:
        raise ConfigError(
            f"no GPU memory left for the KV cache: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB, "
            f"utilization {utilization}, a step's activations {peak_activation / 2**30:.2f} GiB; raise "
            "engine.gpu_memory_utilization, lower engine.max_batched_tokens, or use a smaller model"
        )
    return tokens


@torch.inference_mode()
def profile_peak_activation(model: torch.nn.Module, num_tokens: int, num_logits: int, device: torch.device) -> int:
    """Bytes a prefill of ``num_tokens`` tokens (no cache) and ``num_logits`` rows of logits allocate on top of
    the weights, measured by running it once."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    ids = torch.zeros(num_tokens, dtype=torch.long, device=device)
    with forward_context(ForwardContext.for_prompts([num_tokens])):
        hidden = model(ids, torch.arange(num_tokens, device=device))
        model.compute_logits(hidden[-num_logits:])
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del hidden
    torch.cuda.empty_cache()
    return peak


def cuda_kv_tokens(model: torch.nn.Module, kv_dtype: torch.dtype, cfg, device: torch.device) -> int:
    """The KV cache size on a CUDA device for ``cfg`` (an EngineConfig)."""
    peak = profile_peak_activation(model, cfg.max_batched_tokens, cfg.max_num_seqs, device)
    free, total = torch.cuda.mem_get_info(device)
    return kv_tokens_for_memory(
        free, total, cfg.gpu_memory_utilization, peak, kv_bytes_per_token(model, kv_dtype), cfg.block_size
    )
