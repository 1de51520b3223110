"""The kernels build for a GPU on this GPU-less machine. ``python -m kernels.cuda_compile --quick`` compiles the
quick set (``QUICK`` in kernels/cuda_compile_cases.py) through Triton's own JIT down to an sm_90 cubin (the
interpreter, which the rest of tests/kernels uses, never compiles anything), then this checks that no kernel spills
registers or needs more shared memory than an H100 block has. In a subprocess: this process runs Triton's
interpreter.

The quick set has every op and every kernel, but not every dtype and shape: the norms, activations, rotary, KV
writes, dequantize and sampling at all their cases; prefill, paged and decode attention for each model shape in
bf16, and in fp32 only at heads 128 and 256 (llama8b, gemma3), never in fp16; the GGUF matmul at each quant type's
GEMV (M=1) and largest GEMM tile (M=512) in bf16, every GEMV / GEMM tile width only for Q4_K in bf16, Q4_K in fp16
at M=1 and 512, in fp32 at M=1 only. The full set, every case in kernels/cuda_compile_cases.py, is
``python -m kernels.cuda_compile`` without ``--quick``; the tests do not run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kernels.cuda_compile_cases import QUICK

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 2  # processes sharing the quick set, one per core of the CI machine
OPS = ["rms_norm", "layer_norm", "rotary", "store_kv", "silu_and_mul", "gelu_tanh_and_mul", "gelu", "quick_gelu",
       "varlen_attention", "paged_attention", "decode_attention", "dequantize", "quant_matmul", "sampling",
       "fused_moe", "fused_moe_gguf"]  # fmt: skip


def compile_check(*args: str) -> subprocess.CompletedProcess:
    return compile_checks([args])[0]


def compile_checks(runs: list[tuple[str, ...]]) -> list[subprocess.CompletedProcess]:
    """``python -m kernels.cuda_compile`` with each of ``runs``' arguments, all at once (one process each)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    started = [
        (args, subprocess.Popen([sys.executable, "-m", "kernels.cuda_compile", *args], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for args in runs
    ]  # fmt: skip
    done = []
    for args, process in started:
        stdout, stderr = process.communicate(timeout=900)
        done.append(subprocess.CompletedProcess([*args], process.returncode, stdout, stderr))
    return done


def rows(report: str) -> list[list[str]]:
    """The report's table rows, split into cells: op, case, kernel, warps, stages, registers, spilled, shared,
    warps/SM."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in report.splitlines()
            if line.startswith("| ") and not line.startswith("| op ")]  # fmt: skip


def test_every_kernel_builds_for_an_h100_without_spills():
    shards = compile_checks([("--quick", "--shard", f"{i}/{SHARDS}") for i in range(SHARDS)])
    for proc in shards:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        assert "0 spill registers" in proc.stdout
    table = [row for proc in shards for row in rows(proc.stdout)]
    # every quick case was built, in one shard or the other (each logs a line; a case whose kernels another case
    # of its shard already built adds no table row)
    logged = sum(proc.stderr.count(" kernel(s) ") for proc in shards)
    assert logged == len(QUICK), [proc.stderr[-2000:] for proc in shards]
    assert {r[0] for r in table} == set(OPS)
    kernels = {r[2] for r in table}
    # two kernels per op file where there are two (decode's split-K reduction, GEMV and GEMM)
    assert {"_decode_stage1_kernel", "_decode_stage2_kernel", "_gemv_kernel", "_gemm_kernel"} <= kernels
    for op, case, kernel, _, _, registers, spilled, shared_kib, warps_per_sm in table:
        assert int(spilled) == 0 and int(registers) <= 255, (op, case, kernel)
        assert float(shared_kib) <= 227 and int(warps_per_sm) > 0, (op, case, kernel)


def test_a_launch_drops_pipeline_stages_where_shared_memory_is_smaller():
    """On an RTX-class GPU (sm_86: 99 KiB a block) the H100's two-stage tile of Gemma 3's head-256 prefill does
    not fit (104 KiB); the launch is retried with one stage (``kernels.launch.launch_fitting``), as on a real
    GPU's OutOfResources."""
    proc = compile_check("--arch", "86", "--only", "varlen_attention", "--match", "gemma3 q=512 bf16")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (row,) = rows(proc.stdout)
    assert row[2] == "_prefill_attention_kernel" and row[4] == "1" and float(row[7]) <= 99, row
