"""What a search keeps in memory per hub process, per indexed file: its chunks' vectors (``vectors.py``) and their
keyword postings (``keywords.py``), up to ``HUB_VECTOR_CACHE_MB`` in all, least recently searched out first. Reading
them from the database is most of a search's time (``benchmarks/bench_vector_search.py``); a file's copy stays
current while its chunks do, which one cheap query per search checks (each file's first chunk id and count: a file
indexed again has new chunks, with new ids)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from django.conf import settings

from accounts import vector_stores


class PerFile(Protocol):
    first: int  # the file's first chunk id
    chunk_ids: list[int]  # in id order

    @property
    def nbytes(self) -> int: ...


_lock = threading.Lock()
_cache: OrderedDict[tuple[str, int], PerFile] = OrderedDict()  # (kind, file row id) -> what is kept of it
_held = 0  # bytes


def _keep(kind: str, row: int, value: PerFile) -> None:
    global _held
    limit = settings.HUB_VECTOR_CACHE_MB * 1024 * 1024
    if value.nbytes > limit:
        return
    with _lock:
        old = _cache.pop((kind, row), None)
        _held -= old.nbytes if old else 0
        _cache[(kind, row)] = value
        _held += value.nbytes
        while _held > limit:
            _, dropped = _cache.popitem(last=False)
            _held -= dropped.nbytes


def of_files(kind: str, file_rows: list[int], read: Callable[[list[int]], dict[int, PerFile]],
             summary: dict[int, tuple[int, int]] | None = None) -> dict[int, PerFile]:  # fmt: skip
    """``kind``'s copy of those files (files without chunks left out): from memory where still current, the others
    by ``read`` (file rows -> their copies), then kept. ``summary``: each file's (first chunk id, number of chunks)
    where the caller has just read them (a search's vectors), else read here."""
    if summary is None:
        summary = vector_stores.chunk_summary(file_rows)
    found: dict[int, PerFile] = {}
    with _lock:
        for row, (first, count) in summary.items():
            hit = _cache.get((kind, row))
            if hit is not None and hit.first == first and len(hit.chunk_ids) == count:
                _cache.move_to_end((kind, row))
                found[row] = hit
    missing = [row for row in summary if row not in found]
    if missing:
        for row, value in read(missing).items():
            found[row] = value
            _keep(kind, row, value)
    return found


def clear() -> None:
    global _held
    with _lock:
        _cache.clear()
        _held = 0
