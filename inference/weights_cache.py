"""Prepared weights, cached: a model as the engine runs it (quantized codes, bf16 prefill copies, float weights),
written once after it is built and memory-mapped on later starts, so a warm start reads no more than it touches
and recomputes nothing (quantizing Gemma 3 270M takes ~30 s on two cores).

The file is ``torch.save`` of the whole module in ``INFERENCE_CACHE_DIR/prepared/``; ``torch.load(mmap=True)``
maps its tensors instead of reading them. Its name carries a key over everything that decides its content: the
converted checkpoint (whose own name carries the converter's version and the source's hash), the checkpoint's
files (size and time), the quantize mode and dtype, this file's ``FORMAT_VERSION``, the torch version and a hash
of the code that builds and quantizes models (``inference/models``, ``inference/layers``,
``inference/weights/quantize.py`` and ``quantize_moe.py``). So a cache written by an older converter, quantizer or
model code is never read: it is rebuilt beside it. Only this service writes there (the pickle is trusted: it is our
own output, in the user's own cache directory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from functools import cache
from pathlib import Path

import torch
from torch import nn

from inference.env import cache_dir

log = logging.getLogger("inference.weights_cache")

FORMAT_VERSION = 1  # bump when what is saved changes shape
_CODE = (
    "models",
    "layers",
    "weights/quantize.py",
    "weights/quantize_moe.py",
    "weights/unquantized.py",
    "weights/swap.py",
    "weights_cache.py",
)


@cache
def code_hash() -> str:
    """A hash of the source that builds, loads and quantizes models: a change there invalidates every entry."""
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _CODE:
        path = root / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def entry_path(directory: Path, mode: str, dtype: torch.dtype, prefill: str = "auto") -> Path:
    """Where the prepared model for this checkpoint, mode, dtype and prefill dtype (``quantize.resolve_prefill``:
    a cache shared by CPUs of two kinds holds one for each) lives (it may not exist yet)."""
    from inference.weights.quantize import resolve_prefill

    directory = Path(directory).resolve()
    files = sorted(p for p in directory.iterdir() if p.is_file())
    key = json.dumps({
        "checkpoint": str(directory),
        "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
        "mode": mode, "dtype": str(dtype), "format": FORMAT_VERSION, "torch": torch.__version__, "code": code_hash(),
        "prefill": resolve_prefill(prefill),
    }, sort_keys=True)  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / "prepared" / f"{directory.name}-{mode}-{digest}.pt"


def load(path: Path) -> nn.Module | None:
    """The prepared model at ``path``, its tensors memory-mapped; None if there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, mmap=True, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: rebuild it rather than fail the start
        log.warning("prepared weights %s unreadable (%s): building them again", path, exc)
        return None


def save(model: nn.Module, path: Path) -> None:
    """Write atomically (a temporary file renamed into place): a crash never leaves half an entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        stale_prefix = path.name.rsplit("-", 1)[0] + "-"  # the same checkpoint and mode, an older key
        for old in path.parent.glob(f"{stale_prefix}*.pt"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError as exc:  # a full or read-only disk: serve anyway, uncached
        log.warning("could not cache prepared weights at %s: %s", path, exc)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
