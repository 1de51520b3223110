"""The chunk vectors a search scores, per file, kept in memory while current (``file_cache.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accounts import vector_stores
from hub.vector_stores import file_cache


@dataclass(frozen=True)
class FileVectors:
    first: int  # its first chunk's id
    chunk_ids: list[int]
    matrix: np.ndarray  # [chunks, dims] float32, unit rows

    @property
    def nbytes(self) -> int:
        return self.matrix.nbytes


def _read(file_rows: list[int]) -> dict[int, FileVectors]:
    grouped: dict[int, tuple[list[int], list[bytes]]] = {}
    for chunk, row, vector in vector_stores.chunk_vectors(file_rows):
        ids, blobs = grouped.setdefault(row, ([], []))
        ids.append(chunk)
        blobs.append(bytes(vector))
    return {row: FileVectors(ids[0], ids, np.frombuffer(b"".join(blobs), "<f4").reshape(len(ids), -1))
            for row, (ids, blobs) in grouped.items()}  # fmt: skip


def of_files(file_rows: list[int]) -> dict[int, FileVectors]:
    """The vectors of those files' chunks (files without chunks left out); from memory where still current."""
    return file_cache.of_files("vectors", file_rows, _read)  # type: ignore[return-value]


clear = file_cache.clear  # everything a search keeps: the keyword postings too
