"""The chunk vectors a search scores, kept in memory per hub process, per file, up to ``HUB_VECTOR_CACHE_MB``
(least recently searched out first). Reading them from the database is most of a search's time (a 1.5 KB row per
chunk: ``benchmarks/bench_vector_search.py``); a file's copy stays current while its chunks do, which one cheap
query per search checks (each file's first chunk id and count: a file indexed again has new chunks)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from accounts import vector_stores


@dataclass(frozen=True)
class FileVectors:
    first: int  # its first chunk's id
    chunk_ids: list[int]
    matrix: np.ndarray  # [chunks, dims] float32, unit rows


_lock = threading.Lock()
_cache: OrderedDict[int, FileVectors] = OrderedDict()  # file row id -> its vectors
_held = 0  # bytes


def _keep(row: int, vectors: FileVectors) -> None:
    global _held
    limit = settings.HUB_VECTOR_CACHE_MB * 1024 * 1024
    if vectors.matrix.nbytes > limit:
        return
    with _lock:
        old = _cache.pop(row, None)
        _held -= old.matrix.nbytes if old else 0
        _cache[row] = vectors
        _held += vectors.matrix.nbytes
        while _held > limit:
            _, dropped = _cache.popitem(last=False)
            _held -= dropped.matrix.nbytes


def of_files(file_rows: list[int]) -> dict[int, FileVectors]:
    """The vectors of those files' chunks (files without chunks left out); from memory where still current."""
    summary = vector_stores.chunk_summary(file_rows)
    found: dict[int, FileVectors] = {}
    with _lock:
        for row, (first, count) in summary.items():
            hit = _cache.get(row)
            if hit is not None and hit.first == first and len(hit.chunk_ids) == count:
                _cache.move_to_end(row)
                found[row] = hit
    missing = [row for row in summary if row not in found]
    if missing:
        grouped: dict[int, tuple[list[int], list[bytes]]] = {}
        for chunk, row, vector in vector_stores.chunk_vectors(missing):
            ids, blobs = grouped.setdefault(row, ([], []))
            ids.append(chunk)
            blobs.append(bytes(vector))
        for row, (ids, blobs) in grouped.items():
            matrix = np.frombuffer(b"".join(blobs), "<f4").reshape(len(ids), -1)
            found[row] = FileVectors(ids[0], ids, matrix)
            _keep(row, found[row])
    return found


def clear() -> None:
    global _held
    with _lock:
        _cache.clear()
        _held = 0
