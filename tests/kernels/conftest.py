"""Fixtures the kernel tests share. On the lent GPU, pytest loads this file and not tests/conftest.py (no Django
there: benchmarks/gpu/run_issue5.sh passes ``--confcutdir tests/kernels``), so it imports only what travels."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.support import gguf_blocks, interpreter_checks

# cuBLAS is deterministic with this workspace setting (read at its first handle), so on a GPU the references' matmuls
# do not warn under the deterministic mode that poisoned_empty turns on
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
if os.environ.get("TRITON_INTERPRET") == "1":
    interpreter_checks.install()  # interpreted loads and stores: in bounds, no races


@pytest.fixture(scope="session")
def gemma_blocks() -> dict[str, np.ndarray]:
    """A handful of rows of real tensors, one per GGUF type the kernels read: [rows, bytes] uint8 (see
    tests/support/gguf_blocks.py: from the packaged files, or the file of them the GPU run carries)."""
    return gguf_blocks.blocks()


@pytest.fixture(autouse=True)
def poisoned_empty():
    """Every ``torch.empty`` in a kernel test (the launchers' outputs and workspaces too) comes filled with NaN, or
    an integer type's largest value: an element a kernel should write and does not shows, instead of whatever the
    allocator's reused memory held (often the reference's own result, computed just before). PyTorch fills them
    while deterministic algorithms are on; ``warn_only``: a nondeterministic op only warns."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.utils.deterministic.fill_uninitialized_memory = saved[2]
