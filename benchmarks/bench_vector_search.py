"""Vector store search at scale: where a search's time goes as a store grows, against FAISS's exact inner-product
index (``IndexFlatIP``, the peer: what a dedicated vector library does with the same vectors in memory).

A search (``hub/vector_stores/search.py``) reads the store's chunks and their vectors from PostgreSQL, then scores
them in numpy. For stores of ``--sizes`` chunks (384 dimensions: all-MiniLM-L6-v2's; random unit vectors, texts of
~800 characters) written into a dedicated database, it times, alternating, ``--repeat`` runs each:

* ``read``: ``search._candidates`` with the process's vector cache emptied first (``hub/vector_stores/vectors.py``:
  the store's completed files, their chunks' vectors from PostgreSQL), what a first search costs;
* ``cached``: the same with the vectors in memory (the check that they are current: one query), every later one;
* ``score``: the matrix product with a query, the clip and the top 10 (what ``search`` does after the read);
* ``texts``: the texts of those 10 and their files' names (``search._texts_and_names``);
* ``faiss``: ``IndexFlatIP.search`` of the same query for the top 10 over the same vectors, already in memory;
* ``faiss+read``: the read, then an ``IndexFlatIP`` built and searched (FAISS with the same storage).

Medians and maxima in milliseconds; the query's embedding (a few ms on the CPU) is left out: it is the same for
both. The top 10 of ``score`` and ``faiss`` are checked to be the same chunks.

    .venv/bin/pip install faiss-cpu==1.15.1   # the peer, not a dependency of the hub
    .venv/bin/python benchmarks/bench_vector_search.py                   # 1k, 10k, 50k chunks
    .venv/bin/python benchmarks/bench_vector_search.py --sizes 1000 --repeat 3

The database (``bench_vectors``; ``--database-url`` to change it) is created if missing and migrated; its stores are
kept, and a re-run reuses those of the same size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_usage import ensure_database  # noqa: E402
from tests.support.django_env import setup_django  # noqa: E402

DIMS = 384
TOP = 10


def parse_args(doc: str = __doc__, database: str = "bench_vectors") -> argparse.Namespace:
    """The vector store benches' arguments (``doc``: the bench's own, ``database``: its database's name)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url", default=f"postgres://postgres@127.0.0.1:5432/{database}")
    return parser.parse_args()


def store_of(name: str, size: int, batch: Callable[[int, int], list[tuple[str, bytes]]]):
    """A store called ``name`` of ``size`` chunks in one completed file (made once, then reused); ``batch(start,
    end)``: the (text, vector bytes) of those chunks."""
    from accounts import files, services, vector_stores
    from accounts.models import Tenant, VectorStore, VectorStoreChunk, VectorStoreFile

    found = VectorStore.objects.filter(name=name).first()
    if found is not None:
        return found
    tenant = Tenant.objects.filter(slug="bench").first() or services.create_tenant("bench", "Bench")
    store = vector_stores.create_store(tenant_id=tenant.pk, name=name, embedding_model="all-minilm-l6-v2",
                                       expires_after_days=None, metadata={})  # fmt: skip
    stored = files.create(tenant_id=tenant.pk, api_key_id=None, purpose="assistants", filename=f"{name}.txt",
                          content=b"x")  # fmt: skip
    [row] = vector_stores.add_files(store, [vector_stores.Entry(stored.pk, vector_stores.Chunking(), {})],
                                    api_key_id=None)  # fmt: skip
    for start in range(0, size, 5000):
        chunks = batch(start, min(start + 5000, size))
        VectorStoreChunk.objects.bulk_create(
            VectorStoreChunk(file=row, vector_store=store, position=start + i, text=text, embedding=vector)
            for i, (text, vector) in enumerate(chunks)
        )  # fmt: skip
    VectorStoreFile.objects.filter(pk=row.pk).update(status="completed")
    return store


def open_database(url: str) -> None:
    """The benchmark's own database, created if missing, Django set up on it and migrated."""
    ensure_database(url, fresh=False)
    setup_django({"HUB_DATABASE_URL": url, "HUB_ENV": "dev", "HUB_DATA_DIR": tempfile.mkdtemp(prefix="bench-vs-")})
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def random_store(size: int):
    """Random unit vectors, one text for all: what the semantic half reads."""
    rng = np.random.default_rng(size)
    text = ("lorem ipsum dolor sit amet " * 32)[:800]

    def batch(start: int, end: int) -> list[tuple[str, bytes]]:
        vectors = rng.standard_normal((end - start, DIMS)).astype("<f4")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return [(text, v.tobytes()) for v in vectors]

    return store_of(f"bench-{size}", size, batch)


def main() -> None:
    args = parse_args()
    import faiss

    open_database(args.database_url)
    from hub.vector_stores import vectors
    from hub.vector_stores.search import _candidates, _texts_and_names

    query = np.random.default_rng(0).standard_normal((1, DIMS)).astype("<f4")
    query /= np.linalg.norm(query)
    columns = ("read", "cached", "score", "texts", "faiss", "faiss+read")

    def matrix(found) -> tuple[list[int], np.ndarray]:
        groups = list(found.vectors.values())
        return [c for g in groups for c in g.chunk_ids], np.concatenate([g.matrix for g in groups])

    print(f"{'chunks':>8}" + "".join(f" {name:>16}" for name in columns) + "   (median / max, ms)")
    for size in args.sizes:
        store = random_store(size)
        times: dict[str, list[float]] = {name: [] for name in columns}
        index = faiss.IndexFlatIP(DIMS)
        index.add(matrix(_candidates([store.pk], None))[1])
        for _ in range(args.repeat):  # ours and the peer's alternate, so that a busy core slows both alike
            vectors.clear()
            t0 = time.perf_counter()
            _candidates([store.pk], None)
            t1 = time.perf_counter()
            found = _candidates([store.pk], None)
            t2 = time.perf_counter()
            group = next(iter(found.vectors.values()))  # one file: the search's per-file scoring, once
            scores = np.clip((group.matrix @ query.T).max(axis=1), 0.0, 1.0)
            ours = np.argsort(-scores, kind="stable")[:TOP]
            t3 = time.perf_counter()
            texts, _ = _texts_and_names(store.tenant_id, [group.chunk_ids[i] for i in ours], {"x"})
            assert len(texts) == TOP
            t4 = time.perf_counter()
            _, theirs = index.search(query, TOP)
            t5 = time.perf_counter()
            vectors.clear()
            built = faiss.IndexFlatIP(DIMS)
            built.add(matrix(_candidates([store.pk], None))[1])
            built.search(query, TOP)
            t6 = time.perf_counter()
            spans = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)
            for name, seconds in zip(times, spans, strict=True):
                times[name].append(seconds * 1000)
            assert set(ours.tolist()) == set(theirs[0].tolist()), "the top 10 differ"
        shown = "".join(f" {statistics.median(v):8.2f} / {max(v):5.1f}" for v in times.values())
        print(f"{size:>8}{shown}", flush=True)
    print(f"\nrepeat {args.repeat}; reproduce: .venv/bin/python benchmarks/bench_vector_search.py "
          f"--sizes {' '.join(map(str, args.sizes))} --repeat {args.repeat}")  # fmt: skip


if __name__ == "__main__":
    main()
