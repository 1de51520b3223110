"""Load an HF model directory (config.json + ``*.safetensors``, single file or sharded, or PyTorch's
``pytorch_model*.bin`` where there are no safetensors) into our models."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from inference.models.pooling import read_pooling
from inference.models.registry import build_model

INDEX_FILE = "model.safetensors.index.json"
BIN_INDEX_FILE = "pytorch_model.bin.index.json"


def read_hf_config(model_dir: Path) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not an HF model directory")
    return json.loads(path.read_text())


def safetensors_files(model_dir: Path) -> list[Path]:
    """The shards named by the index if there is one, else every ``*.safetensors`` in the directory."""
    model_dir = Path(model_dir)
    index = model_dir / INDEX_FILE
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [model_dir / name for name in names]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise FileNotFoundError(f"{index} names missing shards: {', '.join(absent)}")
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir}")
    return files


def iter_safetensors(model_dir: Path, skip: Collection[str] = ()) -> Iterator[tuple[str, torch.Tensor]]:
    """(HF name, CPU tensor) one at a time: at most one tensor beyond the model is held in memory; the names in
    ``skip`` are not read."""
    for path in safetensors_files(model_dir):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name in f.keys():
                if name not in skip:
                    yield name, f.get_tensor(name)


def torch_bin_files(model_dir: Path) -> list[Path]:
    """``pytorch_model.bin``, or the shards its index names."""
    model_dir = Path(model_dir)
    index = model_dir / BIN_INDEX_FILE
    if index.is_file():
        files = [model_dir / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        files = [model_dir / "pytorch_model.bin"]
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"no *.safetensors in {model_dir} and missing: {', '.join(absent)}")
    return files


def iter_weights(model_dir: Path, skip: Collection[str] = ()) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint's tensors but those named in ``skip``: the safetensors if there are any, else the PyTorch
    pickles, read with ``weights_only=True`` (tensors and plain containers only: a checkpoint cannot run code) and
    memory-mapped."""
    model_dir = Path(model_dir)
    if (model_dir / INDEX_FILE).is_file() or any(model_dir.glob("*.safetensors")):
        yield from iter_safetensors(model_dir, skip)
        return
    for path in torch_bin_files(model_dir):
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        yield from ((name, tensor) for name, tensor in state.items() if name not in skip)
        del state


@contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def load_model(
    model_dir: Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
    strip: Callable[[nn.Module], set[str]] | None = None,
) -> nn.Module:  # fmt: skip
    """Build the model that config.json names and fill it from its weights, in ``dtype`` on ``device``.

    The model is built on the meta device (no random init, no memory), materialised uninitialised on
    ``device`` and then every parameter is overwritten: ``load_weights`` raises if any is left unset.
    ``strip``, given the model still on the meta device, removes parameters that something else will provide
    (GGUF blocks: ``inference.weights.gguf.strip_block_weights``) and returns the checkpoint tensors they were
    filled from: those are never allocated nor read.
    """
    hf_config = read_hf_config(model_dir)
    with torch.device("meta"), _default_dtype(dtype):
        model = build_model(hf_config)
    unneeded = strip(model) if strip is not None else set()
    model.to_empty(device=device)
    model.load_weights(iter_weights(model_dir, unneeded))
    # embedding models (and decoders packaged as one): the pooling of the checkpoint's sentence-transformers files
    if hasattr(model, "default_pooling") or (Path(model_dir) / "modules.json").is_file():
        model.pooling = read_pooling(model_dir, getattr(model, "default_pooling", None))
    return model.eval().requires_grad_(False)
