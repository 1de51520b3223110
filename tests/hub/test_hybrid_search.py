"""Hybrid search's parts without a database: the keyword half's BM25 equals bm25s' (Lucene's BM25, the reference)
over files of odd sizes and several queries; the terms each analyzer finds (English: stemmed, no stop words; another
language; none); the fusion of the two rankings as documented; the weights' checks."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest
from django.conf import settings

from hub.api import errors
from hub.vector_stores import keywords
from hub.vector_stores.search import RRF_K, Hybrid, fuse, hybrid_of

WORDS = "fox dog cat owl the a of river stone blue red quick lazy jumps runs Straße straße ZX-4471".split()


def _corpus(seed: int, chunks: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 30)))) for _ in range(chunks)]


@pytest.mark.parametrize("sizes", [(1,), (7, 1, 13), (3, 29, 2, 5)])
def test_bm25_equals_lucenes_as_bm25s_scores_it(sizes):
    texts = _corpus(sum(sizes), sum(sizes))
    files, start = [], 0
    for size in sizes:  # one file's chunks, ids not starting at 0
        files.append(keywords.index(list(range(100 + start, 100 + start + size)), texts[start : start + size]))
        start += size
    reference = bm25s.BM25(method="lucene", k1=keywords.K1, b=keywords.B)
    reference.index([keywords.terms(t) for t in texts], show_progress=False)
    queries = ["quick fox", "owl owl river", "STRASSE straße zx", "absent words", "4471"]
    for query in queries:
        expected = reference.get_scores(keywords.terms(query))
        np.testing.assert_allclose(keywords.bm25(files, [query]), expected, rtol=1e-5, atol=1e-6, err_msg=query)
    # several queries: each chunk's best
    best = np.max([reference.get_scores(keywords.terms(q)) for q in queries], axis=0)
    np.testing.assert_allclose(keywords.bm25(files, queries), best, rtol=1e-5, atol=1e-6)
    assert keywords.bm25([], queries).shape == (0,)


def test_terms_are_words_case_folded():
    none = keywords.Analyzer("none")
    assert none.terms("Part ZX-4471, STRASSE & Straße!") == ["part", "zx", "4471", "strasse", "strasse"]
    assert none.terms("The runners' fox's") == ["the", "runners", "fox", "s"]


def test_english_terms_are_stemmed_without_stop_words():
    """The default analyzer: the forms of a word are one term, Lucene's English stop words are none, an apostrophe
    inside a word keeps it whole (a possessive's goes with the stem), and numbers and codes stay as they are."""
    assert settings.HUB_VECTOR_STORE_KEYWORD_LANGUAGE == "english" and keywords.analyzer().language == "english"
    english = keywords.Analyzer("english")
    assert english.terms("The RUNNERS were running; it runs, as a runner's run is.") == [
        "runner", "were", "run", "run", "runner", "run"]  # fmt: skip
    assert english.terms("Studies STUDIED studying") == ["studi"] * 3
    assert english.terms("Don’t ship ZX-4471's crates") == english.terms("don't shipping zx 4471 crate")
    assert english.terms("the of and to a in is it with") == []
    german = keywords.Analyzer("german")  # another language: its stemmer, no stop words
    assert german.terms("Die Häuser und das Haus") == ["die", "haus", "und", "das", "haus"]
    with pytest.raises(ValueError, match="none, arabic"):
        keywords.Analyzer("klingon")


def test_bm25_finds_the_other_forms_of_a_query_word():
    texts = ["The fox runs to the river", "a runner by the river", "foxes were running", "the the the"]
    files = [keywords.index([1, 2, 3, 4], texts)]
    scores = keywords.bm25(files, ["Running fox"])
    assert scores[0] > 0 and scores[2] > 0  # "runs", "fox"; "running", "foxes"
    assert scores[1] == scores[3] == 0  # a runner is not a run (Porter2 keeps agent nouns)
    assert keywords.bm25(files, ["the"]).tolist() == [0, 0, 0, 0]  # a stop word matches nothing


def test_fusion_adds_the_weighted_reciprocal_ranks_over_their_most():
    semantic = np.array([0.9, 0.5, 0.7, 0.1])  # ranks 1, 3, 2, 4
    keyword = np.array([0.0, 2.0, 1.0, 0.0])  # ranks -, 1, 2, - (no term: no keyword rank)
    fused = fuse(semantic, keyword, Hybrid(1.0, 3.0))
    expected = np.array([1 / (RRF_K + 1), 1 / (RRF_K + 3) + 3 / (RRF_K + 1), 1 / (RRF_K + 2) + 3 / (RRF_K + 2),
                         1 / (RRF_K + 4)]) / (4 / (RRF_K + 1))  # fmt: skip
    np.testing.assert_allclose(fused, expected)
    assert fuse(semantic, np.array([5.0, 0.0, 0.0, 0.0]), Hybrid(2.0, 2.0))[0] == 1.0  # first in both: 1
    # one weight only: that ranking alone, on the same scale
    np.testing.assert_allclose(fuse(semantic, keyword, Hybrid(0.0, 1.0)), [0, (RRF_K + 1) / (RRF_K + 1), (RRF_K + 1)
                               / (RRF_K + 2), 0])  # fmt: skip
    assert np.argsort(-fuse(semantic, keyword, Hybrid(1.0, 0.0))).tolist() == [0, 2, 1, 3]
    # weights that would overflow when added
    np.testing.assert_allclose(fuse(semantic, keyword, Hybrid(1e308, 1e308)), fuse(semantic, keyword, Hybrid(1, 1)))


def test_the_weights_are_checked():
    assert hybrid_of(None, "p") is None and hybrid_of({"score_threshold": 0.5}, "p") is None
    assert hybrid_of({"hybrid_search": {"embedding_weight": 1, "text_weight": 0.5}}, "p") == Hybrid(1.0, 0.5)
    for given, param in [
        ([], "p.hybrid_search"),
        ({"text_weight": 1}, "p.hybrid_search.embedding_weight"),
        ({"embedding_weight": -0.5, "text_weight": 1}, "p.hybrid_search.embedding_weight"),
        ({"embedding_weight": 1, "text_weight": True}, "p.hybrid_search.text_weight"),
        ({"embedding_weight": 1, "text_weight": float("nan")}, "p.hybrid_search.text_weight"),
        ({"embedding_weight": 1, "text_weight": "1"}, "p.hybrid_search.text_weight"),
        ({"embedding_weight": 0, "text_weight": 0}, "p.hybrid_search"),
    ]:
        with pytest.raises(errors.InvalidRequest) as refused:
            hybrid_of({"hybrid_search": given}, "p")
        assert refused.value.param == param, given
