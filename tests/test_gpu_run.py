"""What a run on a lent GPU carries from here (benchmarks/gpu/): the packaged models do not travel, so the kernel
tests read their real GGUF blocks from a file written here (tests/support/gguf_blocks.py). The whole run is
rehearsed on the CPU by benchmarks/gpu/dry_run.sh, too slow for the suite (the kernels interpreted twice over)."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.gguf_blocks import GGUF_BLOCKS
from tests.support import gguf_blocks


def test_the_carried_blocks_file_holds_the_packaged_models_blocks(tmp_path, monkeypatch):
    monkeypatch.delenv("INFERENCE_TEST_GGUF_BLOCKS", raising=False)
    packaged = gguf_blocks.blocks()
    path = tmp_path / "gguf_blocks.npz"
    gguf_blocks.save(path)
    monkeypatch.setenv("INFERENCE_TEST_GGUF_BLOCKS", str(path))
    carried = gguf_blocks.blocks()
    assert sorted(carried) == sorted(packaged) == sorted(GGUF_BLOCKS)
    for qtype, rows in packaged.items():
        assert rows.dtype == np.uint8 and rows.shape[0] == gguf_blocks.ROWS
        assert np.array_equal(carried[qtype], rows), qtype
    assert path.stat().st_size < 200_000  # it travels with every call


def test_a_file_missing_a_type_is_refused(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, Q8_0=np.zeros((2, 34), dtype=np.uint8))
    with pytest.raises(ValueError, match="Q8_0"):
        gguf_blocks.load(path)
