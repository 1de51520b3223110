"""CPU weight-only quantization for decoding: int8 per output row, int4 in groups, or two int4 levels.

Decoding on the CPU reads every weight once per generated token, so its speed is set by the bytes read and
by how fast a kernel turns them back into numbers. Two PyTorch CPU kernels do the work, both with bf16
activations (their fp32-activation paths are scalar code, ~25x slower):

- ``_weight_int8pack_mm``: symmetric int8, one scale per output row. It reads 4 rows of K bytes at a time,
  short strided streams that get ~10-14 GB/s from DRAM on this machine (memory reads ~33 GB/s).
- ``_weight_int4pack_mm_for_cpu``: asymmetric int4, a bf16 (scale, zero) pair per ``group_size`` inputs of
  every output row, packed once by ``_convert_weight_to_int4pack_for_cpu`` into 64-row blocks that it
  streams at ~15-21 GB/s; at ~35 G weights/s it is close to compute-bound too.

Modes (``quantize(model, mode)``), with batch-1 decode tok/s and KL(fp32 || quantized) on the packaged
Gemma 3 270M and SmolLM2-135M (``benchmarks/bench_quantize.py``; fp32 decodes at ~9 / ~16 tok/s; +-10% noise):

- ``int8``: every Linear and the head in int8 (``quantize_int8``). Gemma ~31 tok/s, KL 0.0033; SmolLM2 ~43,
  KL 0.0048.
- ``int4``: every Linear in int4 groups of 32 (``quantize_int4``). Right for checkpoints that were 4-bit
  already (SmolLM2's Q4_1: ~57-65 tok/s, KL 0.0012); Gemma, whose q/k/v and gate/up were Q5_0, gets ~43
  tok/s but KL 0.12 (top-1 agreement 87%).
- ``int4x2``: two int4 levels, W ~ W1 + W2 with W2 the int4 code of W1's rounding error, ~8 bits per group
  of 32 in one kernel call over [x, x]: more accurate than int8 (KL 0.0009 / 0.0008), as fast or faster
  (Gemma ~31, SmolLM2 ~50 tok/s).
- ``auto`` (the one to use): per matrix, int4 where int4 loses nothing -- relative error below
  ``LOSSLESS_INT4``, as for a GGUF matrix already quantized to 4 bits in groups of 32 (Q4_0/Q4_1/Q4_K) --
  and int4x2 elsewhere (Q5_0, Q6_K, Q8_0 or float weights, where int4 adds ~8% error). Gemma ~41 tok/s,
  KL 0.0010; SmolLM2 as int4.

Heads: int4 for int4 and auto, recomputing the ``EXACT_TOP`` largest logits per row from the float weight
(``QuantizedLinear._exact_top``): a plain 4-bit head costs KL ~0.03-0.04 against int4x2's 0.001, but with
the top 1024 logits exact it matches int4x2's KL at half its time (Gemma: ~5.5 + 1.3 ms against ~11 ms).

Prefill does not read weights per token, it multiplies many rows at once: above ``FLOAT_ROWS`` rows a layer
uses a bf16 copy of its weight (``quantize(..., prefill="bfloat16")``) where the CPU multiplies bf16 natively
(AVX-512 BF16 or AMX): there its GEMM runs at ~206 GFLOP/s against fp32's ~84 (512 x 640 @ 640 x 4096), which
doubles prefill speed, for the precision the decode kernels have anyway (bf16 activations). Elsewhere (AVX2: an AMD
EPYC here ran bf16 at 19 GFLOP/s, fp32 at 150) ``prefill="float32"`` keeps a reference to the float weight instead
(no copy), in fp32; ``"auto"`` (the default, ``resolve_prefill``) picks by the CPU. Heads always keep the float
weight. The bf16 product runs in fixed row blocks where the CPU has AMX, the fp32 one padded to at least 16 rows
(``row_blocks.py``): otherwise the rounding follows the row count, which would make a prompt's answer depend on
its batch.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch
from torch import nn

from inference.env import PREFILL_DTYPES
from inference.layers.context import current_context
from inference.weights.row_blocks import float_linear, linear_in_blocks
from inference.weights.swap import swap_layers, tied_embedding

# Outside the engine's steps (tests, encoders; in a step rows go by role, see ``QuantizedLinear.by_role``), above
# this many rows layers multiply by their prefill weight: prefill stays as fast as without quantization. Gemma's
# layers, all of them once, fp32 GEMM against the kernels: int4x2 and int8 fall behind at ~24-48 rows, int4 at
# ~128; 16 keeps batched decode of up to 16 sequences on the kernels.
FLOAT_ROWS = 16

# What ``_weight_int4pack_mm_for_cpu`` accepts: a group must divide K, and N must be a multiple of 16.
INT4_GROUP_SIZES = (32, 64, 128, 256)
INT4_N_MULTIPLE = 16
# 32, the finest group the kernel takes, costs ~5% over 128 on the largest matrix; GGUF's 4/5/8-bit types
# use groups of 32 (or 16/32 sub-blocks), which a 32-group grid can follow and a 64/128 one cannot: on the
# packaged models g64/g128 give KL 0.2-0.4 to fp32 where g32 gives 0.001-0.1.
DEFAULT_INT4_GROUP = 32
# Grids tried per group, as (steps, cover): the group's range split in ``steps``; ``cover`` widens the bf16
# scale until the grid reaches the group's min and max from the rounded zero (the safe min/max grid), without
# it the scale is the nearest bf16 (exact for a group already on a 4-bit grid, where widening doubles the
# error). 14..12 steps find the grid of groups whose 4-bit codes never reached 0 or 15 (llama.cpp's Q4_K
# search clips): Gemma's Q4_K matrices go from 4.5% relative error with min/max alone to 0.4%.
GRID = ((15, False), (15, True), (14, False), (13, False), (12, False))
MIN_MAX = ((15, True),)
# ``auto``: below this relative (Frobenius) error int4 is taken as a re-encoding of 4-bit weights. The
# packaged models are bimodal: 0.4-0.5% (bf16 rounding of scale and zero) or 7.7-9% (anything else).
LOSSLESS_INT4 = 0.01
# Rows quantized at a time: bounds the fp32 temporaries (Gemma's head is 262 144 rows); a multiple of the
# kernel's 64-row blocks, so packing chunk by chunk gives the same bytes as packing the whole matrix.
CHUNK_ROWS = 8192

MODES = ("int8", "int4", "int4x2", "auto")
_DEFAULT_HEAD = {"int8": "int8", "int4": "int4", "int4x2": "int4x2", "auto": "int4"}
# An int4 head recomputes this many of its largest logits per row in float (``QuantizedLinear._exact_top``).
# On the packaged models KL(fp32 || quantized) falls with it: Gemma 0.030 (none), 0.0071 (16), 0.0036 (64),
# 0.0018 (256), 0.0009 (1024, the same as an int4x2 head); top-1 agreement 91% -> 99%.
EXACT_TOP = 1024

# OpOverloads: calling ``.default`` skips overload resolution (~0.6 us of a ~3 us call on a small layer)
_INT8_MM = torch.ops.aten._weight_int8pack_mm.default
_INT4_MM = torch.ops.aten._weight_int4pack_mm_for_cpu.default
_INT4_PACK = torch.ops.aten._convert_weight_to_int4pack_for_cpu.default


class QuantizedLinear(nn.Module, abc.ABC):
    """A Linear whose few-row calls use a quantized kernel and many-row calls the float weight.

    Kernel operands are plain attributes, not buffers: a buffer goes through ``nn.Module.__getattr__``
    (~1.2 us per access, three per call); these modules are built for CPU inference after loading and are
    never moved or saved.
    """

    # Whether the kernel's one-row call gives the bits of its many-row one on this machine, once checked
    # (``inference/cpu/fused_decoder.py``; None: not checked). True: one row is multiplied alone, not as two.
    one_row: bool | None = None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, keep_float: bool = True):
        super().__init__()
        # a reference, not a copy: the float model's memory is reused for prefill
        self.float_weight = weight.detach() if keep_float else None
        self.bias = None if bias is None else bias.detach()
        self.out_features, self.in_features = weight.shape
        # > 0 (output heads): recompute this many largest outputs per row from the float weight
        self.exact_top = 0
        self.prefill_weight: torch.Tensor | None = None  # a bf16 copy for many-row calls (``use_bf16_prefill``)
        self.head = False  # the output head: every row on the kernel (``quantize`` sets it)

    def use_bf16_prefill(self) -> None:
        """Multiply many-row inputs (prefill) by a bf16 copy of the weight, in bf16 (see the module docstring)."""
        if self.float_weight is not None:
            self.prefill_weight = self.float_weight.bfloat16()

    @abc.abstractmethod
    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        """x [rows, in] bf16 -> [rows, out] bf16 (each format's kernel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out] in x's dtype."""
        if x.dim() != 2:  # the models pass flat [T, hidden]; anything else goes through 2-D
            return self(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], self.out_features)
        ctx = current_context()
        if ctx is not None and ctx.prompt_lens is not None and x.shape[0] == ctx.num_tokens:
            return self.by_role(x, *ctx.row_roles())
        if self.head:  # every row on the kernel: a row's logits do not depend on how many rows there are
            return self._decode(x)
        return self.by_rows(x)

    def by_role(self, x: torch.Tensor, prompt: torch.Tensor | None, generated: torch.Tensor | None) -> torch.Tensor:
        """Batch invariant: prompt rows on the prefill weights, generated rows on the kernel, however many of each
        (both are bit for bit the same for a row whatever the row count; fp32 GEMM is not)."""
        if generated is None:
            return self._prefill(x)
        if prompt is None:
            return self._decode(x)
        out = x.new_empty(x.shape[0], self.out_features)
        out[prompt] = self._prefill(x[prompt])
        out[generated] = self._decode(x[generated])
        return out

    def _prefill(self, x: torch.Tensor) -> torch.Tensor:
        if self.prefill_weight is not None:  # in blocks of a fixed row count: a row's bits never follow the count
            out = linear_in_blocks(x.bfloat16(), self.prefill_weight)
            out = out if self.bias is None else torch.add(self.bias, out)
            return out.to(x.dtype)
        if self.float_weight is not None:  # fp32, at least 16 rows a call (or in blocks): bits never follow the count
            out = float_linear(x, self.float_weight.to(x.dtype))
            return out if self.bias is None else torch.add(self.bias, out)
        return self._decode(x)

    def by_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Outside the engine's steps and encoders (tests): many rows on the prefill weights, few on the kernel."""
        return self._prefill(x) if x.shape[0] > FLOAT_ROWS else self._decode(x)

    def _decode(self, x: torch.Tensor) -> torch.Tensor:
        """The format's kernel (bf16 activations), then the exact top logits of a head."""
        if x.shape[0] == 1 and not self.one_row:  # where the one-row path rounds differently: two rows
            out = self._kernel(torch.cat([x, x]))[:1]
        else:
            out = self._kernel(x)
        if self.exact_top and self.float_weight is not None:  # per row: once, not for the duplicate too
            out = self._exact_top(x, out)
        return out

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        """x [rows, in] -> [rows, out] in x's dtype, through the format's kernel on bf16 activations."""
        # .bfloat16() / .float() take ~2.3 us where .to(dtype) takes ~3.8 us; 2 per call, 73-121 calls a step
        out = self._mm(x.bfloat16())
        if self.bias is not None:
            out = torch.add(self.bias, out)  # cast and add in one kernel: bf16 + the bias's dtype promotes
        return out.float() if x.dtype == torch.float32 else out.to(x.dtype)

    def _exact_top(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Overwrite each row's ``exact_top`` largest outputs with the float weight's (fp32 for fp32 x).

        For a head, these are the logits greedy decoding and sampling look at: they become exact (the
        kernels' are bf16, 3 significant digits, and carry the weight's rounding), so a 4-bit head keeps
        fp32's argmax whenever fp32's top token is among its top ``exact_top``. Costs a top-k over the
        vocabulary and ``exact_top`` float rows: ~0.5-1 ms on Gemma's 262 144, against ~6 ms saved by a
        4-bit head over int4x2.
        """
        k = min(self.exact_top, self.out_features)
        top = out.topk(k, dim=-1, sorted=False).indices  # [rows, k]
        rows = self.float_weight.index_select(0, top.reshape(-1)).reshape(*top.shape, self.in_features)
        column = x.to(rows.dtype).unsqueeze(-1)  # [rows, in, 1]
        if x.shape[0] == 1:  # bmm rounds one product differently from several: the same one twice (views, no copy)
            exact = torch.bmm(rows.expand(2, -1, -1), column.expand(2, -1, -1))[:1].squeeze(-1)
        else:
            exact = torch.bmm(rows, column).squeeze(-1)  # [rows, k]
        if self.bias is not None:
            exact = exact + self.bias[top]
        return out.scatter_(-1, top, exact.to(out.dtype))  # out is this call's own tensor


class Int8Linear(QuantizedLinear):
    """Symmetric int8, one scale per output row (``_weight_int8pack_mm``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, keep_float: bool = True):
        super().__init__(weight, bias, keep_float)
        w = weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0  # [out]
        self.weight_int8 = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
        self.scales = scales.to(torch.bfloat16)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return _INT8_MM(x, self.weight_int8, self.scales)

    def dequantized(self) -> torch.Tensor:
        """The weight the kernel multiplies by, [out, in] fp32 (for tests and error reports)."""
        return self.weight_int8.float() * self.scales.float()[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def int4_group_size(in_features: int, out_features: int, wanted: int) -> int | None:
    """The largest group size <= ``wanted`` the int4 kernel takes for this shape; None if none fits."""
    if out_features % INT4_N_MULTIPLE:
        return None
    fitting = [g for g in INT4_GROUP_SIZES if g <= wanted and in_features % g == 0]
    return max(fitting) if fitting else None


class Int4Codes(NamedTuple):
    q: torch.Tensor  # [out, in] int32 in 0..15
    scales_and_zeros: torch.Tensor  # [out, in / group, 2] fp32 holding bf16 values
    squared_error: torch.Tensor  # [out, in / group] sum over each group of (dequantized - w)^2


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


def _int4_grid(lo: torch.Tensor, hi: torch.Tensor, steps: int, cover: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) [groups], bf16 values in fp32, of a grid splitting each group's range in ``steps``.

    Zero is rounded first; ``cover`` then widens the scale to reach the group's min and max from the rounded
    zero: rounding zero last could shift the grid by several steps for groups far from 0 and clip them.
    """
    scale = _bf16(((hi - lo) / steps).clamp(min=1e-8))
    zero = _bf16(lo + 8 * scale)
    if cover:  # (0 - 8) * s + zero <= lo and (15 - 8) * s + zero >= hi
        scale = torch.maximum((zero - lo) / 8, (hi - zero) / 7).clamp(min=1e-8)
        # bf16 >= scale: round-to-nearest of s * (1 + 2^-8) never lands below s (its error is <= 2^-9)
        scale = _bf16(scale * (1 + 2**-8))
    return scale, zero


def _int4_codes(groups: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """q = clamp(round((w - zero) / scale + 8), 0, 15) as fp32 [groups, group], 3 passes over w."""
    inverse = (1 / scale)[..., None]
    return torch.addcmul(8 - zero[..., None] * inverse, groups, inverse).round_().clamp_(0, 15)


def _int4_error(groups: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """Per group, sum of ((q - 8) * scale + zero - w)^2."""
    q = _int4_codes(groups, scale, zero)
    return torch.addcmul((zero - 8 * scale)[:, None], q, scale[:, None]).sub_(groups).square_().sum(dim=-1)


def quantize_int4_groups(w: torch.Tensor, group_size: int, grids: tuple[tuple[int, bool], ...] = GRID) -> Int4Codes:
    """[out, in] fp32 -> int4 codes for ``w = (q - 8) * scale + zero`` per group (the kernel's formula).

    Per group, the one of ``grids`` with the smallest squared error; scale and zero are bf16 (the kernel
    reads them so). A group whose error is already at bf16-rounding level (RMS <= 1/32 step: it lies on the
    grid) skips the later candidates, which makes 4-bit checkpoints ~2x quicker to quantize.
    """
    n, k = w.shape
    groups = w.reshape(-1, group_size)  # [out * in / group, group]
    lo, hi = groups.amin(dim=-1), groups.amax(dim=-1)
    scale, zero = _int4_grid(lo, hi, *grids[0])
    error = _int4_error(groups, scale, zero)
    for steps, cover in grids[1:]:
        todo = (error > group_size * (scale * 2**-5).square()).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        s, z = _int4_grid(lo[todo], hi[todo], steps, cover)
        e = _int4_error(groups[todo], s, z)
        better = e < error[todo]
        todo = todo[better]
        scale[todo], zero[todo], error[todo] = s[better], z[better], e[better]
    q = _int4_codes(groups, scale, zero).reshape(n, k).to(torch.int32)
    return Int4Codes(q, torch.stack([scale, zero], dim=-1).reshape(n, -1, 2), error.reshape(n, -1))


def dequantize_int4(codes: Int4Codes) -> torch.Tensor:
    """The weight the int4 kernel multiplies by, [out, in] fp32."""
    n, k = codes.q.shape
    sz = codes.scales_and_zeros
    groups = (codes.q.float() - 8).reshape(n, sz.shape[1], -1)
    return (groups * sz[..., :1] + sz[..., 1:]).reshape(n, k)


class Int4Weight(NamedTuple):
    packed: torch.Tensor  # uint8, the kernel's layout
    scales_and_zeros: torch.Tensor  # [levels * in / group, out, 2] bf16
    levels: int
    relative_error: float  # ||W_int4 - W|| / ||W||, all levels


def _pack_rows(w: torch.Tensor, group_size: int, levels: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One chunk of rows -> (packed, scales_and_zeros [rows, levels * groups, 2], squared error)."""
    if levels == 1:
        codes = quantize_int4_groups(w, group_size)
        q, sz = codes.q, codes.scales_and_zeros
    else:
        # The first level on the min/max grid: the finest, whose residual spans only +-scale/2 (a coarser
        # grid the search may pick, up to 15/12 the step, would widen the residual and so its grid), and
        # the residual, spread evenly within its groups, on min/max too.
        first = quantize_int4_groups(w, group_size, MIN_MAX)
        codes = quantize_int4_groups(w - dequantize_int4(first), group_size, MIN_MAX)
        q = torch.cat([first.q, codes.q], dim=1)
        sz = torch.cat([first.scales_and_zeros, codes.scales_and_zeros], dim=1)
    # the CPU kernel ignores innerKTiles (a CUDA tiling parameter) but checks it is 2, 4 or 8
    return _INT4_PACK(q, 2), sz, float(codes.squared_error.sum())


def pack_int4(weight: torch.Tensor, group_size: int, levels: int | None = 1) -> Int4Weight:
    """Quantize and pack a [out, in] weight, ``CHUNK_ROWS`` rows at a time (only packed bytes are kept).

    ``levels`` 1 or 2 (int4x2: [W1, W2] side by side, W2 the code of W - W1); None chooses per the
    ``auto`` rule: 1 if one level's relative error is below ``LOSSLESS_INT4``, else 2.
    """
    chunks = [weight[i : i + CHUNK_ROWS].detach().float() for i in range(0, weight.shape[0], CHUNK_ROWS)]
    norm2 = max(sum(float(w.square().sum()) for w in chunks), 1e-30)
    for lv in (1, 2) if levels is None else (levels,):
        parts = [_pack_rows(w, group_size, lv) for w in chunks]
        error = (sum(p[2] for p in parts) / norm2) ** 0.5
        if levels is not None or error < LOSSLESS_INT4:
            break
    scales_and_zeros = torch.cat([p[1] for p in parts]).transpose(0, 1).contiguous().to(torch.bfloat16)
    return Int4Weight(torch.cat([p[0] for p in parts]), scales_and_zeros, lv, error)


class Int4Linear(QuantizedLinear):
    """Asymmetric int4 in groups of ``group_size`` inputs (``_weight_int4pack_mm_for_cpu``), 1 or 2 levels.

    ``levels=2`` ("int4x2") multiplies [x, x] by [W1, W2]: x W^T ~ x W1^T + x W2^T in one call over twice
    the inputs, ~8 bits per group. On Gemma's 262 144 x 640 head it takes ~10 ms where int8 takes ~15 ms.
    ``levels=None``: the ``auto`` rule (see ``pack_int4``).
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        group_size: int = DEFAULT_INT4_GROUP,
        levels: int | None = 1,
        keep_float: bool = True,
    ):
        super().__init__(weight, bias, keep_float)
        if int4_group_size(self.in_features, self.out_features, group_size) != group_size:
            raise ValueError(f"int4 group {group_size} does not fit a [{self.out_features}, {self.in_features}] weight")
        if levels not in (1, 2, None):
            raise ValueError(f"int4 levels must be 1, 2 or None (auto), got {levels}")
        self.group_size = group_size
        packed = pack_int4(weight, group_size, levels)
        self.weight_int4, self.scales_and_zeros = packed.packed, packed.scales_and_zeros
        self.levels, self.relative_error = packed.levels, packed.relative_error

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        if self.levels == 2:
            x = torch.cat([x, x], dim=1)
        return _INT4_MM(x, self.weight_int4, self.group_size, self.scales_and_zeros)

    def extra_repr(self) -> str:
        kind = "int4x2" if self.levels == 2 else "int4"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, {kind}, group={self.group_size}, "
            f"relative_error={self.relative_error:.4f}"
        )


def quantized_linear(
    weight: torch.Tensor, bias: torch.Tensor | None, mode: str, group_size: int = DEFAULT_INT4_GROUP
) -> QuantizedLinear:
    """One weight in ``mode``; int4 modes fall back to int8 where the kernel cannot take the shape
    (an output size not a multiple of 16, an input size not a multiple of 32)."""
    if mode not in MODES:
        raise ValueError(f"quantize mode must be one of {MODES}, got {mode!r}")
    if mode != "int8":
        g = int4_group_size(weight.shape[1], weight.shape[0], group_size)
        if g is not None:
            return Int4Linear(weight, bias, g, levels={"int4": 1, "int4x2": 2, "auto": None}[mode])
    return Int8Linear(weight, bias)


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX); without, torch's bf16 GEMM is several
    times slower than its fp32 one."""
    supported = (getattr(torch.cpu, name, lambda: False) for name in ("_is_avx512_bf16_supported",
                                                                       "_is_amx_tile_supported"))  # fmt: skip
    return any(check() for check in supported)


def resolve_prefill(prefill: str = "auto") -> str:
    """``bfloat16`` or ``float32``: ``auto`` is bfloat16 where the CPU has native bf16, else float32."""
    if prefill == "auto":
        return "bfloat16" if native_bf16() else "float32"
    if prefill not in PREFILL_DTYPES:
        raise ValueError(f"quantize prefill must be auto, bfloat16 or float32, got {prefill!r}")
    return prefill


def quantize(
    model: nn.Module,
    mode: str = "int8",
    group_size: int = DEFAULT_INT4_GROUP,
    head: str | None = None,
    head_exact_top: int | None = None,
    prefill: str = "auto",
) -> nn.Module:
    """Replace every nn.Linear (fused ones keep their ``split``) and a mixture of experts' stacks
    (``quantize_moe.QuantizedExperts``), and give tied models a quantized head.

    ``mode``: one of ``MODES`` (see the module docstring). ``head``: the output projection's mode, by
    default ``mode`` for int8 and int4x2 and int4 for int4 and auto. ``head_exact_top``: how many of the
    largest logits per row to recompute from the float weight, by default ``EXACT_TOP`` for an int4 head
    and 0 otherwise. ``group_size``: the int4 group, lowered per matrix to one the kernel takes.
    ``prefill``: the many-row path of every layer but the head, ``bfloat16`` (a bf16 copy of each weight),
    ``float32`` (the float weight itself) or ``auto`` (``resolve_prefill``). Returns the model, changed in place.
    """
    if mode not in MODES:
        raise ValueError(f"quantize mode must be one of {MODES}, got {mode!r}")
    prefill = resolve_prefill(prefill)
    head = head or _DEFAULT_HEAD[mode]
    from inference.weights.quantize_moe import QuantizedExperts

    lm_head = getattr(model, "lm_head", None)
    embed = tied_embedding(model)

    def linear(child: nn.Linear) -> QuantizedLinear:
        q = quantized_linear(child.weight, child.bias, head if child is lm_head else mode, group_size)
        if prefill == "bfloat16" and child is not lm_head:
            q.use_bf16_prefill()
        return q

    # a mixture of experts' stacks: each expert's matrices as the Linears
    swap_layers(model, linear, lambda moe: QuantizedExperts(moe, mode, group_size, prefill == "bfloat16"))
    if embed is not None:  # tied: the embedding stays float for lookups
        model.lm_head = quantized_linear(embed.weight, None, head, group_size)
    if isinstance(getattr(model, "lm_head", None), QuantizedLinear):
        new_head = model.lm_head
        new_head.head = True
        # a lossy one-level int4 head gets exact top logits; a lossless one (a GGUF head stored in 4 bits,
        # as SmolLM2's Q4_1) has nothing to correct, and the top-k + row gather cost ~2 ms a step there
        lossy_int4 = (
            isinstance(new_head, Int4Linear) and new_head.levels == 1 and new_head.relative_error >= LOSSLESS_INT4
        )
        new_head.exact_top = head_exact_top if head_exact_top is not None else EXACT_TOP if lossy_int4 else 0
    return model


def quantize_int8(model: nn.Module) -> nn.Module:
    """Every Linear and the output head in int8 (``engine.quantize == "int8"``)."""
    return quantize(model, "int8")


def quantize_int4(model: nn.Module, group_size: int = DEFAULT_INT4_GROUP) -> nn.Module:
    """Every Linear in int4 groups of ``group_size`` (int8 where the kernel cannot take the shape), an int4
    head with exact top logits. ``quantize(model, "auto")`` keeps int4 only where it is lossless."""
    return quantize(model, "int4", group_size)
