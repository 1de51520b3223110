"""kernels.sampling against reference.top_k_top_p_probs / reference.sample_from_probs: mixed per-row settings,
masked vocabularies, draws on the same uniforms, a stratified distribution check, ties."""

from __future__ import annotations

import pytest
import torch

from kernels import reference
from kernels.sampling import top_k_top_p_probs, top_k_top_p_sample
from tests.support.kernel_cases import DEVICE, shapes

BIG = 10**9  # a top_k above any vocabulary: off
# (temperature, top_k, top_p, masked): row i of a batch takes SETTINGS[i % len]. A masked row has -inf logits
# (a grammar, a -100 logit_bias) over its first 30 % (whole blocks) and at every 7th token.
SETTINGS = [
    (1.0, 0, 1.0, False),  # plain temperature sampling
    (0.5, 0, 0.5, False),
    (1.7, 0, 0.9, False),
    (1.0, 1, 1.0, False),
    (1.0, 3, 1.0, False),
    (0.5, 3, 0.9, False),
    (1.7, 50, 0.5, False),
    (1.0, 50, 0.9, False),
    (1.0, BIG, 0.9, False),
    (1.7, 0, 0.9, True),
    (0.5, 50, 1.0, True),
]
# A cumulative probability the float32 kernel and the reference may disagree on: a top-p cut this close to a
# partial sum, or a uniform this close to a CDF step, has no single right answer.
TOL = 1e-5
# (V, BLOCK_V, BLOCK_S, CAP): blocks smaller than V on the CPU, so every loop runs over several (and a ragged last
# one); a CAP that always holds the candidates (V = 7), one that rarely does (16), one in between; the kernel's own
# choices on real vocabularies.
VOCABS = shapes(
    [(1, None, None, None), (7, None, None, None), (1000, 256, 128, 16), (5000, 1024, 512, None)],
    [(262144, None, None, None), (128256, None, None, None)],
)


def _logits(n: int, v: int, seed: int, masked: torch.Tensor | None = None) -> torch.Tensor:
    """[n, v] distinct logits, laid out with a row stride of v + 5: a N(0, 2) tail and a head of up to 16 tokens
    at random places, peaked as a language model's are. On small vocabularies the head sits around +12, which
    leaves the tail up to ~10 % of the mass at T = 1.7; on real ones around +30, so that the tail's 10^5 tokens
    keep a sliver of it and the top-p cuts and the CDF steps near a draw stay further apart than float32 blurs."""
    gen = torch.Generator().manual_seed(seed)
    # the tail: the N(0, 2) quantiles in a random order, distinct by construction (random floats collide)
    tail = (torch.special.ndtri((torch.arange(v, dtype=torch.float64) + 0.5) / v) * 2).float()
    x = torch.stack([tail[torch.randperm(v, generator=gen)] for _ in range(n)])
    head = min(16, v // 2)
    for i in range(n):
        where = torch.randperm(v, generator=gen)[:head]
        x[i, where] = (12 if v <= 5000 else 30) + 3 * torch.randn(head, generator=gen)
    if masked is not None:
        cols = torch.arange(v)
        x[masked] = x[masked].masked_fill((cols < v * 3 // 10) | (cols % 7 == 3), float("-inf"))
    padded = torch.zeros(n, v + 5)
    padded[:, :v] = x
    return padded.to(DEVICE)[:, :v]


def _batch(n: int, v: int, seed: int = 0):
    rows = [SETTINGS[i % len(SETTINGS)] for i in range(n)]
    masked = torch.tensor([r[3] and v > 1 for r in rows])
    logits = _logits(n, v, seed, masked)
    temperature = torch.tensor([r[0] for r in rows], device=DEVICE)
    top_k = torch.tensor([r[1] for r in rows], device=DEVICE)
    top_p = torch.tensor([r[2] for r in rows], device=DEVICE)
    for i in range(n):  # the tests rely on distinct values (the reference breaks ties arbitrarily)
        row = (logits[i] / temperature[i])[logits[i] > float("-inf")]
        assert row.unique().numel() == row.numel()
    _assert_top_p_cuts_clear(logits, temperature, top_k, top_p)
    return logits, temperature, top_k, top_p


def _assert_top_p_cuts_clear(logits, temperature, top_k, top_p) -> None:
    """Precondition on the test data: no partial sum of a row's sorted top-k probabilities lies within TOL of
    its top_p, so the kept set does not depend on summation order."""
    kept = reference.top_k_top_p_probs(logits, temperature, top_k, torch.ones_like(top_p))
    sums = kept.double().sort(-1, descending=True).values.cumsum(-1)
    on = top_p < 1
    if on.any():
        gap = (sums[on] - top_p[on, None].double()).abs().min()
        assert gap > TOL, f"test data puts a top-p cut {gap:.2e} from a partial sum"


def _check_draws(got: torch.Tensor, probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draws against the reference on the same uniforms: equal where u * total is further than TOL from every
    CDF step; within TOL of one, the drawn token must be kept and its CDF interval must come within TOL of
    u * total. Returns which rows were near a step."""
    want = reference.sample_from_probs(probs, uniform)
    cdf = probs.double().cumsum(-1)
    target = uniform.double() * cdf[:, -1]
    # the steps: the upper edge of each kept token but the last (whose upper edge is the total)
    steps = torch.where((probs > 0) & (cdf < cdf[:, -1:]), cdf, float("inf"))
    near = (steps - target[:, None]).abs().min(-1).values < TOL
    assert torch.equal(got[~near], want[~near]), (got[~near], want[~near])
    rows = torch.arange(len(got), device=got.device)
    upper = cdf[rows, got]
    lower = upper - probs[rows, got].double()
    assert (probs[rows, got] > 0).all()
    assert ((lower - TOL <= target) & (target <= upper + TOL))[near].all()
    return near


@pytest.mark.parametrize("V, block_v, block_s, cap", VOCABS)
def test_probs_match_reference(V, block_v, block_s, cap):
    n = len(SETTINGS) if V <= 5000 else 256
    logits, temperature, top_k, top_p = _batch(n, V)
    got = top_k_top_p_probs(logits, temperature, top_k, top_p, block_v=block_v, block_s=block_s, cap=cap)
    want = reference.top_k_top_p_probs(logits, temperature, top_k, top_p)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert torch.equal(got > 0, want > 0)  # the same kept set
    torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)


@pytest.mark.parametrize("V, block_v, block_s, cap", VOCABS)
def test_sample_matches_reference(V, block_v, block_s, cap):
    n = len(SETTINGS) if V <= 5000 else 256
    logits, temperature, top_k, top_p = _batch(n, V, seed=2)
    probs = reference.top_k_top_p_probs(logits, temperature, top_k, top_p)
    uniform = torch.rand(n, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    uniform[0] = uniform[9] = 0.0  # the first kept token (row 9: past the masked ones)
    uniform[1] = 1 - 2**-24  # the largest float32 below 1: the last kept token, or one within TOL of the top
    uniform[4] = 2.0  # rounding's u * total above the running sum, exaggerated: the last kept token
    # Row 2 (top_p 0.9 over the whole vocabulary) exactly on a CDF step, so both sides of the step are fair.
    cdf = probs[2].double().cumsum(-1)
    step = int((probs[2] > 0).nonzero()[0])
    if V > 1:
        uniform[2] = float(cdf[step] / cdf[-1])
    got = top_k_top_p_sample(logits, temperature, top_k, top_p, uniform, block_v=block_v, block_s=block_s, cap=cap)
    assert got.shape == (n,) and got.dtype == torch.int64
    near = _check_draws(got, probs, uniform)
    assert bool(near[2]) == (V > 1)  # the step was hit, and the tolerant comparison exercised
    assert int(near.sum()) <= 1 + n // 8  # random uniforms land near a step rarely


@pytest.mark.parametrize("M, V", shapes([(128, 50)], [(16384, 262144)]))
def test_draws_follow_the_distribution(M, V):
    # M draws of one row (the batch is an expanded view: row stride 0) on the stratified grid u_i = (i + 0.5) / M:
    # token j gets floor or ceil of M * p_j draws, so the check is tight and cannot flake.
    logits = _logits(1, V, seed=3) / 4  # a flatter head: several of its tokens stay
    temperature, top_k, top_p = (torch.tensor([x], device=DEVICE) for x in (1.3, 10, 0.9))
    _assert_top_p_cuts_clear(logits, temperature, top_k, top_p)
    probs = reference.top_k_top_p_probs(logits, temperature, top_k, top_p)[0].double()
    assert (probs > 0).sum() >= 4  # a real distribution, not a single token
    uniform = ((torch.arange(M, device=DEVICE, dtype=torch.float64) + 0.5) / M).float()
    blocks = {"block_v": 64, "block_s": 64} if V <= 5000 else {}  # one block: the other tests cover several
    settings = (t.expand(M) for t in (temperature, top_k, top_p))
    got = top_k_top_p_sample(logits.expand(M, V), *settings, uniform, **blocks)
    counts = torch.bincount(got, minlength=V).double()
    expected = M * probs
    assert counts[probs == 0].sum() == 0  # nothing outside the kept set
    assert (counts - expected).abs().max() <= 2  # stratification: within 1, plus one for a rounded CDF step
    # The chi-square statistic over the tokens expected 5+ times: tiny here, where random uniforms would give
    # about the number of such tokens; 3 is far below any rejection level.
    big = expected >= 5
    chi2 = float((((counts - expected) ** 2)[big] / expected[big]).sum())
    assert chi2 < 3.0, chi2


@pytest.mark.parametrize("V", shapes([1, 300], [262144]))
def test_top_k_one_is_the_argmax(V):
    n = 6
    logits = _logits(n, V, seed=4)
    if V > 1:
        logits[0, 0] = 100.0  # the argmax first, and last (in the last, partial block)
        logits[1, V - 1] = 100.0
    temperature = torch.tensor([0.5, 1.0, 1.7, 1.0, 0.5, 1.7], device=DEVICE)
    top_k = torch.ones(n, dtype=torch.int64, device=DEVICE)
    top_p = torch.tensor([1.0, 0.5, 0.9, 1.0, 0.9, 0.5], device=DEVICE)
    uniform = torch.tensor([0.0, 1 - 2**-24, 0.5, 0.999, 0.25, 0.75], device=DEVICE)
    blocks = {"block_v": 128, "block_s": 64} if V <= 5000 else {}
    got = top_k_top_p_sample(logits, temperature, top_k, top_p, uniform, **blocks)
    argmax = logits.argmax(-1)
    assert torch.equal(got, argmax)
    probs = top_k_top_p_probs(logits, temperature, top_k, top_p, **blocks)
    torch.testing.assert_close(probs, torch.nn.functional.one_hot(argmax, V).float(), atol=1e-6, rtol=0)


def test_top_k_keeps_every_token_tied_with_the_kth():
    # As the reference: every token whose logit is at least the k-th largest.
    logits = _logits(2, 40, seed=5)
    second = logits[0].sort(descending=True).values[1]
    logits[0, [5, 17, 33]] = second  # the 2nd largest, four times over
    logits[1, [2, 30]] = logits[1].max()  # the largest, three times over (top_k 2 keeps all three)
    temperature = torch.tensor([1.0, 0.8], device=DEVICE)
    top_k = torch.tensor([2, 2], device=DEVICE)
    top_p = torch.ones(2, device=DEVICE)
    got = top_k_top_p_probs(logits, temperature, top_k, top_p, block_v=16, block_s=16)
    want = reference.top_k_top_p_probs(logits, temperature, top_k, top_p)
    assert ((got > 0).sum(-1) == torch.tensor([5, 3], device=DEVICE)).all()
    torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-5)


def test_top_p_keeps_every_token_tied_at_the_cut():
    # Where the cut falls inside a group of equal logits, the kernel keeps the whole group (the reference keeps
    # an arbitrary part of it): top_p 0.6 over probabilities ~ [0.33, 0.19, 0.19, 0.19, small...] keeps four.
    v = 20
    logits = torch.full((1, v), -4.0)
    logits[0, :4] = torch.tensor([0.0, -0.56, -0.56, -0.56])
    logits[0, 4:] -= torch.arange(v - 4) * 0.01  # the rest distinct
    logits = logits.to(DEVICE)
    temperature, top_k, top_p = (torch.tensor([x], device=DEVICE) for x in (1.0, 0, 0.6))
    got = top_k_top_p_probs(logits, temperature, top_k, top_p, block_v=8, block_s=8)
    base = torch.softmax(logits[0], -1)
    assert 0.6 > base[:2].sum() + 1e-3 and base[:3].sum() > 0.6 + 1e-3  # the cut falls in the tied group
    want = torch.where(torch.arange(v, device=DEVICE) < 4, base, 0.0)
    torch.testing.assert_close(got[0], want / want.sum(), atol=1e-7, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy, on the -inf row's -inf - -inf
def test_settings_at_their_limits_and_a_row_without_finite_logits():
    v = 40
    logits = _logits(4, v, seed=6)
    logits[3] = float("-inf")
    temperature = torch.ones(4, device=DEVICE)
    top_k = torch.tensor([-1, 0, 5, 0], device=DEVICE)  # negative: off, as 0
    top_p = torch.tensor([1.0, 0.0, 0.0, 0.9], device=DEVICE)  # 0: the most likely token only
    uniform = torch.full((4,), 0.7, device=DEVICE)
    got = top_k_top_p_sample(logits, temperature, top_k, top_p, uniform, block_v=16, block_s=16)
    probs = reference.top_k_top_p_probs(logits[:1], temperature[:1], top_k[:1].clamp(min=0), top_p[:1])
    assert int(got[0]) == int(reference.sample_from_probs(probs, uniform[:1])[0])
    assert got[1:3].tolist() == logits[1:3].argmax(-1).tolist()
    assert int(got[3]) == -1


@pytest.mark.parametrize("v", [1, 7, 5000])
def test_top_p_zero_keeps_the_most_likely_token_only(v):
    """OpenAI accepts top_p = 0: the kernel and the reference keep the argmax alone (no NaN row), at any k."""
    logits = _logits(3, v, 4, torch.tensor([False, False, True]) if v > 1 else torch.tensor([False] * 3))
    temperature = torch.tensor([1.0, 0.7, 1.3], device=DEVICE)
    top_k, top_p = torch.tensor([0, 5, 0], device=DEVICE), torch.zeros(3, device=DEVICE)
    want = torch.nn.functional.one_hot(logits.argmax(-1), v).float()
    assert torch.equal(reference.top_k_top_p_probs(logits, temperature, top_k, top_p), want)
    assert torch.equal(top_k_top_p_probs(logits, temperature, top_k, top_p), want)
    uniform = torch.tensor([0.0, 0.5, 0.999], device=DEVICE)
    assert torch.equal(top_k_top_p_sample(logits, temperature, top_k, top_p, uniform), logits.argmax(-1))


# (temperature, top_k, top_p, min_p): min-p alone, and after top-k and top-p; 1.0 keeps the argmax (and its ties)
MIN_P_SETTINGS = [
    (1.0, 0, 1.0, 0.05),
    (0.7, 0, 1.0, 0.3),
    (1.7, 50, 1.0, 0.01),
    (1.0, 0, 0.9, 0.2),
    (0.5, 3, 0.9, 0.5),
    (1.3, 0, 1.0, 1.0),
    (1.0, 0, 0.5, 0.0),  # off, beside rows that have it on
]


def _min_p_batch(n: int, v: int, seed: int):
    rows = [MIN_P_SETTINGS[i % len(MIN_P_SETTINGS)] for i in range(n)]
    logits = _logits(n, v, seed)
    temperature, top_k, top_p, min_p = (torch.tensor([r[j] for r in rows], device=DEVICE) for j in range(4))
    _assert_top_p_cuts_clear(logits, temperature, top_k, top_p)
    # Precondition: no token's likelihood relative to the argmax (which always stays) within 1e-4 (in log space)
    # of a row's min_p, so the kept set does not depend on rounding
    scaled = logits / temperature[:, None]
    log_ratio = scaled - scaled.max(-1, keepdim=True).values
    log_ratio = log_ratio.masked_fill(log_ratio == 0, float("-inf"))
    on = min_p > 0
    gap = (log_ratio[on] - min_p[on, None].log()).abs().min()
    assert gap > 1e-4, f"test data puts a token {gap:.2e} from a min-p cut"
    return logits, temperature, top_k, top_p, min_p


@pytest.mark.parametrize("V, block_v, block_s, cap", VOCABS)
def test_min_p_probs_and_draws_match_reference(V, block_v, block_s, cap):
    n = len(MIN_P_SETTINGS) if V <= 5000 else 64
    logits, temperature, top_k, top_p, min_p = _min_p_batch(n, V, seed=8)
    sizes = dict(block_v=block_v, block_s=block_s, cap=cap)
    want = reference.top_k_top_p_probs(logits, temperature, top_k, top_p, min_p)
    got = top_k_top_p_probs(logits, temperature, top_k, top_p, min_p=min_p, **sizes)
    assert torch.equal(got > 0, want > 0)  # the same kept set
    torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4)
    if V >= 1000:  # min-p cut tokens the other settings kept, in most rows that have it on
        loose = (reference.top_k_top_p_probs(logits, temperature, top_k, top_p) > 0).sum(-1)
        assert (loose > (want > 0).sum(-1)).sum() >= 5, (loose, (want > 0).sum(-1))
    uniform = torch.rand(n, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    drawn = top_k_top_p_sample(logits, temperature, top_k, top_p, uniform, min_p=min_p, **sizes)
    _check_draws(drawn, want, uniform)
    # min_p = 1 keeps the argmax alone
    assert drawn[5].item() == logits[5].argmax().item()


def test_the_engine_sampler_sends_min_p_rows_to_the_kernel():
    """inference.layers.sampler with the kernels on: rows with min_p draw inside the min-p kept set."""
    from inference.layers.sampler import sample
    from inference.sampling_params import SamplingParams

    v = 300
    logits = _logits(6, v, seed=10).contiguous()
    params = [SamplingParams(temperature=1.0, min_p=mp, seed=i) for i, mp in enumerate([0.05, 0.2, 0.5, 0.9, 1.0, 0.3])]
    gens = [torch.Generator().manual_seed(i) for i in range(6)]
    tokens = sample(logits, params, [([], [])] * 6, gens, kernels=True).token_ids
    ones = torch.ones(6, device=DEVICE)
    kept = reference.top_k_top_p_probs(logits, ones, torch.zeros(6, device=DEVICE), ones,
                                       torch.tensor([p.min_p for p in params], device=DEVICE))  # fmt: skip
    assert all(kept[i, t] > 0 for i, t in enumerate(tokens)), tokens
    assert tokens[4] == int(logits[4].argmax())


def test_the_kernel_rows_draw_none_of_the_banned_ids():
    """A sequence short of ``min_tokens`` sampled by the kernel: its ends (banned) are never drawn."""
    from inference.layers.sampler import sample
    from inference.sampling_params import SamplingParams

    logits = _logits(4, 300, seed=12).contiguous()
    logits[:, 5] = logits[:, 6] = 40.0
    params = [SamplingParams(temperature=1.0, top_k=k, seed=i) for i, k in enumerate([0, 3, 50, 0])]
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    tokens = sample(logits, params, [([], [])] * 4, gens, kernels=True, banned=[[5, 6], [5, 6], [5, 6], []]).token_ids
    assert all(t not in (5, 6) for t in tokens[:3]) and tokens[3] in (5, 6), tokens


def test_the_kernel_rows_draw_only_their_allowed_ids():
    """vLLM's ``allowed_token_ids`` on rows the kernel samples: only those ids are drawn, with any top-k / top-p."""
    from inference.layers.sampler import sample
    from inference.sampling_params import SamplingParams

    logits = _logits(4, 300, seed=13).contiguous()
    allowed = [[3, 77, 299], [150], [10, 11, 12, 13], None]
    settings = zip([0, 2, 50, 0], [1.0, 0.5, 0.9, 1.0], allowed, strict=True)
    params = [SamplingParams(temperature=1.0, top_k=k, top_p=p, seed=i, allowed_token_ids=a)
              for i, (k, p, a) in enumerate(settings)]  # fmt: skip
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    for _ in range(5):
        tokens = sample(logits, params, [([], [])] * 4, gens, kernels=True).token_ids
        assert all(t in a for t, a in zip(tokens[:3], allowed, strict=False)), tokens
