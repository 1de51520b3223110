"""What the launchers share: whether Triton's interpreter runs the kernels, the GPU's SM count, and launching a
kernel whose software pipeline may not fit a GPU's shared memory.

The tile configurations are chosen for an H100 (227 KiB of shared memory per block, checked without a GPU by
``kernels.cuda_compile``). A GPU with less (an A100 has 163 KiB, an L40S 99 KiB) refuses the launch with
OutOfResources; each pipeline stage holds one more copy of the loop's tiles, so fewer stages fit.
"""

from __future__ import annotations

import functools
import os

import torch
from triton.runtime.errors import OutOfResources

# Under the interpreter (the CPU tests) tl.dot on bf16/fp16 is wrong: the kernels feed it float32 operands there.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

# (kernel name, device, the launch's constexprs, the stages asked for) → the pipeline stages that fit
_STAGES: dict[tuple, int] = {}


@functools.cache
def sm_count(device: torch.device) -> int | None:
    """The GPU's streaming multiprocessors, which launchers size their grids from; None off CUDA (the interpreter,
    where each launcher picks its own stand-in). ``kernels.cuda_compile`` replaces it with an H100's."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return None


def launch_fitting(kernel, grid: tuple[int, ...], key: tuple, num_stages: int, *args, **kwargs) -> None:
    """``kernel[grid](*args, num_stages=num_stages, **kwargs)``, retried with one stage fewer while the GPU's
    shared memory is too small; the stages that fit are remembered per ``key`` (which must name everything the
    kernel's shared memory depends on: device, dtypes, constexprs), and per stages asked for, so later launches
    go straight to them and a launch asking for fewer (benchmarks/bench_tune.py's candidates) gets what it asks."""
    key = (*key, num_stages)
    stages = _STAGES.get(key, num_stages)
    while True:
        try:
            kernel[grid](*args, num_stages=stages, **kwargs)
        except OutOfResources as exc:
            if exc.name != "shared memory" or stages == 1:
                raise
            stages -= 1
            continue
        _STAGES[key] = stages
        return
