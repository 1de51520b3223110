"""kernels.decode_attention against reference.decode_attention: GQA ratios, head_dims, ragged contexts, block
sizes, sliding windows, split counts, padding rows, strided queries and a reused workspace.

The kernel sees caches where every slot it must not read (unused table entries, the tail of a sequence's last
block, positions before its window) holds NaN, while the reference reads clean ones: a single stray read
would turn the output into NaN."""

from __future__ import annotations

import pytest
import torch

from kernels import decode_attention as da
from kernels import launch, reference
from tests.support.kernel_cases import DEVICE, DTYPES, shapes


def _lens(n: int, high: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, high + 1, (n,), generator=g).tolist()


def make_case(num_heads, num_kv_heads, head_dim, block_size, context_lens, window, dtype, seed=0):
    """Shuffled block tables (one spare column), clean caches for the reference, poisoned ones for the kernel."""
    g = torch.Generator().manual_seed(seed)
    S = len(context_lens)
    used = [-(-n // block_size) for n in context_lens]
    max_blocks = max(used) + 1
    num_blocks = sum(used) + 2  # + a block nobody owns: the target of every unused table entry
    order = torch.randperm(num_blocks, generator=g).tolist()
    spare = order.pop()
    tables = torch.full((S, max_blocks), spare, dtype=torch.int32)
    visible = torch.zeros(num_blocks * block_size, dtype=torch.bool)
    for i, n in enumerate(context_lens):
        blocks = [order.pop() for _ in range(used[i])]
        tables[i, : used[i]] = torch.tensor(blocks, dtype=torch.int32)
        start = max(n - window, 0) if window is not None else 0
        pos = torch.arange(start, n)
        visible[tables[i].long()[pos // block_size] * block_size + pos % block_size] = True

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(dtype).to(DEVICE)

    q = rand(S, num_heads, head_dim)
    k_cache = rand(num_blocks * block_size, num_kv_heads, head_dim)
    v_cache = rand(num_blocks * block_size, num_kv_heads, head_dim)
    keep = visible.to(DEVICE)[:, None, None]
    k_poisoned = k_cache.masked_fill(~keep, float("nan"))
    v_poisoned = v_cache.masked_fill(~keep, float("nan"))
    lens = torch.tensor(context_lens, dtype=torch.int32, device=DEVICE)
    return q, (k_cache, v_cache), (k_poisoned, v_poisoned), tables.to(DEVICE), lens


# (num_heads, num_kv_heads, head_dim, block_size, context_lens, sliding_window, num_splits)
CASES = shapes(
    small=[
        pytest.param(2, 2, 32, 16, [1, 17, 40], None, 1, id="mha-d32-1split"),
        pytest.param(1, 1, 32, 5, [9], None, 2, id="one-head"),
        pytest.param(4, 2, 64, 5, [2, 130, 17], None, 3, id="gqa2-d64-bs5-3splits"),
        pytest.param(8, 2, 48, 16, [33, 1, 7, 90], 16, 2, id="gqa4-d48-window16"),
        pytest.param(8, 1, 256, 5, [40, 3, 1], 3, 4, id="gqa8-d256-bs5-window3"),
        pytest.param(16, 1, 80, 16, [70, 20], None, 2, id="gqa16-d80"),
        pytest.param(3, 3, 64, 16, [5, 140], 1000, 5, id="mha-window-beyond-contexts"),
        pytest.param(4, 1, 32, 5, [150, 37], 40, 8, id="gqa4-window40-more-splits-than-tiles"),
        pytest.param(6, 2, 32, 16, [1, 2, 17, 40], None, None, id="default-splits"),
    ],
    real=[
        pytest.param(32, 8, 128, 16, [4096], None, None, id="llama8b-b1-4096"),
        pytest.param(32, 8, 128, 16, [1, 100, 511, 1024, 2047, 3000, 4000, 4096], None, None, id="llama8b-b8"),
        pytest.param(32, 8, 128, 16, _lens(64, 4096, 1), None, None, id="llama8b-b64"),
        pytest.param(32, 8, 128, 16, _lens(64, 4096, 2), None, 1, id="llama8b-b64-1split"),
        pytest.param(14, 2, 64, 16, _lens(8, 4096, 3), None, None, id="qwen2-0.5b-b8"),
        pytest.param(9, 3, 64, 16, _lens(8, 2048, 4), None, None, id="smollm2-135m-b8"),
        pytest.param(4, 1, 256, 16, [4096], 512, None, id="gemma3-local-b1"),
        pytest.param(4, 1, 256, 16, _lens(64, 4096, 5), 512, None, id="gemma3-local-b64"),
        pytest.param(4, 1, 256, 16, _lens(8, 4096, 6), None, None, id="gemma3-global-b8"),
    ],
)


@pytest.mark.parametrize("dtype, atol, rtol", DTYPES)
@pytest.mark.parametrize("num_heads, num_kv_heads, head_dim, block_size, context_lens, window, num_splits", CASES)
def test_matches_reference(
    num_heads, num_kv_heads, head_dim, block_size, context_lens, window, num_splits, dtype, atol, rtol
):
    q, (kc, vc), (kp, vp), tables, lens = make_case(
        num_heads, num_kv_heads, head_dim, block_size, context_lens, window, dtype
    )
    scale = head_dim**-0.5
    out = da.decode_attention(q, kp, vp, tables, lens, block_size, scale, window, num_splits=num_splits)
    expected = reference.decode_attention(q, kc, vc, tables, lens, block_size, scale, window)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("tiles", [(16, 2, 1), (128, 8, 3)], ids=["16pos-2warps-1stage", "128pos-8warps-3stages"])
@pytest.mark.parametrize("num_splits", [1, 3])
def test_forced_tiles(tiles, num_splits):
    """The tiles benchmarks/bench_tune.py sweeps on a GPU: fewer and more positions a step than a block (16) and
    than the shortest context, GQA 4 with a window, ragged contexts."""
    q, (kc, vc), (kp, vp), tables, lens = make_case(8, 2, 64, 16, [1, 37, 150], 40, torch.float32, seed=tiles[0])
    out = da.decode_attention(q, kp, vp, tables, lens, 16, 0.125, 40, num_splits=num_splits, tiles=tiles)
    expected = reference.decode_attention(q, kc, vc, tables, lens, 16, 0.125, 40)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_splits", [1, 3])
@pytest.mark.parametrize("window", [None, 4])
def test_padding_rows_are_zero(num_splits, window):
    # Context 0: the padding rows of a CUDA-graph batch. The reference cannot take them (it has no position
    # for the query), so the real rows are checked against it on their own.
    context_lens = [0, 9, 0, 33]
    q, (kc, vc), (kp, vp), tables, lens = make_case(4, 2, 32, 5, context_lens, window, torch.float32)
    out = da.decode_attention(q, kp, vp, tables, lens, 5, 0.2, window, num_splits=num_splits)
    assert torch.equal(out[[0, 2]], torch.zeros_like(out[[0, 2]]))
    rows = [1, 3]
    expected = reference.decode_attention(q[rows], kc, vc, tables[rows], lens[rows], 5, 0.2, window)
    torch.testing.assert_close(out[rows], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["fused-qkv", "head-major", "strided-dim"])
@pytest.mark.parametrize("num_splits", [1, 2])
def test_strided_query(layout, num_splits):
    S, H, hkv, D = 3, 4, 2, 64
    q, (kc, vc), (kp, vp), tables, lens = make_case(H, hkv, D, 16, [5, 40, 21], None, torch.float16)
    if layout == "fused-qkv":  # q as the first columns of a fused qkv projection: row stride (H + 2 Hkv) * D
        qkv = torch.randn(S, (H + 2 * hkv) * D, device=DEVICE).to(q.dtype)
        qkv[:, : H * D] = q.reshape(S, H * D)
        view = qkv[:, : H * D].view(S, H, D)
    elif layout == "head-major":
        view = q.transpose(0, 1).contiguous().transpose(0, 1)
    else:  # element stride 2 along head_dim
        wide = torch.zeros(S, H, 2 * D, device=DEVICE, dtype=q.dtype)
        wide[..., ::2] = q
        view = wide[..., ::2]
    assert not view.is_contiguous() and torch.equal(view, q)
    out = da.decode_attention(view, kp, vp, tables, lens, 16, D**-0.5, num_splits=num_splits)
    expected = reference.decode_attention(q, kc, vc, tables, lens, 16, D**-0.5)
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=2e-3)


def test_workspace_reused():
    # One NaN-filled buffer, larger than needed, serves calls with other lengths and split counts: every
    # partial the merge reads must have been written by this call.
    H, hkv, D = 4, 2, 32
    workspace = torch.full((da.decode_workspace_numel(4, H, D, 6) + 7,), float("nan"), device=DEVICE)
    for context_lens, num_splits in [([30, 1, 70], 6), ([3, 50], 2), ([0, 64], 4)]:
        q, (kc, vc), (kp, vp), tables, lens = make_case(H, hkv, D, 16, context_lens, None, torch.float32, seed=1)
        out = da.decode_attention(q, kp, vp, tables, lens, 16, 0.3, num_splits=num_splits, workspace=workspace)
        fresh = da.decode_attention(q, kp, vp, tables, lens, 16, 0.3, num_splits=num_splits)
        torch.testing.assert_close(out, fresh, atol=0, rtol=0)
        rows = [i for i, n in enumerate(context_lens) if n > 0]
        expected = reference.decode_attention(q[rows], kc, vc, tables[rows], lens[rows], 16, 0.3)
        torch.testing.assert_close(out[rows], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(AssertionError, match="workspace"):
        da.decode_attention(q, kp, vp, tables, lens, 16, 0.3, num_splits=4, workspace=workspace[:10])


def test_default_num_splits(monkeypatch):
    # Shapes only: about two waves of (S, Hkv, split) programs over 132 SMs, each split keeping ≥ 64 of the
    # positions the table (or the window) allows.
    monkeypatch.setattr(launch, "sm_count", lambda device: 132)
    cuda = torch.device("cuda")
    assert da.decode_num_splits(1, 8, 4096, cuda) == 33
    assert da.decode_num_splits(1, 1, 4096, cuda) == da.MAX_SPLITS
    assert da.decode_num_splits(1, 1, 131072, cuda, sliding_window=512) == 8
    assert da.decode_num_splits(1, 8, 100, cuda) == 2
    assert da.decode_num_splits(64, 8, 4096, cuda) == 1
    assert da.decode_num_splits(8, 8, 4096, cuda) == 5
    assert da.decode_num_splits(1, 1, 0, cuda) == 1
