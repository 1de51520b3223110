"""Sampling with per-row temperature, top-k, top-p and min-p over the full vocabulary, without sorting it.

One program per row of logits [N, V] float32; it streams the row several times (a 262144-float row is 1 MiB):

1. one pass: the row's max and the softmax normaliser of the temperature-scaled logits (online), and the
   smallest and largest logit;
2. top-k (0 < k < V): the k-th largest logit, by a search over the order-preserving int32 image of the float
   bits ("keys"). Each pass counts the tokens at or above NUM_PIV pivots spread evenly over the current key
   interval [lo, hi) (a NUM_PIV-ary search: 32 bits in at most 11 passes, typically 5-7), then narrows the
   interval to the data actually inside it; it stops as soon as a pivot has exactly k tokens at or above it;
3. top-p (p < 1): the same search with each token weighted by its unnormalised probability, for the largest
   key t whose mass {key >= t} (among the top-k kept) still reaches p times the kept mass. Its first pass also
   gives the kept mass itself, which is all that is needed when top-k is on and top-p off;
4. min-p (> 0) keeps the tokens weighing at least min_p times the most likely one. The weights being
   exp2((x - max) * log2(e) / T), that is x >= max + T * ln(min_p): a threshold on the logits, raised to it
   when above the top-k / top-p one, and then one weighted pass for the kept mass;
5. the kept set is {key >= threshold}: either the renormalised probabilities are written, or the token is
   drawn by inverse CDF in vocabulary order (a blocked running sum: tl.cumsum in a block plus a carry),
   stopping at the block where the running sum first exceeds u * total.

Both searches only ever raise their lower bound lo, so once the tokens at or above it are known to be at
most CAP (exactly, from a count; or bounded by the previous pass's count at its lo), one pass copies them,
value and vocabulary index, in vocabulary order, to a per-row scratch, and every later pass, the draw
included, reads that instead of the row. A numpy model of the passes on 262144 Gaussian logits: ~5 reads of
the row with top-k (50 or 1000, with or without top-p), ~6 with top-p alone on a peaked distribution, ~10
with top-p alone on a flat one (tens of thousands of tokens kept: nothing to compact), 1.5 with neither.

The temperature never changes the order, so both searches run on the raw logits and only the weights
exp((x - max) / T) = exp2((x - max) * log2(e) / T) see it. Ties at a threshold are all kept (the reference
breaks them arbitrarily), and so is a token whose logit equals another's once divided by T but not before.
Nothing here reads a value back to the host: the call can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Globals a kernel reads must be constexpr.
LOG2E = tl.constexpr(1.4426950408889634)
INT32_MIN = tl.constexpr(-(2**31))
INT32_MAX = tl.constexpr(2**31 - 1)
# Pivots per search pass (a power of two: the [BLOCK_S, NUM_PIV] accumulator is a tensor). A pass costs ~3
# instructions per pivot and token (compare, select, add) against one 4-byte load; 8 pivots take 3 bits of the
# 32-bit key per pass and keep a pass near the speed of the row's reads from HBM.
NUM_PIV = 8
BLOCK_V = 4096  # tokens per step of the one-dimensional passes (max / normaliser, draw, probs)
BLOCK_S = 1024  # tokens per step of a search pass (its accumulator is BLOCK_S x NUM_PIV)
# Candidates per row: once the tokens at or above the search's lower bound are known to be this few, one pass
# copies them (value, vocabulary index) to a scratch [N, CAP] and every later pass, the draw included, reads
# those instead of the row: with top-k, or a peaked distribution under top-p, most passes become tiny.
CAP = 4096
NUM_WARPS = 8


@triton.jit
def _key(x):
    # float32 → int32 with the same order: sign-magnitude to two's complement (negative floats get their
    # magnitude bits flipped). -inf < ... < -0.0 < +0.0 < ... < +inf.
    b = x.to(tl.int32, bitcast=True)
    return b ^ ((b >> 31) & 0x7FFFFFFF)


@triton.jit
def _scan(src, n_src, piv, lo, hi, lmax, c, WEIGHTED: tl.constexpr, BLOCK_S: tl.constexpr, NUM_PIV: tl.constexpr):
    """One pass over the n_src logits at ``src`` (the row, or its candidates): for each pivot key [NUM_PIV] the
    count (or the unnormalised probability mass) of the tokens with key >= pivot; the smallest and the largest
    key inside [lo, hi); in weighted mode, how many tokens have key >= lo."""
    # Tokens go down axis 0 and the pivots across axis 1: loading [BLOCK_S, 1] keeps every pivot of a token in
    # the thread that loaded it, so the key and the weight are computed once per token.
    offs0 = tl.arange(0, BLOCK_S)[:, None]  # [BLOCK_S, 1]
    acc = tl.zeros([BLOCK_S, NUM_PIV], dtype=tl.float32)
    mn = tl.full([BLOCK_S, 1], INT32_MAX, tl.int32)
    mx = tl.full([BLOCK_S, 1], INT32_MIN, tl.int32)
    n_lo = tl.zeros([BLOCK_S, 1], dtype=tl.int32)
    for start in range(0, n_src, BLOCK_S):
        offs = start + offs0
        valid = offs < n_src
        x = tl.load(src + offs, mask=valid, other=float("-inf"))
        key = tl.where(valid, _key(x), INT32_MIN)  # padding sits below every pivot and every interval
        ge = key >= piv[None, :]  # [BLOCK_S, NUM_PIV]
        if WEIGHTED:
            w = tl.exp2((x - lmax) * c)
            acc += tl.where(ge, w, 0.0)
        else:
            acc += ge.to(tl.float32)  # counts stay exact in float32 up to 2^24 tokens
        above = key >= lo
        inside = above & (key < hi)
        mn = tl.minimum(mn, tl.where(inside, key, INT32_MAX))
        mx = tl.maximum(mx, tl.where(inside, key, INT32_MIN))
        if WEIGHTED:
            n_lo += above.to(tl.int32)
    f = tl.sum(acc, axis=0)
    key_min = tl.min(tl.min(mn, axis=1), axis=0)
    key_max = tl.max(tl.max(mx, axis=1), axis=0)
    return f, key_min, key_max, tl.sum(tl.sum(n_lo, axis=1), axis=0)


@triton.jit
def _compact(row_ptr, V, lo, CX, CI, CAP: tl.constexpr, BLOCK: tl.constexpr):
    """Copies the row's tokens with key >= lo (known to be at most CAP), value and vocabulary index, in
    vocabulary order, to CX / CI; returns their number."""
    offs0 = tl.arange(0, BLOCK)
    n_sel = 0
    for start in range(0, V, BLOCK):
        offs = start + offs0
        valid = offs < V
        x = tl.load(row_ptr + offs, mask=valid, other=float("-inf"))
        sel = valid & (_key(x) >= lo)
        pos = n_sel + tl.cumsum(sel.to(tl.int32), axis=0) - 1  # stream compaction: the slot of each token
        keep = sel & (pos < CAP)
        tl.store(CX + pos, x, mask=keep)
        tl.store(CI + pos, offs, mask=keep)
        n_sel += tl.sum(sel.to(tl.int32), axis=0)
    return n_sel


@triton.jit
def _search(
    src,
    n_src,
    on_cand,
    CX,
    CI,
    n_above,
    lo,
    hi,
    go,
    target,
    p,
    lmax,
    c,
    WEIGHTED: tl.constexpr,
    CAP: tl.constexpr,
    BLOCK_S: tl.constexpr,
    NUM_PIV: tl.constexpr,
):
    """The largest key t in [lo, hi) whose f(t) = count (or mass) of {key >= t} reaches ``target``, given
    f(lo) >= target > f(hi); lo, hi are int64 scalars, n_above (float) bounds the count of {key >= lo} from
    above. Returns (t, f(t) (+inf in count mode if no pass ran), src, n_src, on_cand): the logits to read from
    now on, switched to the candidates CX / CI once the tokens at or above lo fit there.

    Weighted mode: the first pass (``go`` forces it) also measures f(lo), the kept mass; the target then is
    p * f(lo), and p >= 1 stops right there."""
    j = tl.arange(0, NUM_PIV).to(tl.int64)
    lo_f = float("inf")
    n = 0
    while go:
        first = (n == 0) & WEIGHTED
        # Once the tokens at or above lo are known to fit, copy them out: lo only rises, so they serve every
        # later pass, and a pass over them is short. (Only ever from the row: then src is the row.)
        if (not on_cand) & (n_above <= CAP) & (n_above < n_src):
            n_src = _compact(src, n_src, lo.to(tl.int32), CX, CI, CAP, BLOCK_S)
            src = CX
            on_cand = n_src >= 0
        # The first weighted pass puts pivot 0 on lo itself (f(lo) is wanted); otherwise all pivots lie
        # strictly inside (lo, hi) once it is wider than NUM_PIV.
        s = tl.where(first, 0, 1).to(tl.int64)
        piv = lo + ((hi - lo) * (j + s)) // (NUM_PIV + s)
        f, mn, mx, n_lo = _scan(
            src, n_src, piv.to(tl.int32), lo.to(tl.int32), hi.to(tl.int32), lmax, c, WEIGHTED, BLOCK_S, NUM_PIV
        )
        # Weighted: f[0] = f(lo) on the first pass. The most likely token weighs 1, so flooring the target at
        # 1e-6 (p <= 0) keeps just it. With top-p off (p >= 1) nothing may go, not even tokens too light to
        # change the float32 mass: an infinite target moves no pivot but f(lo)'s.
        p_target = tl.maximum(p * tl.sum(tl.where(j == 0, f, 0.0), axis=0), 1e-6)
        target = tl.where(first, tl.where(p < 1.0, p_target, float("inf")), target)
        # f never increases along the pivots; f(lo) >= p * f(lo) even where rounding would say otherwise.
        ok = (f >= target) | (first & (j == 0))
        new_lo = tl.max(tl.where(ok, piv, lo), axis=0)
        new_hi = tl.min(tl.where(ok, hi, piv), axis=0)
        lo_f = tl.minimum(lo_f, tl.min(tl.where(ok, f, float("inf")), axis=0))
        # No token lies in [lo, mn) nor in (mx, hi): moving to them keeps both f(lo) and f(hi).
        lo = tl.maximum(new_lo, mn.to(tl.int64))
        hi = tl.minimum(new_hi, mx.to(tl.int64) + 1)
        # Exactly the target at lo (k tokens): removing any token from {key >= lo} falls short, so lo is final.
        hi = tl.where(lo_f == target, lo + 1, hi)
        hi = tl.where(first & (p >= 1.0), lo + 1, hi)  # top-p off: the kept mass was all that was wanted
        # The count at or above the new lo: exact in count mode, at most the count at the old lo otherwise.
        if WEIGHTED:
            n_above = tl.minimum(n_above, n_lo.to(tl.float32))
        else:
            n_above = lo_f
        n += 1
        go = hi - lo > 1
    return lo, lo_f, src, n_src, on_cand


@triton.jit
def _sampling_kernel(
    LOGITS,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    MIN_P,
    UNIFORM,
    TOKENS,
    PROBS,
    CAND_X,
    CAND_I,
    V,
    stride_l,
    stride_p,
    WRITE_PROBS: tl.constexpr,
    CAP: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_S: tl.constexpr,
    NUM_PIV: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_ptr = LOGITS + row * stride_l
    cx = CAND_X + row * CAP
    ci = CAND_I + row * CAP
    c = LOG2E / tl.load(TEMPERATURE + row)  # exp(x / T - m / T) = exp2((x - m) * c)
    top_k = tl.load(TOP_K + row)
    top_p = tl.load(TOP_P + row)
    offs0 = tl.arange(0, BLOCK_V)

    # 1. max, softmax normaliser (relative to the running max), smallest and largest key.
    m = float("-inf")
    z = 0.0
    kmin = tl.full([BLOCK_V], INT32_MAX, tl.int32)
    kmax = tl.full([BLOCK_V], INT32_MIN, tl.int32)
    for start in range(0, V, BLOCK_V):
        offs = start + offs0
        valid = offs < V
        x = tl.load(row_ptr + offs, mask=valid, other=float("-inf"))
        key = _key(x)
        kmin = tl.minimum(kmin, tl.where(valid, key, INT32_MAX))
        kmax = tl.maximum(kmax, tl.where(valid, key, INT32_MIN))
        m_new = tl.maximum(m, tl.max(x, axis=0))
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # all -inf so far: every weight is 0, not NaN
        z = z * tl.exp2((m - m_ref) * c) + tl.sum(tl.exp2((x - m_ref) * c), axis=0)
        m = m_new
    lo = tl.min(kmin, axis=0).to(tl.int64)
    hi = tl.max(kmax, axis=0).to(tl.int64) + 1

    # 2. top-k: the k-th largest key (count mode). Off (k <= 0 or k >= V): the threshold stays the row's min.
    k_on = (top_k > 0) & (top_k < V)
    # Loop-carried below: tensors even where the launch turned V into a constant (V = 1).
    n_src = tl.zeros([], tl.int32) + V
    on_cand = tl.zeros([], tl.int32) != 0
    n_all = n_src.to(tl.float32)
    thr, n_kept, src, n_src, on_cand = _search(
        row_ptr, n_src, on_cand, cx, ci, n_all, lo, hi, k_on & (hi - lo > 1), top_k.to(tl.float32), top_p, m, c,
        False, CAP, BLOCK_S, NUM_PIV,
    )  # fmt: skip

    # 3. top-p over the top-k kept (weighted mode), which also yields the kept mass.
    p_on = top_p < 1.0
    no_target = tl.zeros([], tl.float32)  # set by the first pass
    thr, kept, src, n_src, on_cand = _search(
        src, n_src, on_cand, cx, ci, tl.minimum(n_kept, n_all), thr, hi, k_on | p_on, no_target, top_p, m, c,
        True, CAP, BLOCK_S, NUM_PIV,
    )  # fmt: skip
    total = tl.where(k_on | p_on, kept, z)

    # 4. min-p: the cut on the logits, kept when above the top-k / top-p one; then the mass of what is left.
    min_p = tl.load(MIN_P + row)
    cut = _key(m + tl.log2(tl.maximum(min_p, 1e-30)) / c).to(tl.int64)
    raise_cut = (min_p > 0.0) & (cut > thr)
    thr = tl.where(raise_cut, cut, thr)
    p_off = tl.full([], 1.0, tl.float32)  # weighted mode with top-p off: one pass, for the mass at thr
    thr, kept, src, n_src, on_cand = _search(
        src, n_src, on_cand, cx, ci, tl.minimum(n_kept, n_all), thr, hi, raise_cut, no_target, p_off, m, c,
        True, CAP, BLOCK_S, NUM_PIV,
    )  # fmt: skip
    total = tl.where(raise_cut, kept, total)
    thr = thr.to(tl.int32)

    if WRITE_PROBS:
        # 5a. the kept, renormalised distribution, over the whole row.
        inv_total = 1.0 / total
        out_ptr = PROBS + row * stride_p
        for start in range(0, V, BLOCK_V):
            offs = start + offs0
            valid = offs < V
            x = tl.load(row_ptr + offs, mask=valid, other=float("-inf"))
            w = tl.where(_key(x) >= thr, tl.exp2((x - m) * c), 0.0)
            tl.store(out_ptr + offs, w * inv_total, mask=valid)
    else:
        # 5b. inverse-CDF draw in vocabulary order (the candidates keep it): the first token whose running sum
        # exceeds u * total.
        target = tl.load(UNIFORM + row) * total
        carry = 0.0
        token = -1
        last = -1  # the last token with a positive weight: the answer when rounding leaves u * total above all
        start = 0
        while start < n_src:
            offs = start + offs0
            valid = offs < n_src
            x = tl.load(src + offs, mask=valid, other=float("-inf"))
            idx = tl.where(on_cand, tl.load(ci + offs, mask=valid & on_cand, other=0), offs)  # vocabulary ids
            w = tl.where(valid & (_key(x) >= thr), tl.exp2((x - m) * c), 0.0)
            cdf = carry + tl.cumsum(w, axis=0)
            first = tl.min(tl.where(valid & (cdf > target), idx, INT32_MAX), axis=0)
            last = tl.maximum(last, tl.max(tl.where(w > 0.0, idx, -1), axis=0))
            carry += tl.sum(w, axis=0)
            token = tl.where((token < 0) & (first < INT32_MAX), first, token)
            start = tl.where(token >= 0, n_src, start + BLOCK_V)  # found: leave the loop
        token = tl.where(token >= 0, token, last)
        tl.store(TOKENS + row, token.to(tl.int64))


def _launch(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    min_p: torch.Tensor | None,
    uniform: torch.Tensor | None,
    block_v: int | None,
    block_s: int | None,
    cap: int | None,
) -> torch.Tensor:
    assert logits.dim() == 2 and logits.dtype == torch.float32, (logits.shape, logits.dtype)
    n, v = logits.shape
    checked = (("temperature", temperature), ("top_k", top_k), ("top_p", top_p), ("min_p", min_p), ("uniform", uniform))
    for name, t in checked:
        assert t is None or t.shape == (n,), (name, t.shape, n)
    if logits.stride(1) != 1:
        logits = logits.contiguous()
    dev = logits.device
    temperature = temperature.to(device=dev, dtype=torch.float32).contiguous()
    top_k = top_k.to(device=dev, dtype=torch.int32).contiguous()
    top_p = top_p.to(device=dev, dtype=torch.float32).contiguous()
    if min_p is None:
        min_p = torch.zeros(n, device=dev, dtype=torch.float32)
    min_p = min_p.to(device=dev, dtype=torch.float32).contiguous()
    write_probs = uniform is None
    if write_probs:
        out = torch.empty((n, v), device=dev, dtype=torch.float32)
        uniform, tokens, stride_p = temperature, out, v  # UNIFORM / TOKENS unused
    else:
        out = torch.empty(n, device=dev, dtype=torch.int64)
        uniform = uniform.to(device=dev, dtype=torch.float32).contiguous()
        tokens, stride_p = out, 0
    if n == 0 or v == 0:
        return out
    block_v = block_v or min(BLOCK_V, triton.next_power_of_2(v))
    block_s = block_s or min(BLOCK_S, triton.next_power_of_2(v))
    cap = cap or CAP
    cand_x = torch.empty((n, cap), device=dev, dtype=torch.float32)
    cand_i = torch.empty((n, cap), device=dev, dtype=torch.int32)
    _sampling_kernel[(n,)](
        logits, temperature, top_k, top_p, min_p, uniform, tokens, out, cand_x, cand_i, v, logits.stride(0), stride_p,
        WRITE_PROBS=write_probs, CAP=cap, BLOCK_V=block_v, BLOCK_S=block_s, NUM_PIV=NUM_PIV, num_warps=NUM_WARPS,
    )  # fmt: skip
    return out


def top_k_top_p_sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    uniform: torch.Tensor,
    *,
    min_p: torch.Tensor | None = None,
    block_v: int | None = None,
    block_s: int | None = None,
    cap: int | None = None,
) -> torch.Tensor:
    """logits [N, V] float32 (finite or -inf); per row temperature [N] (> 0: greedy rows are the caller's
    argmax), top_k [N] int (<= 0 or >= V: off), top_p [N] (>= 1: off; <= 0 keeps the most likely token only),
    uniform [N] in [0, 1) and min_p [N] (<= 0 or None: off) → sampled token ids [N] int64; -1 for a row
    without a finite logit.

    The draw is the inverse CDF of ``top_k_top_p_probs`` in vocabulary order: the first token whose cumulative
    probability exceeds u (the last kept one if rounding leaves u above the total), as
    ``reference.sample_from_probs``. ``block_v``, ``block_s`` (tokens per step of the plain and the search
    passes) and ``cap`` (candidates kept per row once the search has narrowed down to them), powers of two,
    exist for the tests."""
    return _launch(logits, temperature, top_k, top_p, min_p, uniform, block_v, block_s, cap)


def top_k_top_p_probs(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    *,
    min_p: torch.Tensor | None = None,
    block_v: int | None = None,
    block_s: int | None = None,
    cap: int | None = None,
) -> torch.Tensor:
    """The distribution ``top_k_top_p_sample`` draws from: logits [N, V] float32 and the per-row settings [N]
    → [N, V] float32, softmax(logits / T) restricted to the kept tokens and renormalised (zero elsewhere).

    top-k keeps every token whose logit is at least the k-th largest; top-p then keeps the smallest set of
    the most likely tokens whose mass reaches p (the most likely always stays); min-p then keeps the tokens
    at least min_p times as likely as the most likely one; tokens tied at a threshold are all kept.
    ``block_v``, ``block_s``, ``cap``: as ``top_k_top_p_sample``."""
    return _launch(logits, temperature, top_k, top_p, min_p, None, block_v, block_s, cap)
