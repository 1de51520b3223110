"""Each Triton kernel of ``kernels/`` against torch eager and ``torch.compile`` on the same inputs, on a GPU.

For every case: time (median of ``triton.testing.do_bench``), the bytes it must move or the FLOPs it must do,
the achieved GB/s or TFLOP/s, and that as a fraction of the GPU's peak (memory bandwidth for memory-bound
ops, dense bf16 tensor throughput for attention prefill and GEMMs). Shapes are Llama-3-8B's (hidden 4096,
32 / 8 heads of 128, MLP 14336) and Gemma 3's vocabulary (262144) for sampling.

    python3 benchmarks/bench_kernels.py                      # on a CUDA GPU
    python3 benchmarks/bench_kernels.py --only rms_norm decode_attention
    TRITON_INTERPRET=1 python3 benchmarks/bench_kernels.py --device cpu --smoke   # tiny shapes: checks the
                                                                                  # script, times mean nothing
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernels import reference as ref  # noqa: E402

# name fragment -> (memory GB/s, dense bf16 TFLOP/s), from the vendors' data sheets
PEAKS = {"H200": (4800, 989), "H100 PCIe": (2000, 756), "H100": (3350, 989), "A100": (2039, 312), "L4": (300, 121)}


@dataclass
class Case:
    name: str
    op: str
    ours: Callable[[], object]
    eager: Callable[[], object] | None
    compiled: Callable[[], object] | None
    bytes: float = 0.0  # memory-bound cases: bytes that must move
    flops: float = 0.0  # compute-bound cases


def commit() -> str:
    """The checkout's short commit: ``COMMIT`` where the tree came without .git (benchmarks/gpu/run_issue5.sh)."""
    found = (
        os.environ.get("COMMIT")
        or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    )
    return found or "?"


def peaks(device: str, gbs: float | None, tflops: float | None) -> tuple[float, float, str]:
    if device == "cpu":
        return gbs or 1.0, tflops or 1.0, "cpu"
    name = torch.cuda.get_device_name()
    found = next((v for k, v in PEAKS.items() if k in name), (gbs or 1.0, tflops or 1.0))
    return gbs or found[0], tflops or found[1], name


def header(gpu: str, dtype: str, gbs: float, tflops: float) -> str:
    """The figures' first line: what ran them, on which commit and day, against which peaks."""
    return f"{gpu}, {dtype}, commit {commit()}, {time.strftime('%Y-%m-%d')}; peaks {gbs:.0f} GB/s, {tflops:.0f} TFLOP/s"


def timer(device: str, fn: Callable[[], object], reps: int) -> float:
    """Median milliseconds of ``fn``."""
    if device != "cpu":
        from triton.testing import do_bench

        return do_bench(fn, warmup=25, rep=reps, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def random_blocks(qtype: str, n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """A GGUF weight [n, k / block_weights * block_bytes] uint8 of random bytes, its fp16 scales small (below 1e-3)
    so that products stay finite."""
    weights, nbytes = ref.GGUF_BLOCKS[qtype]
    raw = torch.randint(0, 256, (n, k // weights * nbytes), generator=g, dtype=torch.uint8)
    for offset in ref.GGUF_HALF_FIELDS[qtype]:
        raw.view(n, -1, nbytes)[:, :, offset : offset + 2] = (
            (torch.rand(n, k // weights, generator=g) * 1e-3).half().view(torch.uint8).view(n, k // weights, 2)
        )
    return raw


def compile_or_none(fn: Callable, enabled: bool) -> Callable | None:
    if not enabled:
        return None
    return torch.compile(fn, dynamic=False)


def cases(device: str, dtype: torch.dtype, smoke: bool, use_compile: bool) -> list[Case]:
    from kernels.activation import gelu_tanh_and_mul, silu_and_mul
    from kernels.decode_attention import decode_attention
    from kernels.kv_cache import store_kv
    from kernels.prefill_attention import paged_attention
    from kernels.quant_matmul import quant_matmul
    from kernels.rms_norm import rms_norm
    from kernels.rotary import rotary_embedding
    from kernels.sampling import top_k_top_p_sample

    g = torch.Generator(device="cpu").manual_seed(0)
    size = lambda n: max(1, n // 64) if smoke else n  # noqa: E731 - shapes shrink together for --smoke

    def rand(*shape, dt=dtype):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dt)

    e = torch.tensor([], dtype=dtype).element_size()
    D, H, HKV, HD, I = size(4096), 32, 8, size(128) if smoke else 128, size(14336)  # noqa: E741
    out: list[Case] = []

    # --- norms, activations, rotary: memory-bound, one read and one write of each operand
    for T in (1, size(4096)):
        x, r, w = rand(T, D), rand(T, D), rand(D)
        eager = partial(ref.rms_norm, x, w, 1e-6, residual=r)
        ours = partial(rms_norm, x, w, 1e-6, residual=r)
        out.append(Case(f"rms_norm+residual T={T} D={D}", "rms_norm", ours, eager, compile_or_none(eager, use_compile),
                        bytes=(4 * T * D + D) * e))  # fmt: skip
    T = size(4096)
    x = rand(T, 2 * I)
    for name, fn, rfn in (("silu_and_mul", silu_and_mul, ref.silu_and_mul),
                          ("gelu_tanh_and_mul", gelu_tanh_and_mul, ref.gelu_tanh_and_mul)):  # fmt: skip
        eager = partial(rfn, x)
        out.append(Case(f"{name} T={T} I={I}", name, partial(fn, x), eager, compile_or_none(eager, use_compile),
                        bytes=3 * T * I * e))  # fmt: skip
    q, k = rand(T, H, HD), rand(T, HKV, HD)
    pos = torch.arange(T, device=device)
    inv = (1.0 / (500000.0 ** (torch.arange(0, HD, 2).float() / HD))).to(device)
    eager = lambda: ref.rotary_embedding(q, k, pos, inv)  # noqa: E731
    out.append(Case(f"rotary T={T} {H}/{HKV}x{HD}", "rotary", lambda: rotary_embedding(q, k, pos, inv, inplace=True),
                    eager, compile_or_none(eager, use_compile), bytes=2 * T * (H + HKV) * HD * e))  # fmt: skip

    # --- KV cache write
    slots = size(65536)
    k_cache, v_cache = rand(slots, HKV, HD), rand(slots, HKV, HD)
    kv = rand(T, HKV, HD)
    mapping = torch.randperm(slots, generator=g)[:T].to(device)
    out.append(Case(f"store_kv T={T}", "store_kv", partial(store_kv, kv, kv, k_cache, v_cache, mapping),
                    partial(ref.store_kv, kv, kv, k_cache, v_cache, mapping), None,
                    bytes=4 * T * HKV * HD * e))  # fmt: skip

    # --- attention: prefill (compute-bound) and decode (memory-bound), Llama-8B heads
    block = 16
    seqs, length = 4, size(1024)
    if True:  # one prefill case (a block, so that its names stay local to it)
        total = seqs * length
        qp, kp, vp = rand(total, H, HD), rand(total, HKV, HD), rand(total, HKV, HD)
        blocks_per = -(-length // block)
        tables = torch.arange(seqs * blocks_per, dtype=torch.int32, device=device).view(seqs, blocks_per)
        kc, vc = rand(seqs * blocks_per * block, HKV, HD), rand(seqs * blocks_per * block, HKV, HD)
        for i in range(seqs):  # sequence i's tokens at its own blocks
            kc[i * blocks_per * block : i * blocks_per * block + length] = kp[i * length : (i + 1) * length]
            vc[i * blocks_per * block : i * blocks_per * block + length] = vp[i * length : (i + 1) * length]
        cu = torch.arange(0, total + 1, length, dtype=torch.int32, device=device)
        lens = torch.full((seqs,), length, dtype=torch.int32, device=device)

        def sdpa(qp=qp, kp=kp, vp=vp, seqs=seqs, length=length):
            qq = qp.view(seqs, length, H, HD).transpose(1, 2)
            kk = kp.view(seqs, length, HKV, HD).transpose(1, 2)
            vv = vp.view(seqs, length, HKV, HD).transpose(1, 2)
            return F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)

        out.append(Case(f"prefill attention {seqs}x{length} {H}/{HKV}x{HD} causal", "prefill_attention",
                        partial(paged_attention, qp, kc, vc, tables, cu, lens, block, HD**-0.5, max_seqlen_q=length),
                        sdpa, None, flops=seqs * 2 * length * length * H * HD))  # fmt: skip
    for batch, context in ((1, size(4096)), (64, size(4096))):
        blocks_per = -(-context // block)
        kc, vc = rand(batch * blocks_per * block, HKV, HD), rand(batch * blocks_per * block, HKV, HD)
        tables = torch.randperm(batch * blocks_per, generator=g).to(device=device, dtype=torch.int32)
        tables = tables.view(batch, blocks_per)
        lens = torch.full((batch,), context, dtype=torch.int32, device=device)
        qd = rand(batch, H, HD)
        pos_slots = tables.long()[:, :, None] * block + torch.arange(block, device=device)
        pos_slots = pos_slots.view(batch, -1)[:, :context]

        def gathered(qd=qd, kc=kc, vc=vc, pos_slots=pos_slots):  # today's torch path: gather, then SDPA
            kk, vv = kc[pos_slots].transpose(1, 2), vc[pos_slots].transpose(1, 2)
            return F.scaled_dot_product_attention(qd[:, :, None], kk, vv, enable_gqa=True)

        out.append(Case(f"decode attention batch={batch} ctx={context}", "decode_attention",
                        lambda qd=qd, kc=kc, vc=vc, tables=tables, lens=lens: decode_attention(
                            qd, kc, vc, tables, lens, block, HD**-0.5),
                        gathered, None, bytes=2 * batch * context * HKV * HD * e))  # fmt: skip

    # --- GGUF matmul: GEMV (decode, memory-bound) and GEMM (prefill, compute-bound)
    N, K = size(14336), size(4096) if smoke else 4096
    K = max(256, K - K % 256)
    for qtype in ("Q4_K", "Q6_K", "Q8_0", "Q4_1", "Q5_0"):  # the last two: SmolLM2's and Gemma 3's main types
        blocks = random_blocks(qtype, N, K, g).to(device)
        dense = ref.dequantize(blocks, qtype).to(dtype)
        for M in (1, size(512)):
            x = rand(M, K)
            case = Case(f"quant_matmul {qtype} M={M} N={N} K={K}", "quant_matmul",
                        lambda x=x, blocks=blocks, qtype=qtype: quant_matmul(x, blocks, qtype),
                        lambda x=x, dense=dense: x @ dense.T, None)  # fmt: skip
            if M == 1:
                case.bytes = blocks.numel()  # the quantized weight, read once
            else:
                case.flops = 2 * M * N * K
            out.append(case)

    # --- mixture of experts, Mixtral-8x7B's experts: decode (memory-bound: the experts touched, read once) and
    # prefill (compute-bound), against the torch reference (one matmul per expert) and its torch.compile
    from inference.layers.moe import route
    from kernels.fused_moe import fused_moe

    experts, top_k = 8, 2
    w13, w2 = rand(experts, 2 * I, D) * 0.02, rand(experts, D, I) * 0.02
    for T in (1, size(512)):
        x = rand(T, D)
        weights, ids = route(torch.randn(T, experts, generator=g).to(device), top_k, True)
        eager = partial(ref.fused_moe, x, w13, w2, weights, ids)
        ours = partial(fused_moe, x, w13, w2, weights, ids)
        case = Case(f"fused_moe T={T} E={experts} k={top_k} H={D} I={I}", "fused_moe", ours, eager,
                    compile_or_none(eager, use_compile))  # fmt: skip
        if T == 1:
            case.bytes = top_k * 3 * I * D * e  # the two experts' gate, up and down
        else:
            case.flops = 2 * T * top_k * 3 * I * D
        out.append(case)

    # --- the same experts in Q4_K_M's blocks (gate / up Q4_K, down Q6_K), dequantized in registers, against the
    # torch reference on the dequantized experts and its torch.compile
    from kernels.fused_moe_gguf import fused_moe_gguf

    def expert_blocks(qtype: str, rows: int, k: int) -> torch.Tensor:  # [experts, rows, k / bw * bb], small scales
        return random_blocks(qtype, experts * rows, k, g).view(experts, rows, -1).to(device)

    types = ("Q4_K", "Q4_K", "Q6_K") if not smoke else ("Q8_0",) * 3  # --smoke: sizes no multiple of 256
    gate, up, down = (
        (expert_blocks(t, rows, k), t) for t, (rows, k) in zip(types, ((I, D), (I, D), (D, I)), strict=True)
    )

    def dense(stack: tuple[torch.Tensor, str]) -> torch.Tensor:  # [experts, rows, k] in the activations' dtype
        blocks, qtype = stack
        return ref.dequantize(blocks.reshape(-1, blocks.shape[-1]), qtype).view(*blocks.shape[:2], -1).to(dtype)

    w13_q, w2_q = torch.cat([dense(gate), dense(up)], 1), dense(down)
    for T in (1, size(512)):
        x = rand(T, D)
        weights, ids = route(torch.randn(T, experts, generator=g).to(device), top_k, True)
        eager = partial(ref.fused_moe, x, w13_q, w2_q, weights, ids)
        case = Case(f"fused_moe_gguf {'/'.join(types)} T={T} E={experts} k={top_k} H={D} I={I}", "fused_moe_gguf",
                    partial(fused_moe_gguf, x, gate, up, down, weights, ids), eager,
                    compile_or_none(eager, use_compile))  # fmt: skip
        if T == 1:  # the two experts' blocks, read once
            case.bytes = top_k * sum(b[0][0].numel() for b in (gate, up, down))
        else:
            case.flops = 2 * T * top_k * 3 * I * D
        out.append(case)

    # --- sampling over a full vocabulary
    rows, vocab = size(64), size(262144)
    if True:
        logits = rand(rows, vocab, dt=torch.float32)
        temp = torch.full((rows,), 0.8, device=device)
        top_k = torch.full((rows,), 50, dtype=torch.int32, device=device)
        top_p = torch.full((rows,), 0.9, device=device)
        u = torch.rand(rows, generator=g).to(device)
        out.append(Case(f"top_k_top_p_sample {rows}x{vocab}", "sampling",
                        partial(top_k_top_p_sample, logits, temp, top_k, top_p, u),
                        lambda: ref.sample_from_probs(ref.top_k_top_p_probs(logits, temp, top_k, top_p), u), None,
                        bytes=logits.numel() * 4))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--only", nargs="*", help="ops to run (rms_norm, decode_attention, quant_matmul...)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, to check the script on the CPU")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile baselines")
    parser.add_argument("--peak-gbs", type=float)
    parser.add_argument("--peak-tflops", type=float)
    parser.add_argument("--rep", type=int, default=200, help="milliseconds per measurement (do_bench)")
    args = parser.parse_args()
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("on the CPU the kernels run only under TRITON_INTERPRET=1 (set it before starting)")
    dtype = getattr(torch, args.dtype)
    gbs, tflops, gpu = peaks(args.device, args.peak_gbs, args.peak_tflops)
    print(header(gpu, args.dtype, gbs, tflops))
    columns = f"{'case':<50}{'ours ms':>10}{'eager ms':>10}{'compile ms':>11}{'achieved':>16}{'of peak':>9}"
    print(columns)
    print("-" * len(columns))
    use_compile = not args.no_compile and args.device != "cpu"
    for case in cases(args.device, dtype, args.smoke, use_compile):
        if args.only and case.op not in args.only:
            continue
        ours = timer(args.device, case.ours, args.rep)
        eager = timer(args.device, case.eager, args.rep) if case.eager else float("nan")
        compiled = timer(args.device, case.compiled, args.rep) if case.compiled else float("nan")
        if case.flops:
            rate, peak = case.flops / ours / 1e9, tflops
            achieved = f"{rate:.1f} TFLOP/s"
        else:
            rate, peak = case.bytes / ours / 1e6, gbs
            achieved = f"{rate:.0f} GB/s"
        print(f"{case.name:<50}{ours:>10.4f}{eager:>10.4f}{compiled:>11.4f}{achieved:>16}{rate / peak:>9.1%}")
    print()
    print("reproduce: python3 benchmarks/bench_kernels.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
