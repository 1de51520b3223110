"""kernels.launch.launch_fitting: a launch that a GPU refuses for shared memory is retried with fewer pipeline
stages, and what fits is remembered per configuration and per stages asked for."""

from __future__ import annotations

import pytest
from triton.runtime.errors import OutOfResources

from kernels import launch


class _Kernel:
    """Stands in for a JIT function on a GPU whose shared memory holds ``fits`` stages; notes every launch."""

    def __init__(self, fits: int):
        self.fits, self.launches = fits, []

    def __getitem__(self, grid):
        def run(*args, num_stages, **kwargs):
            self.launches.append(num_stages)
            if num_stages > self.fits:
                raise OutOfResources(num_stages * 100_000, self.fits * 100_000, "shared memory")

        return run


def test_stages_drop_until_the_launch_fits_and_the_fit_is_remembered():
    kernel = _Kernel(fits=2)
    launch.launch_fitting(kernel, (1,), ("test-fit", 1), 4)
    assert kernel.launches == [4, 3, 2]
    launch.launch_fitting(kernel, (1,), ("test-fit", 1), 4)  # straight to what fits
    assert kernel.launches[3:] == [2]


def test_a_launch_asking_for_fewer_stages_gets_them():
    """A remembered fit of 2 for 3 stages asked must not turn a later request for 1 into 2 (the sweep of
    benchmarks/bench_tune.py times each candidate as asked), nor one for 3 into a retry."""
    kernel = _Kernel(fits=2)
    launch.launch_fitting(kernel, (1,), ("test-asked", 1), 3)
    launch.launch_fitting(kernel, (1,), ("test-asked", 1), 1)
    launch.launch_fitting(kernel, (1,), ("test-asked", 1), 3)
    assert kernel.launches == [3, 2, 1, 2]


def test_other_errors_and_one_stage_that_does_not_fit_are_raised():
    with pytest.raises(OutOfResources):
        launch.launch_fitting(_Kernel(fits=0), (1,), ("test-none", 1), 2)

    class Registers(_Kernel):
        def __getitem__(self, grid):
            def run(*args, num_stages, **kwargs):
                raise OutOfResources(300, 255, "registers")

            return run

    with pytest.raises(OutOfResources, match="registers"):
        launch.launch_fitting(Registers(fits=4), (1,), ("test-registers", 1), 2)
