"""Shared by the kernel tests: the device they run on and the tolerances per dtype.

On the CPU (CI) the kernels run under ``TRITON_INTERPRET=1`` (set in ``tests/conftest.py`` before anything
imports Triton) on small and odd shapes; with ``INFERENCE_TEST_DEVICE=cuda`` the same tests run compiled,
plus the ones marked for real shapes.
"""

from __future__ import annotations

import os

import pytest
import torch

DEVICE = torch.device(os.environ.get("INFERENCE_TEST_DEVICE", "cpu"))
ON_GPU = DEVICE.type == "cuda"

# (dtype, atol, rtol) for comparing a kernel with its float32-computing reference. bf16 inputs are converted
# to float32 inside the kernels before tl.dot (the interpreter's bf16 tl.dot is wrong).
DTYPES = [
    pytest.param(torch.float32, 1e-5, 1e-5, id="fp32"),
    pytest.param(torch.float16, 2e-3, 2e-3, id="fp16"),
    pytest.param(torch.bfloat16, 2e-2, 2e-2, id="bf16"),
]


def shapes(small: list, real: list) -> list:
    """Parameters for a shape axis: the small, odd ones everywhere, the real model shapes on a GPU only (the
    interpreter would take minutes per case). Never a skip: the CPU run simply has fewer cases."""
    return small + (real if ON_GPU else [])
