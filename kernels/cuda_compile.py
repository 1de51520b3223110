"""Compile every kernel for a CUDA GPU on a machine without one, and report what ptxas made of each.

Triton's own JIT path runs as for a launch (argument specialization, constexprs, launch options) up to the
cubin, and nothing is launched: a stand-in driver names the target (sm_90, an H100, by default) and the
kernels' public functions are called with CPU tensors at the configurations the engine uses (the packaged
models, a Llama-3-8B-shaped model; bf16, fp16 and the fp32 test path). ``cuobjdump -res-usage``, shipped with
Triton, then gives each kernel's registers, spilled bytes (local memory) and shared memory, and so the warps
an SM can hold.

This catches what the interpreter cannot: code that only fails to compile (a loop-carried value changing type,
an op without a lowering, too much shared memory) and register spills. It says nothing about speed.

    python -m kernels.cuda_compile [--arch 90] [--only quant_matmul decode_attention ...] [--quick] [--shard I/N]

TRITON_INTERPRET must be unset: the interpreter replaces the JIT (the tests run this in a subprocess).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.errors import OutOfResources
from triton.runtime.jit import JITFunction

# an H100 SM: 64K 32-bit registers, 228 KiB of shared memory (1 KiB of it reserved per block), 64 warps
SM_REGISTERS, SM_SHARED, SM_WARPS, SM_BLOCKS = 65536, 228 * 1024, 64, 32
SM_COUNT = 132  # the launchers size their grids from it (K splits, decode splits)
# the most shared memory one block may use, by compute capability: a launch above it fails (OutOfResources)
MAX_SHARED = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}


@dataclass
class Compiled:
    op: str
    case: str
    kernel: str
    num_warps: int
    num_stages: int
    registers: int
    spilled: int  # bytes of local memory per thread: register spills
    shared: int

    @property
    def warps_per_sm(self) -> int:
        """Resident warps per SM, limited by registers (allocated per warp in units of 256), shared memory,
        warp and block slots."""
        per_warp = -(-self.registers * 32 // 256) * 256
        blocks = min(
            SM_REGISTERS // max(1, per_warp * self.num_warps),
            SM_SHARED // (self.shared + 1024),
            SM_WARPS // self.num_warps,
            SM_BLOCKS,
        )
        return blocks * self.num_warps


class _CompileOnlyDriver:
    """Just enough of a Triton driver for the JIT to compile for ``target`` without a GPU."""

    def __init__(self, target: GPUTarget):
        self.target = target

    def get_current_target(self) -> GPUTarget:
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def is_active(self) -> bool:
        return True


def _resources(cubin: bytes) -> tuple[int, int]:
    """(registers, local bytes) of the one function in ``cubin``, from cuobjdump."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    found = re.search(r"REG:(\d+) STACK:\d+ SHARED:\d+ LOCAL:(\d+)", text)
    if found is None:
        raise RuntimeError(f"cuobjdump printed no resource usage:\n{text}")
    return int(found.group(1)), int(found.group(2))


@contextlib.contextmanager
def compile_only(arch: int = 90) -> Iterator[Callable[[str, str], list[Compiled]]]:
    """Inside, a kernel launch compiles for sm_``arch`` and returns without running. Yields ``record(op, case)``:
    it returns what was compiled since the previous call, labelled."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter replaces the compiler")
    if arch not in MAX_SHARED:
        raise ValueError(f"unknown arch {arch} (known: {', '.join(map(str, MAX_SHARED))})")
    from kernels import launch

    launched: list = []
    original_run = JITFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        kernel = original_run(self, *args, grid=grid, warmup=True, **kwargs)
        # what loading it on the GPU would check first (CompiledKernel._init_handles)
        if kernel.metadata.shared > MAX_SHARED[arch]:
            raise OutOfResources(kernel.metadata.shared, MAX_SHARED[arch], "shared memory")
        launched.append(kernel)
        return kernel

    seen: set[str] = set()

    def record(op: str, case: str) -> list[Compiled]:
        out = []
        for kernel in launched:
            meta = kernel.metadata
            if meta.hash in seen:  # the same specialization again: compiled once, as the JIT's cache does
                continue
            seen.add(meta.hash)
            registers, spilled = _resources(kernel.asm["cubin"])
            out.append(Compiled(op, case, meta.name, meta.num_warps, meta.num_stages, registers, spilled, meta.shared))
        launched.clear()
        return out

    previous = driver._active  # reset_active() would look for a real driver, and find none
    driver.set_active(_CompileOnlyDriver(GPUTarget("cuda", arch, 32)))
    JITFunction.run = run
    # the launchers size grids from the SM count: the GPU's, not the interpreter's stand-in
    saved = launch.sm_count
    launch.sm_count = lambda device: SM_COUNT
    try:
        yield record
    finally:
        JITFunction.run = original_run
        launch.sm_count = saved
        driver._active = previous


def run_cases(
    arch: int = 90,
    only: list[str] | None = None,
    match: str | None = None,
    quick: bool = False,
    log=print,
    shard: tuple[int, int] = (0, 1),
) -> list[Compiled]:
    """Compiles the cases of ``kernels.cuda_compile_cases`` → what was built; a case that fails to compile, or
    whose kernel would not fit the GPU's shared memory, raises, naming it. ``only``: those ops; ``match``: cases
    whose label holds it; ``quick``: the cases marked quick (every op and code path, fewer dtypes and shapes);
    ``shard`` (i, n): every n-th of the chosen cases from the i-th, so that n processes share the work."""
    from kernels.cuda_compile_cases import CASES, QUICK

    chosen = [
        (op, case, call)
        for op, case, call in CASES
        if not ((only and op not in only) or (match and match not in case) or (quick and (op, case) not in QUICK))
    ]
    built = []
    with compile_only(arch) as record:
        for op, case, call in chosen[shard[0] :: shard[1]]:
            start = time.perf_counter()
            try:
                call()
            except Exception as exc:
                raise RuntimeError(f"{op} [{case}] does not build for sm_{arch}: {exc}") from exc
            new = record(op, case)
            built += new
            log(f"{op:18} {case:44} {len(new)} kernel(s) {time.perf_counter() - start:5.1f} s")
    return built


def report(built: list[Compiled]) -> str:
    lines = [
        "| op | case | kernel | warps | stages | registers | spilled B | shared KiB | warps/SM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in built:
        lines.append(
            f"| {c.op} | {c.case} | {c.kernel} | {c.num_warps} | {c.num_stages} | {c.registers} | {c.spilled} | "
            f"{c.shared / 1024:.1f} | {c.warps_per_sm} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100, 80: A100)")
    parser.add_argument("--only", nargs="*", help="ops to compile (quant_matmul, decode_attention...)")
    parser.add_argument("--match", help="only the cases whose label holds this")
    parser.add_argument("--quick", action="store_true", help="every op and code path, fewer dtypes and shapes")
    parser.add_argument("--shard", default="0/1", help="I/N: every N-th chosen case from the I-th (N processes)")
    args = parser.parse_args()
    index, count = (int(n) for n in args.shard.split("/"))
    if not 0 <= index < count:
        parser.error("--shard I/N needs 0 <= I < N")
    start = time.perf_counter()
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    built = run_cases(args.arch, args.only, args.match, args.quick, log=log, shard=(index, count))
    print(report(built))
    spilling = [c for c in built if c.spilled]
    print(
        f"\n{len(built)} kernels compiled for sm_{args.arch} in {time.perf_counter() - start:.0f} s "
        f"(triton {triton.__version__}); {len(spilling)} spill registers"
    )
    print("reproduce: python -m kernels.cuda_compile " + " ".join(sys.argv[1:]))
    return 1 if spilling else 0


if __name__ == "__main__":
    sys.exit(main())
