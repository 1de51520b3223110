"""Fixtures the kernel tests share."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from kernels import reference


@pytest.fixture(scope="session")
def gemma_blocks() -> dict[str, np.ndarray]:
    """A handful of rows of real tensors, one per GGUF type the kernels read: [rows, bytes] uint8 (Gemma 3's Q8_0 /
    Q5_0 / Q4_K / Q6_K and SmolLM2's Q4_1 from the packaged files; Q4_0 and Q5_1, which neither file uses, quantized
    by gguf.quants from the real Q5_0 weights)."""
    from inference import packaged
    from inference.loader.gguf import GGUFFile

    picks = {
        "Q8_0": (packaged.gemma3_gguf(), "token_embd.weight"),
        "Q5_0": (packaged.gemma3_gguf(), "blk.0.attn_q.weight"),
        "Q4_K": (packaged.gemma3_gguf(), "blk.0.attn_output.weight"),
        "Q6_K": (packaged.gemma3_gguf(), "blk.0.ffn_down.weight"),
        "Q4_1": (packaged.smollm2_gguf(), "blk.0.ffn_up.weight"),
    }
    out = {}
    for qtype, (path, name) in picks.items():
        with GGUFFile(path) as f:
            assert f.tensors[name].ggml_type.name == qtype
            raw = f.raw(name)
            rows = np.linspace(0, raw.shape[0] - 1, 24).round().astype(np.int64)  # spread over the tensor
            out[qtype] = np.ascontiguousarray(raw[rows])
    # Q4_0 and Q5_1: the same real weights, quantized as llama.cpp does (gguf.quants is its Python port)
    weights = gguf.quants.dequantize(out["Q5_0"], gguf.GGMLQuantizationType.Q5_0)
    for qtype in ("Q4_0", "Q5_1"):
        out[qtype] = gguf.quants.quantize(weights, gguf.GGMLQuantizationType[qtype])
    assert set(out) == set(reference.GGUF_BLOCKS)
    return out
