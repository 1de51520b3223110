"""The keyword half of a hybrid search (the file_search tool's ``ranking_options.hybrid_search``): each candidate
chunk's BM25 score for the queries.

A text's terms (``terms``), much as Elasticsearch's ``english`` analyzer makes them: its words (Unicode ``\\w+``;
in English an apostrophe inside a word keeps it whole, "fox's", "don't"), case-folded, Lucene's 33 English stop
words ("the", "of", "and" ...) dropped, and each word stemmed by Snowball's English stemmer (Porter2, by PyStemmer,
where Elasticsearch has the first Porter: "running", "runs" and "run" are one term; "fox's" is "fox"), so a query
finds the other forms of its words. ``HUB_VECTOR_STORE_KEYWORD_LANGUAGE`` names another Snowball language (its
stemmer, no stop words) or ``none`` (words only, case-folded). Chunks and queries go through the same analyzer;
postings are built from the texts in memory, so a change applies from the next start.

BM25 as Lucene scores it (bm25s' ``lucene`` method, the tests' reference): for a query term of document frequency
``df`` among the ``n`` candidate chunks, ``idf = ln(1 + (n - df + 0.5) / (df + 0.5))``, and a chunk of ``dl`` terms
that holds it ``tf`` times scores ``idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))``, summed over the query's terms
(a repeated term counts again). The statistics are those of the chunks the search scores, so a filter or another
store changes them, as it changes the candidates. With several queries a chunk takes its best query's score, as the
semantic half takes its nearest query.

Each file's postings (term -> the chunks that hold it, how often) are kept in memory beside its vectors
(``file_cache.py``): a search reads the texts of a file only once while it stays indexed."""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from functools import cache

import numpy as np
import Stemmer
from django.conf import settings

from accounts import vector_stores
from hub.vector_stores import file_cache

K1, B = 1.2, 0.75  # Lucene's (and Elasticsearch's) defaults
# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (Elasticsearch's ``_english_``)
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there these they "
    "this to was will with".split()
)
_WORD = re.compile(r"\w+")
_ENGLISH_WORD = re.compile(r"\w+(?:'\w+)*")


class Analyzer:
    """A language's way from a text to its terms (``language``: a Snowball stemmer's name, or ``none``)."""

    def __init__(self, language: str) -> None:
        if language != "none" and language not in Stemmer.algorithms():
            raise ValueError(f"no Snowball stemmer for {language!r}: one of none, {', '.join(Stemmer.algorithms())}")
        self.language = language
        english = language in ("english", "porter")
        self.stop_words = ENGLISH_STOP_WORDS if english else frozenset()
        self._words = _ENGLISH_WORD if english else _WORD
        self._local = threading.local()  # a PyStemmer stemmer is not to be shared between threads

    def terms(self, text: str) -> list[str]:
        words = self._words.findall(text.casefold().replace("\u2019", "'"))  # ’ as '
        if self.stop_words:
            words = [w for w in words if w not in self.stop_words]
        if self.language == "none":
            return words
        stemmer = getattr(self._local, "stemmer", None)
        if stemmer is None:
            stemmer = self._local.stemmer = Stemmer.Stemmer(self.language)
        return stemmer.stemWords(words)


@cache
def analyzer() -> Analyzer:
    return Analyzer(settings.HUB_VECTOR_STORE_KEYWORD_LANGUAGE)


def terms(text: str) -> list[str]:
    """``text``'s terms by the operator's analyzer (``HUB_VECTOR_STORE_KEYWORD_LANGUAGE``)."""
    return analyzer().terms(text)


@dataclass(frozen=True)
class FileTerms:
    first: int  # its first chunk's id
    chunk_ids: list[int]
    lengths: np.ndarray  # [chunks] float32: each chunk's number of terms
    postings: dict[str, tuple[np.ndarray, np.ndarray]]  # term -> ([hits] int32 chunk positions, [hits] float32 counts)
    nbytes: int  # the arrays, and ~100 bytes of dict entry, tuple and array headers a term


def index(chunk_ids: list[int], texts: list[str]) -> FileTerms:
    """One file's postings, its chunks in id order."""
    found: dict[str, tuple[list[int], list[int]]] = {}
    lengths = np.zeros(len(texts), np.float32)
    for position, text in enumerate(texts):
        words = terms(text)
        lengths[position] = len(words)
        for term, count in Counter(words).items():
            positions, counts = found.setdefault(term, ([], []))
            positions.append(position)
            counts.append(count)
    postings = {t: (np.array(p, np.int32), np.array(c, np.float32)) for t, (p, c) in found.items()}
    size = lengths.nbytes + sum(p.nbytes + c.nbytes + 100 + len(t) for t, (p, c) in postings.items())
    return FileTerms(chunk_ids[0], chunk_ids, lengths, postings, size)


def _read(file_rows: list[int]) -> dict[int, FileTerms]:
    grouped: dict[int, tuple[list[int], list[str]]] = {}
    for chunk, row, text in vector_stores.chunk_texts(file_rows):
        ids, texts = grouped.setdefault(row, ([], []))
        ids.append(chunk)
        texts.append(text)
    return {row: index(ids, texts) for row, (ids, texts) in grouped.items()}


def of_files(file_rows: list[int], summary: dict[int, tuple[int, int]] | None = None) -> dict[int, FileTerms]:
    """The postings of those files' chunks (files without chunks left out); from memory where still current.
    ``summary``: each file's (first chunk id, number of chunks), as its vectors just read show them."""
    return file_cache.of_files("keywords", file_rows, _read, summary)  # type: ignore[return-value]


def bm25(files: list[FileTerms], queries: list[str]) -> np.ndarray:
    """[chunks of ``files``, in their order] each chunk's BM25 score for its best query (0: no query term in it)."""
    offsets = np.cumsum([0] + [len(f.chunk_ids) for f in files])
    lengths = np.concatenate([f.lengths for f in files]) if files else np.zeros(0, np.float32)
    n = len(lengths)
    if n == 0:
        return np.zeros(0, np.float32)
    norm = K1 * (1 - B + B * lengths / max(float(lengths.mean()), 1e-9))
    best = np.zeros(n, np.float32)
    for query in queries:
        score = np.zeros(n, np.float32)
        for term in terms(query):
            hits = [(f.postings[term], offset) for f, offset in zip(files, offsets, strict=False) if term in f.postings]
            if not hits:
                continue
            where = np.concatenate([positions + offset for (positions, _), offset in hits])
            tf = np.concatenate([counts for (_, counts), _ in hits])
            idf = np.log1p((n - len(where) + 0.5) / (len(where) + 0.5))
            score[where] += idf * tf / (tf + norm[where])
        np.maximum(best, score, out=best)
    return best
