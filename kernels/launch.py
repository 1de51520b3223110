"""Launching a kernel whose software pipeline may not fit a GPU's shared memory.

The tile configurations are chosen for an H100 (227 KiB of shared memory per block, checked without a GPU by
``kernels.cuda_compile``). A GPU with less (an A100 has 163 KiB, an L40S 99 KiB) refuses the launch with
OutOfResources; each pipeline stage holds one more copy of the loop's tiles, so fewer stages fit.
"""

from __future__ import annotations

from triton.runtime.errors import OutOfResources

# (kernel name, device, the launch's constexprs) → the pipeline stages that fit
_STAGES: dict[tuple, int] = {}


def launch_fitting(kernel, grid: tuple[int, ...], key: tuple, num_stages: int, *args, **kwargs) -> None:
    """``kernel[grid](*args, num_stages=num_stages, **kwargs)``, retried with one stage fewer while the GPU's
    shared memory is too small; the stages that fit are remembered per ``key`` (which must name everything the
    kernel's shared memory depends on: device, dtypes, constexprs), so later launches go straight to them."""
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
