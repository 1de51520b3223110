"""Batch-invariant attention over the paged cache (the CPU path): a row's output is bit for bit the same whatever
else is in the step (other sequences, a chunk boundary, a decode beside a prefill).

SDPA's result for one query row depends on the shapes of the call (how many query rows, how many keys: the
kernel's blocking and its reductions' order follow them), never on the values of the other rows. So every row is
computed in a call whose shapes depend on its own position only:

- a prompt row at position p is computed in the block of ``PROMPT_BLOCK`` positions holding p (aligned to 0),
  queries of the block's other positions zeroed, over keys ``[0, block end)``: one call per block, whatever
  the chunk brought of it;
- a generated row at position p is computed alone, over keys ``[0, p]`` padded with masked zeros to the next
  multiple of ``KEY_BLOCK``.

Keys past a sequence's cached ones are zeros and masked (causally later than every real query of the call).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inference.layers.context import ForwardContext

PROMPT_BLOCK = 64  # prompt positions per call: prefill runs in ~n/64 calls per layer per sequence
KEY_BLOCK = 64  # a generated row's keys are padded to a multiple of this (at most 63 masked zeros)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _gathered(cache: torch.Tensor, slots: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """[length, Hkv, D]: the cache rows at ``slots``, then zeros: gathered straight into place (decode hot path)."""
    out = torch.empty(length, *cache.shape[1:], dtype=dtype, device=cache.device)
    if cache.dtype == dtype:
        torch.index_select(cache, 0, slots, out=out[: len(slots)])
    else:
        out[: len(slots)] = cache[slots]
    out[len(slots) :].zero_()
    return out


def _mask(ctx: ForwardContext, q_first: int, rows: int, keys: int, window: int | None) -> torch.Tensor:
    """[rows, keys] bool (True = attend): causal on absolute positions, within the sliding window if any."""
    cache_key = ("invariant_mask", q_first, rows, keys, window)
    mask = ctx.cache.get(cache_key)
    if mask is None:
        q_pos = torch.arange(q_first, q_first + rows)[:, None]
        k_pos = torch.arange(keys)[None, :]
        mask = k_pos <= q_pos
        if window is not None:
            mask &= k_pos > q_pos - window
        mask = ctx.cache[cache_key] = mask.to(ctx.slot_mapping.device)
    return mask


def attend(layer, q: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
    """q [T, H, D] of a step whose K/V are in ``layer``'s cache → [T, H, D]."""
    out = torch.empty_like(q)
    for i, n_ctx in enumerate(ctx.context_lens):
        s, e = ctx.cu_seqlens_q[i], ctx.cu_seqlens_q[i + 1]
        first, prompt = n_ctx - (e - s), ctx.prompt_lens[i]
        # this sequence's keys and values, zero-padded past the last key any call below reads: [L, Hkv, D]
        length = max(_round_up(n_ctx, PROMPT_BLOCK), _round_up(n_ctx, KEY_BLOCK))
        slots = ctx.context_slots[i, :n_ctx]
        k = _gathered(layer.k_cache, slots, length, q.dtype)
        v = _gathered(layer.v_cache, slots, length, q.dtype)
        p = first
        while p < n_ctx:
            if p < prompt:  # the prompt rows of p's block that this step brings
                start = p // PROMPT_BLOCK * PROMPT_BLOCK
                stop = min(start + PROMPT_BLOCK, prompt, n_ctx)
                block = q.new_zeros(PROMPT_BLOCK, layer.num_heads, layer.head_dim)
                block[p - start : stop - start] = q[s + p - first : s + stop - first]
                keys = start + PROMPT_BLOCK
                result = _sdpa(
                    layer, block, k[:keys], v[:keys], _mask(ctx, start, PROMPT_BLOCK, keys, layer.sliding_window)
                )
                out[s + p - first : s + stop - first] = result[p - start : stop - start]
                p = stop
            else:  # a generated row, alone
                keys = _round_up(p + 1, KEY_BLOCK)
                row = q[s + p - first : s + p - first + 1]
                out[s + p - first] = _sdpa(
                    layer, row, k[:keys], v[:keys], _mask(ctx, p, 1, keys, layer.sliding_window)
                )[0]
                p += 1
    return out


def _sdpa(layer, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [rows, H, D], k/v [keys, Hkv, D] → [rows, H, D]."""
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1).unsqueeze(0),
        k.transpose(0, 1).unsqueeze(0),
        v.transpose(0, 1).unsqueeze(0),
        attn_mask=mask,
        scale=layer.scale,
        enable_gqa=layer.num_heads != layer.num_kv_heads,
    )
    return out.squeeze(0).transpose(0, 1)
