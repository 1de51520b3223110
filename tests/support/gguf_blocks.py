"""Real GGUF blocks for the kernel tests: a handful of rows of real tensors, one per GGUF type the kernels read.

They come from the packaged model files (Gemma 3's Q8_0 / Q5_0 / Q4_K / Q6_K, SmolLM2's Q4_1), and Q4_0 / Q5_1,
which neither file uses, are quantized by gguf.quants (llama.cpp's Python port) from the real Q5_0 weights.
A machine without the packaged models (the lent GPU: only the working tree and ~64 MiB travel there) reads the same
blocks from a file written here beforehand, named by ``INFERENCE_TEST_GGUF_BLOCKS``:

    .venv/bin/python -m tests.support.gguf_blocks .whl/gguf_blocks.npz
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from kernels.gguf_blocks import GGUF_BLOCKS

ROWS = 24  # per type, spread over the tensor


def pick() -> dict[str, np.ndarray]:
    """{type: [ROWS, bytes per row] uint8} read from the packaged model files."""
    import gguf

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
            rows = np.linspace(0, raw.shape[0] - 1, ROWS).round().astype(np.int64)
            out[qtype] = np.ascontiguousarray(raw[rows])
    weights = gguf.quants.dequantize(out["Q5_0"], gguf.GGMLQuantizationType.Q5_0)
    for qtype in ("Q4_0", "Q5_1"):
        out[qtype] = gguf.quants.quantize(weights, gguf.GGMLQuantizationType[qtype])
    return out


def save(path: Path) -> None:
    np.savez_compressed(path, **pick())


def load(path: Path) -> dict[str, np.ndarray]:
    """The blocks ``save`` wrote, one array per GGUF type the kernels read (``kernels.gguf_blocks.GGUF_BLOCKS``)."""
    with np.load(path) as f:
        out = {qtype: f[qtype] for qtype in f.files}
    if set(out) != set(GGUF_BLOCKS):
        raise ValueError(f"{path} holds {sorted(out)}, not {sorted(GGUF_BLOCKS)}")
    return out


def blocks() -> dict[str, np.ndarray]:
    """From the file ``INFERENCE_TEST_GGUF_BLOCKS`` names, else from the packaged models."""
    saved = os.environ.get("INFERENCE_TEST_GGUF_BLOCKS")
    if saved:
        return load(Path(saved))
    out = pick()
    assert set(out) == set(GGUF_BLOCKS), sorted(out)  # every type the kernels read has its test blocks
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1])
    save(target)
    print(f"{target}: {target.stat().st_size} bytes, {', '.join(GGUF_BLOCKS)} x {ROWS} rows")
