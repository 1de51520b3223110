"""Attention over a flat, mixed batch with an optional paged KV cache (torch reference path).

The model runner assigns ``k_cache`` / ``v_cache`` ([num_blocks * block_size, num_kv_heads,
head_dim] views) to each layer; tests and encoders run without. On CUDA the Triton kernels of
``kernels/`` replace ``_attend`` (issue 5); this file is the CPU path and their reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers import invariant_attention
from inference.layers.context import ForwardContext, get_context


class Attention(nn.Module):
    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float,
        sliding_window: int | None = None,
        causal: bool = True,
        alibi_slopes: list[float] | None = None,
        shared_kv: bool = False,
    ):
        super().__init__()
        if alibi_slopes is not None and causal:
            raise ValueError("ALiBi attention is the encoders' here: bidirectional and without a KV cache")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.sliding_window = sliding_window
        self.causal = causal
        # [num_heads] ALiBi slopes (JinaBERT): -slope_h * |q_pos - k_pos| added to head h's scores; uncached only
        # (a list, not a buffer: the loader materialises models from the meta device and loads only the weights)
        self.alibi_slopes = alibi_slopes
        # MLA (DeepSeek-V2): v is k (the latent with the rope key), so the engine gives both one cache buffer
        self.shared_kv = shared_kv
        self.k_cache: torch.Tensor | None = None  # [slots, num_kv_heads, head_dim]
        self.v_cache: torch.Tensor | None = None

    kernels = False  # on the Triton kernels (set for the whole model by inference.layers.kernel_switch)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: [T, num_heads * head_dim], k/v: [T, num_kv_heads * head_dim] → [T, num_heads * head_dim]."""
        ctx = get_context()
        T = q.shape[0]
        q = q.view(T, self.num_heads, self.head_dim)
        k = k.view(T, self.num_kv_heads, self.head_dim)
        v = v.view(T, self.num_kv_heads, self.head_dim)
        if self.kernels:
            return self._forward_kernels(q, k, v, ctx).reshape(T, self.num_heads * self.head_dim)
        if ctx.slot_mapping is not None and self.k_cache is not None:
            self.k_cache[ctx.slot_mapping] = k.to(self.k_cache.dtype)
            self.v_cache[ctx.slot_mapping] = v.to(self.v_cache.dtype)
            if ctx.prompt_lens is not None:  # the engine's steps: every row alike whatever the batch
                out = invariant_attention.attend(self, q, ctx)
            elif ctx.is_decode:
                out = self._decode(q, ctx)
            else:
                out = self._prefill_cached(q, ctx)
        else:
            out = self._prefill_uncached(q, k, v, ctx)
        return out.reshape(T, self.num_heads * self.head_dim)

    def _forward_kernels(self, q, k, v, ctx: ForwardContext) -> torch.Tensor:
        """The same three cases on the Triton kernels: q [T, H, D], k/v [T, Hkv, D] → [T, H, D]."""
        from kernels.decode_attention import decode_attention
        from kernels.kv_cache import store_kv
        from kernels.prefill_attention import paged_attention, varlen_attention

        window = self.sliding_window
        if ctx.slot_mapping is not None and self.k_cache is not None:
            store_kv(k, v, self.k_cache, self.v_cache, ctx.slot_mapping)
            args = (q, self.k_cache, self.v_cache, ctx.block_tables)
            if ctx.is_decode:
                return decode_attention(*args, ctx.context_lens_t, ctx.block_size, self.scale, sliding_window=window)
            return paged_attention(
                *args, ctx.cu_seqlens_q_t, ctx.context_lens_t, ctx.block_size, self.scale, sliding_window=window,
                max_seqlen_q=ctx.max_seqlen_q,
            )  # fmt: skip
        if "cu_seqlens" not in ctx.cache:  # no cache (encoders, tests): each sequence attends to its own tokens
            lens = ctx.cu_seqlens_q
            ctx.cache["cu_seqlens"] = torch.tensor(lens, dtype=torch.int32, device=q.device)
            ctx.cache["max_seqlen"] = max(b - a for a, b in zip(lens, lens[1:], strict=False))
        cu, max_len = ctx.cache["cu_seqlens"], ctx.cache["max_seqlen"]
        return varlen_attention(
            q, k, v, cu, cu, self.scale, causal=self.causal and ctx.causal, sliding_window=window, max_seqlen_q=max_len,
            alibi_slopes=self._slopes(q.device),
        )  # fmt: skip

    # --- masks -----------------------------------------------------------------------------------

    def _mask(self, q_pos: torch.Tensor, k_pos: torch.Tensor, causal: bool) -> torch.Tensor | None:
        """Boolean [q, k] mask (True = attend) for absolute query / key positions."""
        if not causal and self.sliding_window is None:
            return None
        diff = q_pos[:, None] - k_pos[None, :]
        mask = torch.ones_like(diff, dtype=torch.bool)
        if causal:
            mask &= diff >= 0
        if self.sliding_window is not None:
            mask &= diff < self.sliding_window
        return mask

    # --- paths -----------------------------------------------------------------------------------

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q: [q_len, H, D], k/v: [k_len, Hkv, D] → [q_len, H, D]."""
        out = F.scaled_dot_product_attention(
            q.transpose(0, 1).unsqueeze(0),
            k.transpose(0, 1).unsqueeze(0).to(q.dtype),
            v.transpose(0, 1).unsqueeze(0).to(q.dtype),
            attn_mask=mask,
            scale=self.scale,
            enable_gqa=self.num_heads != self.num_kv_heads,
        )
        return out.squeeze(0).transpose(0, 1)

    def _prefill_uncached(self, q, k, v, ctx: ForwardContext) -> torch.Tensor:
        causal = self.causal and ctx.causal
        outs = []
        for i in range(ctx.num_seqs):
            s, e = ctx.cu_seqlens_q[i], ctx.cu_seqlens_q[i + 1]
            pos = torch.arange(e - s, device=q.device)
            mask = self._mask(pos, pos, causal)
            if self.alibi_slopes is None:
                outs.append(self._sdpa(q[s:e], k[s:e], v[s:e], mask))
            else:  # in float32: a bf16 bias would round -slope * |i - j| by up to 1/256 of it
                out = self._sdpa(q[s:e].float(), k[s:e], v[s:e], self._alibi_bias(pos, mask))
                outs.append(out.to(q.dtype))
        return torch.cat(outs)

    def _slopes(self, device: torch.device) -> torch.Tensor | None:
        """The ALiBi slopes as a float32 [H] tensor on ``device`` (None without ALiBi)."""
        if self.alibi_slopes is None:
            return None
        cached = getattr(self, "_slopes_t", None)
        if cached is None or cached.device != device:  # built once per device, not per forward
            cached = self._slopes_t = torch.tensor(self.alibi_slopes, dtype=torch.float32, device=device)
        return cached

    def _alibi_bias(self, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """float32 [H, n, n] scores bias: -slope_h * |i - j|, -inf where ``mask`` forbids."""
        distance = (pos[:, None] - pos[None, :]).abs().float()
        bias = -self._slopes(pos.device)[:, None, None] * distance
        if mask is not None:
            bias = bias.masked_fill(~mask, float("-inf"))
        return bias

    def _prefill_cached(self, q, ctx: ForwardContext) -> torch.Tensor:
        outs = []
        for i in range(ctx.num_seqs):
            s, e = ctx.cu_seqlens_q[i], ctx.cu_seqlens_q[i + 1]
            n_ctx = ctx.context_lens[i]
            slots = ctx.context_slots[i, :n_ctx]
            k_pos = torch.arange(n_ctx, device=q.device)
            q_pos = k_pos[n_ctx - (e - s) :]
            mask = self._mask(q_pos, k_pos, causal=True)
            outs.append(self._sdpa(q[s:e], self.k_cache[slots], self.v_cache[slots], mask))
        return torch.cat(outs)

    def _decode(self, q, ctx: ForwardContext) -> torch.Tensor:
        """One query per sequence: gather every sequence's context, padded, and attend in one call."""
        slots = ctx.context_slots  # [S, max_len]
        k = self.k_cache[slots].to(q.dtype)  # [S, max_len, Hkv, D]
        v = self.v_cache[slots].to(q.dtype)
        out = F.scaled_dot_product_attention(
            q.unsqueeze(2),  # [S, H, 1, D]
            k.permute(0, 2, 1, 3),  # [S, Hkv, max_len, D]
            v.permute(0, 2, 1, 3),
            attn_mask=self._decode_mask(ctx),
            scale=self.scale,
            enable_gqa=self.num_heads != self.num_kv_heads,
        )
        return out.squeeze(2)  # [S, H, D]

    def _decode_mask(self, ctx: ForwardContext) -> torch.Tensor:
        """[S, 1, 1, max_len] keys each sequence may see; built once per step and window, not per layer."""
        key = ("decode_mask", self.sliding_window)
        mask = ctx.cache.get(key)
        if mask is None:
            lens = torch.tensor(ctx.context_lens, device=ctx.context_slots.device)
            k_pos = torch.arange(ctx.context_slots.shape[1], device=lens.device)
            mask = k_pos[None, :] < lens[:, None]
            if self.sliding_window is not None:
                mask &= k_pos[None, :] > (lens[:, None] - 1 - self.sliding_window)
            mask = ctx.cache[key] = mask[:, None, None, :]
        return mask
