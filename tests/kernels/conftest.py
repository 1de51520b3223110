"""Fixtures the kernel tests share. On the lent GPU, pytest loads this file and not tests/conftest.py (no Django
there: benchmarks/gpu/run_issue5.sh passes ``--confcutdir tests/kernels``), so it imports only what travels."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.support import gguf_blocks, interpreter_checks

if os.environ.get("TRITON_INTERPRET") == "1":
    interpreter_checks.install()  # interpreted loads and stores: in bounds, no races


@pytest.fixture(scope="session")
def gemma_blocks() -> dict[str, np.ndarray]:
    """A handful of rows of real tensors, one per GGUF type the kernels read: [rows, bytes] uint8 (see
    tests/support/gguf_blocks.py: from the packaged files, or the file of them the GPU run carries)."""
    return gguf_blocks.blocks()
