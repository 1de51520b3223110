"""A thin GGUF (v2/v3, little-endian) reader on a memory map.

``gguf.GGUFReader`` builds a numpy view per array element, which takes tens of seconds on a 262k-entry
vocabulary. This reader walks the header once with ``struct`` on the raw map: numeric arrays become
one ``np.frombuffer`` each and string arrays a tight loop over lengths, so a header parses in a fraction
of a second. Tensor data is never read until asked for: ``raw()`` is a zero-copy view of the map.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from gguf.quants import dequantize as gguf_dequantize

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32  # llama.cpp's default when general.alignment is absent

# fixed-size scalar value types -> struct format (little-endian, standard sizes)
_SCALAR_FORMATS: dict[int, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_SCALAR_STRUCTS = {t: struct.Struct(f) for t, f in _SCALAR_FORMATS.items()}
# the same types as numpy dtypes, for arrays
_SCALAR_DTYPES = {t: np.dtype("?" if f == "<?" else f) for t, f in _SCALAR_FORMATS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ARRAY_HEAD = struct.Struct("<IQ")  # element type, count
_TENSOR_TAIL = struct.Struct("<IQ")  # ggml type, offset

# ggml types stored as plain values, dequantized by a dtype view
_FLOAT_TYPES = {
    GGMLQuantizationType.F32: torch.float32,
    GGMLQuantizationType.F16: torch.float16,
    GGMLQuantizationType.BF16: torch.bfloat16,
}


class GGUFError(ValueError):
    """The file is not a GGUF this reader understands; the message names the file and the problem."""


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and how it is stored."""

    name: str
    shape: tuple[int, ...]  # PyTorch order: the reverse of GGUF's fastest-first dims
    ggml_type: GGMLQuantizationType
    offset: int  # absolute byte offset of the tensor data in the file
    nbytes: int

    @property
    def n_elements(self) -> int:
        return prod(self.shape)

    @property
    def byte_shape(self) -> tuple[int, ...]:
        """Shape of the raw uint8 view: rows stay rows, the last dim becomes bytes per row."""
        block, type_size = GGML_QUANT_SIZES[self.ggml_type]
        if self.shape[-1] % block:
            raise GGUFError(f"tensor {self.name}: row of {self.shape[-1]} is not a multiple of {block}")
        return (*self.shape[:-1], self.shape[-1] // block * type_size)


class GGUFFile:
    """A parsed GGUF header plus lazy, zero-copy access to its tensor data."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        # one uint8 view of the whole file; raw() slices it without copying
        self._bytes = np.frombuffer(self._map, dtype=np.uint8)
        self.version, self.metadata, self.tensors, self.data_start = _parse(self._map, self.path)
        self.alignment = int(self.metadata.get("general.alignment", DEFAULT_ALIGNMENT))

    @property
    def architecture(self) -> str:
        return str(self.metadata["general.architecture"])

    def raw(self, name: str) -> np.ndarray:
        """The tensor's stored bytes, uint8 of shape ``info.byte_shape``, a view of the file (read-only)."""
        info = self.tensors[name]
        return self._bytes[info.offset : info.offset + info.nbytes].reshape(info.byte_shape)

    def dequantize(self, name: str) -> torch.Tensor:
        """The tensor as float32 in PyTorch shape (a fresh, writable tensor)."""
        info = self.tensors[name]
        raw = self.raw(name)
        if info.ggml_type in _FLOAT_TYPES:
            # bf16 has no numpy dtype, so reinterpret the bytes in torch; copy() makes the view writable
            values = torch.from_numpy(raw.copy()).view(_FLOAT_TYPES[info.ggml_type])
            return values.reshape(info.shape).to(torch.float32)
        values = gguf_dequantize(raw, info.ggml_type)
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(info.shape)

    def close(self) -> None:
        """Drop the map; views handed out earlier keep it alive until they are gone."""
        self._bytes = None  # type: ignore[assignment]
        self._map = None  # type: ignore[assignment]

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(buf: mmap.mmap, path: Path) -> tuple[int, dict[str, Any], dict[str, TensorInfo], int]:
    """(version, metadata, tensors, data_start) from the header."""
    if len(buf) < 24 or buf[:4] != GGUF_MAGIC:
        raise GGUFError(f"{path} is not a GGUF file (bad magic)")
    (version,) = _U32.unpack_from(buf, 4)
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 and 3 are)")
    tensor_count, kv_count = struct.unpack_from("<QQ", buf, 8)
    pos = 24
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key, pos = _read_string(buf, pos)
        (value_type,) = _U32.unpack_from(buf, pos)
        metadata[key], pos = _read_value(buf, pos + 4, value_type)

    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
    entries = []
    for _ in range(tensor_count):
        name, pos = _read_string(buf, pos)
        (n_dims,) = _U32.unpack_from(buf, pos)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, pos + 4)
        ggml_type, offset = _TENSOR_TAIL.unpack_from(buf, pos + 4 + 8 * n_dims)
        pos += 4 + 8 * n_dims + _TENSOR_TAIL.size
        entries.append((name, tuple(reversed(dims)), ggml_type, offset))
    data_start = (pos + alignment - 1) // alignment * alignment

    tensors: dict[str, TensorInfo] = {}
    for name, shape, ggml_type, offset in entries:
        try:
            qtype = GGMLQuantizationType(ggml_type)
        except ValueError:
            raise GGUFError(f"{path}: tensor {name} has unknown ggml type {ggml_type}") from None
        block, type_size = GGML_QUANT_SIZES[qtype]
        nbytes = prod(shape) // block * type_size
        start = data_start + offset
        if start + nbytes > len(buf):
            raise GGUFError(f"{path}: tensor {name} runs past the end of the file (truncated download?)")
        tensors[name] = TensorInfo(name, shape, qtype, start, nbytes)
    return version, metadata, tensors, data_start


def _read_string(buf: mmap.mmap, pos: int) -> tuple[str, int]:
    (length,) = _U64.unpack_from(buf, pos)
    end = pos + 8 + length
    return buf[pos + 8 : end].decode("utf-8", errors="replace"), end


def _read_value(buf: mmap.mmap, pos: int, value_type: int) -> tuple[Any, int]:
    """One metadata value and the position after it. Numeric arrays come back as numpy arrays."""
    if value_type in _SCALAR_STRUCTS:
        packer = _SCALAR_STRUCTS[value_type]
        return packer.unpack_from(buf, pos)[0], pos + packer.size
    if value_type == GGUFValueType.STRING:
        return _read_string(buf, pos)
    if value_type != GGUFValueType.ARRAY:
        raise GGUFError(f"unknown GGUF metadata value type {value_type} at byte {pos}")
    element_type, count = _ARRAY_HEAD.unpack_from(buf, pos)
    pos += _ARRAY_HEAD.size
    if element_type in _SCALAR_DTYPES:
        dtype = _SCALAR_DTYPES[element_type]
        values = np.frombuffer(buf, dtype=dtype, count=count, offset=pos).copy()  # copy: don't pin the map
        return values, pos + count * dtype.itemsize
    if element_type == GGUFValueType.STRING:
        return _read_string_array(buf, pos, count)
    items = []
    for _ in range(count):  # arrays of arrays: rare and small, take the general path
        item, pos = _read_value(buf, pos, element_type)
        items.append(item)
    return items, pos


def _read_string_array(buf: mmap.mmap, pos: int, count: int) -> tuple[list[str], int]:
    # the hot loop of the whole parse (262k vocabulary entries): locals only, no helper calls
    unpack = _U64.unpack_from
    out: list[str] = []
    append = out.append
    for _ in range(count):
        (length,) = unpack(buf, pos)
        pos += 8
        append(buf[pos : pos + length].decode("utf-8", errors="replace"))
        pos += length
    return out, pos
