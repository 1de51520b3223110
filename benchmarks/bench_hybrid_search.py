"""Hybrid search's keyword half at scale (``ranking_options.hybrid_search``: ``hub/vector_stores/keywords.py``),
against bm25s (the peer: a BM25 library on sparse matrices, Lucene's scoring, with the same tokens in memory).

For stores of ``--sizes`` chunks (one completed file; texts of 130 words drawn from a Zipf law over 20,000 words,
~800 characters, as a chunk's) written into a dedicated database, it times, alternating, ``--repeat`` runs each:

* ``read+index``: ``keywords.of_files`` with the process's memory emptied first: the chunks' texts read from
  PostgreSQL and their postings built (the default analyzer's terms: English, stemmed, without stop words), what
  the first hybrid search of a file costs;
* ``read+index none``: the same with ``HUB_VECTOR_STORE_KEYWORD_LANGUAGE=none`` (words only): what stemming costs;
* ``cached``: the same with the postings in memory, checked against the file's first chunk id and count as its
  vectors' read gave them (the search's path: no query of its own), every later one;
* ``bm25+fuse``: the BM25 scores of a 3-word query over every chunk, fused with a semantic score (``search.fuse``),
  and the top 10: what a hybrid search adds to a semantic one after the read;
* ``bm25s index``: the peer's index built from the same chunks' tokens, already in memory (no database read);
* ``bm25s score``: the peer's scores of the same query over every chunk, and the top 10.

Medians and maxima in milliseconds (a garbage collection between the read and the next span, untimed: the read
leaves many objects, whose first collection would fall into whatever runs next); the top 10 scores of ours and the
peer's are checked to be the same. The memory the postings take (``FileTerms.nbytes``, counted against
``HUB_VECTOR_CACHE_MB``) is printed per store.

    .venv/bin/python benchmarks/bench_hybrid_search.py                   # 1k, 10k, 50k chunks
    .venv/bin/python benchmarks/bench_hybrid_search.py --sizes 1000 --repeat 3

The database (``bench_hybrid``; ``--database-url`` to change it) is created if missing and migrated; its stores are
kept, and a re-run reuses those of the same size.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_vector_search import open_database, parse_args, store_of  # noqa: E402

TOP = 10
VOCABULARY = 20_000
WORDS_PER_CHUNK = 130
QUERY = "w40 w350 w2600"  # words of a few hundredths, thousandths and ten-thousandths of the chunks


def texts_of(size: int) -> list[str]:
    rng = np.random.default_rng(size)
    words = np.array([f"w{i}" for i in range(VOCABULARY)])
    ranks = np.minimum(rng.zipf(1.2, size=(size, WORDS_PER_CHUNK)), VOCABULARY) - 1
    return [" ".join(words[row]) for row in ranks]


def file_of(size: int) -> int:
    """The row id of the one file of a store of ``size`` chunks (made once, then reused)."""
    texts = texts_of(size)
    vector = np.zeros(4, "<f4").tobytes()  # the keyword half never reads it
    store = store_of(f"hybrid-{size}", size, lambda start, end: [(t, vector) for t in texts[start:end]])
    return store.files.get().pk


def main() -> None:
    args = parse_args(__doc__, "bench_hybrid")
    import bm25s

    open_database(args.database_url)
    from django.conf import settings

    from accounts import vector_stores
    from hub.vector_stores import file_cache, keywords
    from hub.vector_stores.search import Hybrid, fuse

    columns = ("read+index", "read+index none", "cached", "bm25+fuse", "bm25s index", "bm25s score")
    print(f"{'chunks':>8}" + "".join(f" {name:>16}" for name in columns) + "   (median / max, ms)  postings MB")
    for size in args.sizes:
        row = file_of(size)
        tokens = [keywords.terms(text) for text in texts_of(size)]
        semantic = np.random.default_rng(0).random(size).astype(np.float32)
        summary = vector_stores.chunk_summary([row])  # what the vectors' read gives a search
        times: dict[str, list[float]] = {name: [] for name in columns}
        for _ in range(args.repeat):  # ours and the peer's alternate, so that a busy core slows both alike
            postings = None  # the last round's copy freed here, not in a span (~40k arrays at 50k chunks)
            spans = []
            for language in ("none", settings.HUB_VECTOR_STORE_KEYWORD_LANGUAGE):  # the default's postings stay
                settings.HUB_VECTOR_STORE_KEYWORD_LANGUAGE = language
                keywords.analyzer.cache_clear()
                file_cache.clear()
                t0 = time.perf_counter()
                keywords.of_files([row])
                spans.insert(0, time.perf_counter() - t0)
                gc.collect()  # the pass the read's objects start (in any later allocation): not the next span's
            t1 = time.perf_counter()
            postings = keywords.of_files([row], summary)[row]
            t2 = time.perf_counter()
            ours = keywords.bm25([postings], [QUERY])
            best = np.argsort(-fuse(semantic, ours, Hybrid(1.0, 1.0)), kind="stable")[:TOP]
            t3 = time.perf_counter()
            peer = bm25s.BM25(method="lucene", k1=keywords.K1, b=keywords.B)
            peer.index(tokens, show_progress=False)
            t4 = time.perf_counter()
            theirs = peer.get_scores(keywords.terms(QUERY))
            their_top = np.argpartition(-theirs, TOP)[:TOP]
            t5 = time.perf_counter()
            spans += [t2 - t1, t3 - t2, t4 - t3, t5 - t4]
            for name, seconds in zip(times, spans, strict=True):
                times[name].append(seconds * 1000)
            assert len(best) == TOP
            np.testing.assert_allclose(np.sort(ours)[-TOP:], np.sort(theirs[their_top]), rtol=1e-5)
        shown = "".join(f" {statistics.median(v):8.2f} / {max(v):5.1f}" for v in times.values())
        print(f"{size:>8}{shown}   {postings.nbytes / 1e6:8.1f}", flush=True)
    print(f"\nrepeat {args.repeat}; reproduce: .venv/bin/python benchmarks/bench_hybrid_search.py "
          f"--sizes {' '.join(map(str, args.sizes))} --repeat {args.repeat}")  # fmt: skip


if __name__ == "__main__":
    main()
