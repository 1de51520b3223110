"""Sweep the launch configurations the kernels chose without a GPU: tile sizes, warps, pipeline stages and split
counts of the decode GEMV and the prefill GEMM on GGUF blocks, of decode attention and of prefill attention, on
Llama-3-8B's shapes (issue 28, deliverable 3).

On a GPU every candidate is timed (median of ``triton.testing.do_bench``, which flushes the L2 between runs),
checked against the default's output, and shown with its GB/s or TFLOP/s and share of the GPU's peak; a summary
gives each shape's best candidate beside the default. The candidates are compiled first by ``--jobs`` processes
at once, which fill Triton's on-disk cache, so that a lease's minutes go to timing rather than compiling.

Without a GPU, ``--compile`` builds every candidate for sm_90 instead (``kernels.cuda_compile``) and prints its
registers, spilled bytes, shared memory and the warps an SM can hold: what can be known before the first timing.

    python3 benchmarks/bench_tune.py                       # on a CUDA GPU
    python3 benchmarks/bench_tune.py --only gemv --rep 20
    python3 benchmarks/bench_tune.py --compile             # no GPU needed: registers, spills, warps / SM
    TRITON_INTERPRET=1 python3 benchmarks/bench_tune.py --device cpu --smoke   # checks the script; times mean nothing
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import triton
from triton.compiler.errors import CompilationError
from triton.runtime.errors import OutOfResources

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import commit, header, peaks, random_blocks, timer  # noqa: E402

from kernels import launch  # noqa: E402
from kernels.gguf_blocks import GGUF_BLOCKS  # noqa: E402

OPS = ("gemv", "gemm", "decode_attention", "prefill_attention")
# what a candidate the GPU cannot take raises: too much shared memory or registers, no lowering, a failed launch
REFUSED = (OutOfResources, CompilationError, RuntimeError)


@dataclass
class Sweep:
    op: str
    shape: str
    default: tuple
    candidates: list[tuple]  # the default among them
    run: Callable[[tuple], torch.Tensor]
    bytes: float = 0.0  # memory-bound: what must move
    flops: float = 0.0  # compute-bound


class Maker:
    """The sweeps' tensors: random, drawn on the device from fixed seeds; or, for ``--compile`` (nothing runs, only
    shapes and dtypes matter), left empty, which costs no memory on the CPU until touched."""

    def __init__(self, device: str, fill: bool = True):
        self.device, self.fill = device, fill
        self.g = torch.Generator(device=device).manual_seed(0)
        self.g_cpu = torch.Generator().manual_seed(0)

    def randn(self, *shape: int) -> torch.Tensor:  # bfloat16, the engine's dtype on a GPU
        if not self.fill:
            return torch.empty(shape, dtype=torch.bfloat16, device=self.device)
        return torch.randn(shape, generator=self.g, device=self.device).to(torch.bfloat16)

    def blocks(self, qtype: str, n: int, k: int) -> torch.Tensor:
        if not self.fill:
            weights, nbytes = GGUF_BLOCKS[qtype]
            return torch.empty((n, k // weights * nbytes), dtype=torch.uint8, device=self.device)
        return random_blocks(qtype, n, k, self.g_cpu).to(self.device)

    def perm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.g_cpu).to(device=self.device, dtype=torch.int32)


def _gemv_sweeps(make: Maker, smoke: bool) -> list[Sweep]:
    from kernels.quant_matmul import CHUNK, _gemv, _gemv_config, gemv_splits

    # Llama-3-8B in Q4_K_M: q/k/v fused, o, gate/up fused in Q4_K; down in Q6_K
    shapes = [("qkv", 6144, 4096, "Q4_K"), ("o", 4096, 4096, "Q4_K"), ("gate_up", 28672, 4096, "Q4_K"),
              ("down", 4096, 14336, "Q6_K")]  # fmt: skip
    if smoke:
        shapes = [("tiny", 40, 512, "Q4_K"), ("tiny", 40, 512, "Q6_K")]
    sms = launch.sm_count(torch.device(make.device))  # for the label: the splits follow from it
    out = []
    for name, n, k, qtype in shapes:
        blocks = make.blocks(qtype, n, k)
        units = triton.cdiv(k, CHUNK)
        for m in (1, 3) if smoke else (1, 4, 8):
            x = make.randn(m, k)
            block_m = triton.next_power_of_2(m)
            # (BLOCK_N, num_warps, programs per SM): a thread holds BLOCK_M * BLOCK_N / warps floats of the
            # accumulator, 2 to 64 of them
            candidates = [
                (bn, w, per_sm)
                for bn in (16, 32, 64, 128)
                for w in (2, 4, 8)
                for per_sm in (2, 4, 8)
                if 2 <= block_m * bn // w <= 64
            ]
            default = (*_gemv_config(block_m), 4)

            def run(c, x=x, blocks=blocks, qtype=qtype, n=n, units=units):
                bn, warps, per_sm = c
                splits = gemv_splits(units, triton.cdiv(n, bn), x.device, per_sm)
                return _gemv(x, blocks, qtype, splits=splits, config=(bn, warps))

            out.append(Sweep("gemv", f"{name} {qtype} M={m} N={n} K={k} ({sms or '?'} SMs)", default,
                             _with_default(candidates, default, smoke), run, bytes=blocks.numel()))  # fmt: skip
    return out


def _gemm_sweeps(make: Maker, smoke: bool) -> list[Sweep]:
    from kernels.quant_matmul import _gemm, _gemm_config

    shapes = [("gate_up", 28672, 4096, "Q4_K"), ("down", 4096, 14336, "Q6_K")]
    if smoke:
        shapes = [("tiny", 40, 512, "Q4_K")]
    # (BLOCK_M, BLOCK_N, num_warps, num_stages); a GPU that cannot hold the stages drops some at launch
    candidates = [(32, 64, 4, 3), (64, 64, 4, 3), (64, 128, 4, 3), (64, 128, 8, 3), (128, 64, 4, 3), (128, 64, 8, 3),
                  (128, 128, 8, 2), (128, 128, 4, 2), (128, 128, 8, 3), (128, 256, 8, 2)]  # fmt: skip
    out = []
    for name, n, k, qtype in shapes:
        blocks = make.blocks(qtype, n, k)
        for m in (20,) if smoke else (64, 512, 2048):
            x = make.randn(m, k)
            default = _gemm_config(m)
            out.append(Sweep("gemm", f"{name} {qtype} M={m} N={n} K={k}", default,
                             _with_default(candidates, default, smoke),
                             lambda c, x=x, blocks=blocks, qtype=qtype: _gemm(x, blocks, qtype, config=c),
                             flops=2 * m * n * k))  # fmt: skip
    return out


def _paged(make: Maker, batch: int, context: int, hkv: int, d: int, block: int):
    """A shuffled paged cache holding ``batch`` sequences of ``context`` positions: (k, v, tables, lens)."""
    per = triton.cdiv(context, block)
    k, v = make.randn(batch * per * block, hkv, d), make.randn(batch * per * block, hkv, d)
    tables = make.perm(batch * per).view(batch, per)
    return k, v, tables, torch.full((batch,), context, dtype=torch.int32, device=make.device)


def _decode_sweeps(make: Maker, smoke: bool) -> list[Sweep]:
    from kernels.decode_attention import MAX_SPLITS, _tiles, decode_attention, decode_num_splits

    h, hkv, d, block = (4, 2, 32, 16) if smoke else (32, 8, 128, 16)
    out = []
    for batch, context in ((2, 40),) if smoke else ((1, 4096), (8, 4096), (64, 1024), (64, 4096), (256, 1024)):
        k, v, tables, lens = _paged(make, batch, context, hkv, d, block)
        q = make.randn(batch, h, d)
        splits = decode_num_splits(batch, hkv, tables.shape[1] * block, q.device)
        _, _, block_n, warps = _tiles(d, h // hkv)
        default = (block_n, warps, 2, splits)
        # (positions a step, num_warps, num_stages, splits): every tile at the default split, then other splits
        candidates = [(bn, w, st, splits) for bn in (32, 64, 128) for w in (4, 8) for st in (2, 3)]
        candidates += [(block_n, warps, 2, s) for s in {1, max(1, splits // 2), min(MAX_SPLITS, 2 * splits)}]

        def run(c, q=q, k=k, v=v, tables=tables, lens=lens):
            return decode_attention(q, k, v, tables, lens, block, d**-0.5, num_splits=c[3], tiles=c[:3])

        out.append(Sweep("decode_attention", f"batch={batch} ctx={context} {h}/{hkv}x{d}", default,
                         _with_default(candidates, default, smoke), run,
                         bytes=2 * batch * context * hkv * d * 2))  # fmt: skip
    return out


def _prefill_sweeps(make: Maker, smoke: bool) -> list[Sweep]:
    from kernels.prefill_attention import _config, paged_attention

    h, hkv, d, block = (4, 2, 32, 16) if smoke else (32, 8, 128, 16)
    candidates = [(128, 64, 8, 3), (128, 64, 4, 3), (128, 128, 8, 2), (128, 32, 4, 3), (64, 64, 4, 3), (64, 64, 8, 3),
                  (64, 128, 8, 2), (128, 64, 8, 2)]  # fmt: skip
    out = []
    for seqs, length in ((2, 20),) if smoke else ((1, 512), (4, 1024), (16, 256)):
        k, v, tables, lens = _paged(make, seqs, length, hkv, d, block)
        q = make.randn(seqs * length, h, d)
        cu = torch.arange(0, seqs * length + 1, length, dtype=torch.int32, device=make.device)
        bm, bn, _, warps, stages = _config(d, q.dtype, length)
        default = (bm, bn, warps, stages)

        def run(c, q=q, k=k, v=v, tables=tables, cu=cu, lens=lens, length=length):
            return paged_attention(q, k, v, tables, cu, lens, block, d**-0.5, max_seqlen_q=length, config=c)

        out.append(Sweep("prefill_attention", f"{seqs}x{length} {h}/{hkv}x{d} causal", default,
                         _with_default(candidates, default, smoke), run,
                         flops=seqs * 2 * length * length * h * d))  # fmt: skip
    return out


def _with_default(candidates: list[tuple], default: tuple, smoke: bool) -> list[tuple]:
    """The default first, then the others once each; --smoke keeps two others (the interpreter is slow)."""
    others = [c for c in dict.fromkeys(candidates) if c != default]
    return [default, *(others[:2] if smoke else others)]


def sweeps(device: str, smoke: bool, only: list[str] | None, fill: bool = True) -> list[Sweep]:
    make = Maker(device, fill)
    builders = {"gemv": _gemv_sweeps, "gemm": _gemm_sweeps, "decode_attention": _decode_sweeps,
                "prefill_attention": _prefill_sweeps}  # fmt: skip
    return [s for op, build in builders.items() if not only or op in only for s in build(make, smoke)]


def _warm(job: tuple[int, int, str, bool, list[str] | None]) -> int:
    """One of ``--jobs`` processes: runs every jobs-th candidate once, which compiles it into Triton's cache."""
    index, jobs, device, smoke, only = job
    calls = [(s, c) for s in sweeps(device, smoke, only) for c in s.candidates]
    for sweep, c in calls[index::jobs]:
        try:
            sweep.run(c)
        except REFUSED as exc:  # reported again, with its candidate, by the timing pass
            print(f"precompile {sweep.op} {c}: {type(exc).__name__}", file=sys.stderr)
    if device != "cpu":
        torch.cuda.synchronize()
    return len(calls[index::jobs])


def compile_report(arch: int, smoke: bool, only: list[str] | None) -> None:
    """Each candidate built for sm_``arch`` through kernels.cuda_compile's stand-in driver: nothing runs."""
    from kernels.cuda_compile import compile_only

    print(f"sm_{arch}, triton {triton.__version__}, commit {commit()}, {time.strftime('%Y-%m-%d')}")
    print("| op | shape | config | kernel | warps | stages | registers | spilled B | shared KiB | warps/SM |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with compile_only(arch) as record:
        for sweep in sweeps("cpu", smoke, only, fill=False):
            for c in sweep.candidates:
                try:
                    sweep.run(c)
                except REFUSED as exc:
                    print(f"| {sweep.op} | {sweep.shape} | {c} | does not build: {type(exc).__name__} |||||||")
                    record(sweep.op, sweep.shape)
                    continue
                for b in record(sweep.op, sweep.shape):  # a specialization built before is not listed again
                    mark = " (default)" if c == sweep.default else ""
                    print(f"| {sweep.op} | {sweep.shape} | {c}{mark} | {b.kernel} | {b.num_warps} | {b.num_stages} | "
                          f"{b.registers} | {b.spilled} | {b.shared / 1024:.1f} | {b.warps_per_sm} |")  # fmt: skip


def tune(device: str, smoke: bool, only: list[str] | None, rep: int, jobs: int) -> None:
    gbs, tflops, gpu = peaks(device, None, None)
    print(header(gpu, "bfloat16", gbs, tflops))
    if jobs > 1:  # on the CPU (the interpreter compiles nothing) only to check this path
        start = time.perf_counter()
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            done = sum(pool.map(_warm, [(i, jobs, device, smoke, only) for i in range(jobs)]))
        print(f"precompiled {done} candidates in {jobs} processes: {time.perf_counter() - start:.0f} s", flush=True)
    summary = []
    for sweep in sweeps(device, smoke, only):
        print(f"\n{sweep.op} {sweep.shape}", flush=True)
        fitted_default = dict(launch._STAGES)
        try:
            base = sweep.run(sweep.default).float()
        except REFUSED as exc:  # nothing to compare the candidates with
            print(f"  the default {sweep.default}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        best, default_ms = None, float("nan")
        for c in sweep.candidates:
            fitted = fitted_default if c == sweep.default else dict(launch._STAGES)
            try:
                got = sweep.run(c).float()
            except REFUSED as exc:  # a tile the GPU refuses: not a candidate here
                print(f"  {c!s:<24} {type(exc).__name__}: {str(exc)[:80]}")
                continue
            error = ((got - base).abs().max() / base.abs().max().clamp_min(1e-6)).item()
            ms = timer(device, lambda run=sweep.run, c=c: run(c), rep)
            rate, achieved = _rate(sweep, ms, gbs, tflops)
            # the same sums in another order, rounded to bf16: at most an ulp of the largest (2^-7); a wrong tile: ~1
            wrong = error > 3e-2
            print(f"  {c!s:<24}{ms * 1000:>10.1f} us{achieved:>16}{rate:>8.1%}"
                  f"{'  default' if c == sweep.default else ''}{f'  WRONG: rel. error {error:.2g}' if wrong else ''}"
                  f"{_dropped(fitted)}", flush=True)  # fmt: skip
            if c == sweep.default:
                default_ms = ms
            if not wrong and (best is None or ms < best[1]):
                best = (c, ms)
        if best is not None:
            summary.append((sweep, default_ms, *best))
    print("\n| op | shape | default | us | best | us | speedup | best's share of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for sweep, default_ms, c, ms in summary:
        print(f"| {sweep.op} | {sweep.shape} | {sweep.default} | {default_ms * 1000:.1f} | {c} | {ms * 1000:.1f} | "
              f"{default_ms / ms:.2f}x | {_rate(sweep, ms, gbs, tflops)[0]:.1%} |")  # fmt: skip


def _dropped(before: dict[tuple, int]) -> str:
    """What ``launch_fitting`` did since ``before``: the pipeline stages a candidate ran with where the GPU's shared
    memory did not hold the ones it asked for (its key ends with them)."""
    return "".join(
        f"  ran with {v} of {k[-1]} stages" for k, v in launch._STAGES.items() if k not in before and v != k[-1]
    )


def _rate(sweep: Sweep, ms: float, gbs: float, tflops: float) -> tuple[float, str]:
    """(share of the peak, the achieved rate as text)."""
    if sweep.flops:
        return sweep.flops / ms / 1e9 / tflops, f"{sweep.flops / ms / 1e9:.1f} TFLOP/s"
    return sweep.bytes / ms / 1e6 / gbs, f"{sweep.bytes / ms / 1e6:.0f} GB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--only", nargs="*", choices=OPS, help="the kernels to sweep")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, two candidates each: checks the script")
    parser.add_argument("--rep", type=int, default=25, help="milliseconds of timed runs per candidate (do_bench)")
    parser.add_argument("--jobs", type=int, default=8, help="processes compiling the candidates first (1: none)")
    parser.add_argument("--compile", action="store_true", help="no GPU: each candidate's sm_90 registers instead")
    parser.add_argument("--arch", type=int, default=90, help="with --compile: compute capability x 10")
    args = parser.parse_args()
    if args.compile:
        compile_report(args.arch, args.smoke, args.only)
    else:
        if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            sys.exit("on the CPU the kernels run only under TRITON_INTERPRET=1 (set it before starting)")
        tune(args.device, args.smoke, args.only, args.rep, args.jobs)
    print("\nreproduce: python3 benchmarks/bench_tune.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
