"""Shared by the kernel tests: the device they run on, the tolerances per dtype, and random GGUF blocks.

On the CPU (CI) the kernels run under ``TRITON_INTERPRET=1`` (set in ``tests/conftest.py`` before anything
imports Triton) on small and odd shapes; with ``INFERENCE_TEST_DEVICE=cuda`` the same tests run compiled,
plus the ones marked for real shapes.
"""

from __future__ import annotations

import os

import pytest
import torch

from kernels import reference

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


# --- GGUF blocks ---------------------------------------------------------------------------------------------

QTYPES = list(reference.GGUF_BLOCKS)
# the 32-weight block types: K need only be a multiple of 32
QTYPES_32 = [q for q, (weights, _) in reference.GGUF_BLOCKS.items() if weights == 32]


def random_blocks(n: int, k: int, qtype: str, g: torch.Generator, halves: torch.Tensor | None = None) -> torch.Tensor:
    """[n, k / weights * bytes] uint8: random bytes whose fp16 fields hold ``halves`` (a float16 tensor sampled
    with replacement) or, by default, random finite bit patterns (subnormals and values up to 65504 included)."""
    weights, nbytes = reference.GGUF_BLOCKS[qtype]
    b = torch.randint(0, 256, (n, k // weights, nbytes), generator=g, dtype=torch.uint8)
    for off in reference.GGUF_HALF_FIELDS[qtype]:
        if halves is None:
            bits = torch.randint(0, 1 << 16, (n, k // weights), generator=g, dtype=torch.int32)
            bits = torch.where(((bits >> 10) & 0x1F) == 0x1F, bits & 0x83FF, bits)  # inf / NaN exponent → subnormal
            h = bits.to(torch.int16).view(torch.float16)
        else:
            h = halves[torch.randint(0, halves.numel(), (n, k // weights), generator=g)]
        b[:, :, off : off + 2] = h.contiguous().view(torch.uint8).reshape(n, k // weights, 2)
    return b.reshape(n, -1)
