"""PyTorch references of every kernel in ``kernels/``: the tests compare against them, the benchmarks time
them as the eager baseline, and the CPU path of the inference service is built from the same maths.

Conventions shared with the kernels:
- activations are [T, ...] flat batches (T tokens of S sequences, ``cu_seqlens`` offsets);
- the paged KV cache of one layer is [num_blocks * block_size, num_kv_heads, head_dim] (a flat slot
  axis, slot = block * block_size + offset), with ``block_tables`` [S, max_blocks] int32 per sequence;
- reductions (norms, softmax, dot products) run in float32 and results are cast to the input dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# the block layouts live with the kernels that read them; the tests and benchmarks read them here too
from kernels.gguf_blocks import GGUF_BLOCKS, GGUF_HALF_FIELDS  # noqa: F401

# --- norms -----------------------------------------------------------------------------------------


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    gemma: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [T, D] (optionally + residual [T, D] first) → RMSNorm(x) [T, D], in x.dtype.

    Llama convention: ``weight * norm(x).to(dtype)``. Gemma convention (``gemma=True``): the weight is
    zero-centred and the product stays in float32, ``(norm(x) * (1 + weight)).to(dtype)``.
    With ``residual``, returns ``(out, x + residual)``: the sum (in x.dtype) is the next residual, the
    fused add of a pre-norm decoder layer.
    """
    if residual is not None:
        x = x + residual
    normed = F.rms_norm(x.float(), (x.shape[-1],), None, eps)
    if gemma:
        out = (normed * (1.0 + weight.float())).to(x.dtype)
    else:
        out = weight * normed.to(x.dtype)
    return (out, x) if residual is not None else out


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """BERT's LayerNorm: x [T, D] → [T, D], statistics in float32."""
    return F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)


# --- rotary ----------------------------------------------------------------------------------------


def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """HF's rotate-half rotary: q [T, H, D], k [T, Hkv, D], positions [T] int, inv_freq [D/2] float32 (the
    layer's own base and scaling: Gemma 3's local and global layers differ) → rotated (q, k), in float32
    maths, cast back to the inputs' dtype. ``scale`` multiplies cos and sin (yarn's attention factor)."""
    freqs = positions.float()[:, None] * inv_freq.float()[None, :]  # [T, D/2]
    cos, sin = (freqs.cos() * scale)[:, None, :], (freqs.sin() * scale)[:, None, :]  # [T, 1, D/2]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)


# --- activations -----------------------------------------------------------------------------------


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Elementwise GELU of any shape, computed in float32: exact (erf, HF "gelu") for ``approximate="none"``,
    the tanh approximation (HF "gelu_pytorch_tanh" / "gelu_new") for ``"tanh"``. Written out from the
    definitions (the tests check it against ``F.gelu``)."""
    xf = x.float()
    if approximate == "none":
        return (0.5 * xf * (1.0 + torch.erf(xf * math.sqrt(0.5)))).to(x.dtype)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (xf + 0.044715 * xf.pow(3))
        return (0.5 * xf * (1.0 + torch.tanh(inner))).to(x.dtype)
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """Elementwise QuickGELU of any shape (HF "quick_gelu", CLIP): x * sigmoid(1.702 x), computed in float32."""
    xf = x.float()
    return (xf * torch.sigmoid(1.702 * xf)).to(x.dtype)


# --- gated activations -----------------------------------------------------------------------------


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [T, 2I] = [gate, up] → silu(gate) * up [T, I], computed in float32."""
    gate, up = x.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(x.dtype)


def gelu_tanh_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [T, 2I] = [gate, up] → gelu_tanh(gate) * up [T, I] (Gemma's MLP), computed in float32."""
    gate, up = x.float().chunk(2, dim=-1)
    return (F.gelu(gate, approximate="tanh") * up).to(x.dtype)


# --- mixture of experts ---------------------------------------------------------------------------


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    activation: str = "silu",
    intermediate_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """x [T, H], w13 [E, 2I, H] (each expert's gate rows then up rows), w2 [E, H, I], weights / ids [T, k] (the
    router's choice) → [T, H] in x.dtype: sum_j weights[t, j] * w2[e] @ act(gate_e x_t) * (up_e x_t), e = ids[t, j].
    ``intermediate_dtype``: round act(gate) * up to it, as the kernels store it (in their activations' dtype).

    The T*k (token, expert) pairs sorted by expert: each expert with tokens runs once over all of its rows (one
    matmul, not one per token), each row scaled by its routing weight in float32; a token's k rows are summed in
    float32 in the router's order, so a token's answer does not depend on the others."""
    act = gelu_tanh_and_mul if activation == "gelu_tanh" else silu_and_mul
    T, k = ids.shape
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)  # pair indices t*k + j grouped by expert
    counts = torch.bincount(flat, minlength=w13.shape[0]).tolist()
    scale = weights.reshape(-1).float()
    rows = torch.zeros(T * k, x.shape[1], dtype=torch.float32, device=x.device)
    start = 0
    for expert, count in enumerate(counts):
        if count:
            pairs = order[start : start + count]
            hidden = act(x[pairs // k] @ w13[expert].t())  # [n, I]
            if intermediate_dtype is not None:
                hidden = hidden.to(intermediate_dtype).to(x.dtype)
            rows[pairs] = (hidden @ w2[expert].t()).float() * scale[pairs, None]
            start += count
    return rows.view(T, k, -1).sum(dim=1).to(x.dtype)


def fused_moe_gguf(
    x: torch.Tensor,
    gate: tuple[torch.Tensor, str],
    up: tuple[torch.Tensor, str],
    down: tuple[torch.Tensor, str],
    weights: torch.Tensor,
    ids: torch.Tensor,
    activation: str = "silu",
) -> torch.Tensor:
    """``fused_moe`` on GGUF-quantized experts: ``gate`` / ``up`` ([E, I, H / bw * bb] uint8, type) and ``down``
    ([E, H, I / bw * bb] uint8, type) as llama.cpp stacks them, dequantized (``dequantize``) and rounded to x's
    dtype (the operand the kernels give tensor cores), then ``fused_moe`` in float32 with the intermediate rounded
    to x's dtype (as the kernels store it); the result in x.dtype."""

    def dense(blocks: torch.Tensor, qtype: str) -> torch.Tensor:  # [E, rows, K] float32, x.dtype's values
        w = dequantize(blocks.reshape(-1, blocks.shape[-1]), qtype).view(*blocks.shape[:2], -1)
        return w.to(x.dtype).float()

    w13 = torch.cat([dense(*gate), dense(*up)], dim=1)
    return fused_moe(x.float(), w13, dense(*down), weights, ids, activation, x.dtype).to(x.dtype)


# --- KV cache --------------------------------------------------------------------------------------


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """In place: k/v [T, Hkv, D] into the caches [slots, Hkv, D] at ``slot_mapping`` [T]; a negative slot
    (padding in a CUDA-graph batch) is skipped."""
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    k_cache[slots] = k[keep].to(k_cache.dtype)
    v_cache[slots] = v[keep].to(v_cache.dtype)


# --- attention -------------------------------------------------------------------------------------


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    scale: float,
    causal: bool,
    sliding_window: int | None,
    alibi_slopes: torch.Tensor | None = None,
) -> torch.Tensor:
    """One sequence: q [n, H, D], k/v [m, Hkv, D], absolute positions → [n, H, D], softmax in float32.
    ``alibi_slopes`` [H]: symmetric ALiBi, -slope_h * |q_pos - k_pos| added to head h's scores."""
    group = q.shape[1] // k.shape[1]
    k = k.float().repeat_interleave(group, dim=1)
    v = v.float().repeat_interleave(group, dim=1)
    scores = torch.einsum("nhd,mhd->hnm", q.float(), k) * scale
    diff = q_pos[:, None] - k_pos[None, :]
    if alibi_slopes is not None:
        scores = scores - alibi_slopes.float()[:, None, None] * diff.abs().float()
    allowed = torch.ones_like(diff, dtype=torch.bool)
    if causal:
        allowed &= diff >= 0
    if sliding_window is not None:
        allowed &= diff < sliding_window
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row that sees nothing attends to nothing
    return torch.einsum("hnm,mhd->nhd", probs, v).to(q.dtype)


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    scale: float,
    causal: bool = True,
    sliding_window: int | None = None,
    alibi_slopes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prefill over contiguous K/V: q [Tq, H, D], k/v [Tk, Hkv, D] (H a multiple of Hkv: GQA). Sequence i
    has queries ``cu_seqlens_q[i]:[i+1]`` and keys ``cu_seqlens_k[i]:[i+1]``; its queries are its last
    positions (query j of n sits at position m - n + j of m keys). ``causal=False`` for encoders;
    ``alibi_slopes`` [H]: symmetric ALiBi (JinaBERT), -slope_h * |q_pos - k_pos| on head h's scores."""
    out = torch.empty_like(q)
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for i in range(len(cq) - 1):
        n, m = cq[i + 1] - cq[i], ck[i + 1] - ck[i]
        k_pos = torch.arange(m, device=q.device)
        q_pos = k_pos[m - n :] if n <= m else torch.arange(n, device=q.device)
        out[cq[i] : cq[i + 1]] = _attend(
            q[cq[i] : cq[i + 1]], k[ck[i] : ck[i + 1]], v[ck[i] : ck[i + 1]], q_pos, k_pos, scale, causal,
            sliding_window, alibi_slopes,
        )  # fmt: skip
    return out


def gather_paged(cache: torch.Tensor, block_table: torch.Tensor, length: int, block_size: int) -> torch.Tensor:
    """The first ``length`` positions of one sequence from a paged cache [slots, Hkv, D] → [length, Hkv, D]."""
    pos = torch.arange(length, device=cache.device)
    slots = block_table.long()[pos // block_size] * block_size + pos % block_size
    return cache[slots]


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """Causal attention of new tokens over the paged cache (their own K/V already stored): q [T, H, D];
    sequence i has queries ``cu_seqlens_q[i]:[i+1]``, the last positions of its ``context_lens[i]``
    cached tokens, read through ``block_tables[i]``. Chunked prefill and decode (one query each) alike."""
    out = torch.empty_like(q)
    cq, lens = cu_seqlens_q.tolist(), context_lens.tolist()
    for i in range(len(lens)):
        n, m = cq[i + 1] - cq[i], lens[i]
        if m == 0:  # a padding row of a CUDA-graph batch: nothing to attend to
            out[cq[i] : cq[i + 1]] = 0
            continue
        k = gather_paged(k_cache, block_tables[i], m, block_size)
        v = gather_paged(v_cache, block_tables[i], m, block_size)
        k_pos = torch.arange(m, device=q.device)
        out[cq[i] : cq[i + 1]] = _attend(q[cq[i] : cq[i + 1]], k, v, k_pos[m - n :], k_pos, scale, True, sliding_window)
    return out


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    block_size: int,
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """One query per sequence: q [S, H, D] at position ``context_lens[i] - 1`` → [S, H, D]."""
    cu = torch.arange(q.shape[0] + 1, device=q.device)
    return paged_attention(q, k_cache, v_cache, block_tables, cu, context_lens, block_size, scale, sliding_window)


# --- GGUF block quantization -----------------------------------------------------------------------

QK_K = 256


def _f16(raw: torch.Tensor) -> torch.Tensor:
    """[..., 2] uint8 little-endian halves → [...] float32."""
    return raw.contiguous().view(torch.float16).squeeze(-1).float()


def dequantize(blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    """GGUF blocks as stored, [N, K / block_weights * block_bytes] uint8 (one row per output feature) →
    [N, K] float32, operation for operation as ``gguf.quants`` (and so bit for bit)."""
    weights, nbytes = GGUF_BLOCKS[qtype]
    n = blocks.shape[0]
    b = blocks.reshape(-1, nbytes)
    if qtype == "Q8_0":
        d = _f16(b[:, :2])[:, None]
        x = b[:, 2:].contiguous().view(torch.int8).float()
        out = x * d
    elif qtype in ("Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        # [d fp16][m fp16: _1 types][qh: 32 high bits, _5 types][16 bytes: weight j low nibble, j + 16 high]
        d = _f16(b[:, 0:2])[:, None]
        off = 4 if qtype.endswith("_1") else 2
        if qtype.startswith("Q5"):
            shifts = torch.arange(8, dtype=torch.uint8, device=b.device)
            high = ((b[:, off : off + 4, None] >> shifts) & 1).reshape(-1, 32)  # bit j of the little-endian u32
            off += 4
        else:
            high = torch.zeros((b.shape[0], 32), dtype=torch.uint8, device=b.device)
        qs = b[:, off:]
        q = torch.cat([qs & 0x0F, qs >> 4], dim=1) | (high << 4)  # [B, 32]
        if qtype.endswith("_0"):  # symmetric: q - 8 (4 bits) or q - 16 (5 bits), as int8
            q = q.view(torch.int8) - (8 if qtype == "Q4_0" else 16)
            out = d * q.float()
        else:  # (d * q) + m: two roundings, as numpy
            out = d * q.float() + _f16(b[:, 2:4])[:, None]
    elif qtype == "Q4_K":
        d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
        sc, m = q4k_scale_min(b[:, 4:16])
        d_sc = (d[:, None] * sc.float())[:, :, None]  # [B, 8, 1]
        dm = (dmin[:, None] * m.float())[:, :, None]
        shifts = torch.tensor([0, 4], dtype=torch.uint8, device=b.device).view(1, 1, 2, 1)
        q = ((b[:, 16:].reshape(-1, 4, 1, 32) >> shifts) & 0x0F).reshape(-1, 8, 32).float()
        out = d_sc * q - dm
    elif qtype == "Q6_K":
        ql, qh, scales, d = b[:, :128], b[:, 128:192], b[:, 192:208], _f16(b[:, 208:210])
        d_sc = (d[:, None] * scales.contiguous().view(torch.int8).float()).reshape(-1, 16, 1)
        shifts = torch.tensor([0, 4], dtype=torch.uint8, device=b.device).view(1, 1, 2, 1)
        lo = ((ql.reshape(-1, 2, 1, 64) >> shifts) & 0x0F).reshape(-1, 8, 32)
        shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=b.device).view(1, 1, 4, 1)
        hi = ((qh.reshape(-1, 2, 1, 32) >> shifts) & 0x03).reshape(-1, 8, 32)
        q = ((lo | (hi << 4)).view(torch.int8) - 32).reshape(-1, 16, 16).float()
        out = d_sc * q
    else:
        raise ValueError(f"GGUF type {qtype!r} is not supported (supported: {', '.join(GGUF_BLOCKS)})")
    return out.reshape(n, -1)


def q4k_scale_min(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K's 12 packed bytes per block → (scales, mins), each [B, 8] uint8 (6 bits each)."""
    s = scales.reshape(-1, 3, 4)
    d, m, m_d = s[:, 0], s[:, 1], s[:, 2]
    sc = torch.cat([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    mn = torch.cat([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return sc, mn


def quant_matmul(x: torch.Tensor, blocks: torch.Tensor, qtype: str) -> torch.Tensor:
    """x [M, K] @ dequantize(blocks) [N, K] transposed → [M, N] in x.dtype, accumulated in float32."""
    return (x.float() @ dequantize(blocks, qtype).T).to(x.dtype)


# --- sampling --------------------------------------------------------------------------------------


def top_k_top_p_probs(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor | None = None,
):
    """logits [N, V] float32, per row temperature (> 0), top_k (0: off), top_p (1: off) and min_p (0: off) [N]
    → the renormalised sampling distribution [N, V] float32 (zero outside the kept set).

    top-k keeps every token whose logit is at least the k-th largest; top-p then keeps the smallest set of
    the most likely tokens whose mass reaches p (the first token always stays), as in vLLM; min-p then keeps
    the tokens at least min_p times as likely as the most likely one."""
    scaled = logits / temperature[:, None]
    out = torch.empty_like(scaled)
    for i in range(scaled.shape[0]):
        row = scaled[i]
        k = int(top_k[i])
        if 0 < k < row.shape[0]:
            row = row.masked_fill(row < torch.topk(row, k).values[-1], float("-inf"))
        probs = row.softmax(-1)
        p = float(top_p[i])
        if p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            drop = (sorted_probs.cumsum(-1) - sorted_probs) >= p
            drop[0] = False  # p <= 0 keeps the most likely token only
            probs = probs.scatter(0, order, sorted_probs.masked_fill(drop, 0.0))
            probs = probs / probs.sum()
        mp = 0.0 if min_p is None else float(min_p[i])
        if mp > 0.0:
            probs = probs.masked_fill(probs < mp * probs.max(), 0.0)
            probs = probs / probs.sum()
        out[i] = probs
    return out


def sample_from_probs(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw in vocabulary order: for each row the first token whose cumulative probability
    exceeds ``uniform`` [N] in [0, 1) → [N] int64 (the last kept token if rounding leaves u above the sum)."""
    cdf = probs.double().cumsum(-1)
    u = uniform.double()[:, None] * cdf[:, -1:]
    idx = (cdf <= u).sum(-1)
    last_kept = probs.shape[1] - 1 - (probs > 0).flip(-1).int().argmax(-1)
    return torch.minimum(idx, last_kept)
