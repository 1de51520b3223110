"""Vector stores below the routes: chunking (``hub/vector_stores/chunking.py``), attribute filters, and the rows'
life (``accounts/vector_stores.py``): one indexer at a time (``claim``), a cancelled file's work dropped, files whose
indexer went quiet handed out again (``stale``), expired stores deleted, and the objects OpenAI's API shows."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from accounts import files, services, vector_stores
from accounts.models import VectorStore, VectorStoreChunk, VectorStoreFile
from accounts.vector_stores import Chunking, Entry
from hub.api import errors
from hub.vector_stores import chunking
from hub.vector_stores import filters as attribute_filters
from hub.vector_stores.requests import chunking as read_chunking
from tests.openai_spec import assert_valid


def _spans(text: str) -> list[tuple[int, int]]:
    """Words as tokens."""
    spans, start = [], None
    for i, ch in enumerate(text + " "):
        if ch != " " and start is None:
            start = i
        elif ch == " " and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_chunks_are_windows_of_tokens_that_overlap():
    text = " ".join(f"w{i}" for i in range(10))
    assert chunking.chunks(text, _spans(text), 4, 1) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert chunking.chunks(text, _spans(text), 4, 0) == ["w0 w1 w2 w3", "w4 w5 w6 w7", "w8 w9"]
    assert chunking.chunks(text, _spans(text), 20, 5) == [text]
    assert chunking.chunks("  padded  text ", _spans("  padded  text "), 5, 2) == ["padded  text"]  # its own spacing
    with pytest.raises(ValueError):
        chunking.chunks(text, _spans(text), 4, 4)


def test_long_texts_are_tokenized_in_pieces_cut_at_white_space():
    text = "alpha beta gamma delta " * 10
    pieces = chunking.segments(text, size=30)
    assert "".join(piece for _, piece in pieces) == text
    assert all(text[start : start + len(piece)] == piece for start, piece in pieces)
    assert all(piece.endswith(" ") for _, piece in pieces[:-1])
    assert chunking.approximate_spans("abcdefghij") == [(0, 4), (4, 8), (8, 10)]


def test_static_chunking_is_checked_and_cut_to_the_models_context():
    assert read_chunking(None, 0) == Chunking(800, 400)  # no context known: as asked
    assert read_chunking({"type": "auto"}, 0) == Chunking(800, 400)
    assert read_chunking({"type": "auto"}, 512) == Chunking(510, 255)
    assert read_chunking({"type": "static", "static": {"max_chunk_size_tokens": 300, "chunk_overlap_tokens": 100}},
                         512) == Chunking(300, 100)  # fmt: skip
    bad = [({"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}, "max_chunk_size_tokens"),
           ({"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}, "chunk_overlap_tokens")]  # fmt: skip
    for static, param in bad:
        with pytest.raises(errors.InvalidRequest) as caught:
            read_chunking({"type": "static", "static": static}, 512)
        assert caught.value.param == f"chunking_strategy.static.{param}"
    with pytest.raises(errors.InvalidRequest):
        read_chunking({"type": "other"}, 512)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"type": "eq", "key": "kind", "value": "log"}, True),
        ({"type": "eq", "key": "flag", "value": 1}, False),  # True is not the number 1
        ({"type": "ne", "key": "missing", "value": "x"}, True),
        ({"type": "gt", "key": "year", "value": 2023}, True),
        ({"type": "lte", "key": "year", "value": 2023}, False),
        ({"type": "gt", "key": "kind", "value": 3}, False),  # a string against a number: no match
        ({"type": "in", "key": "kind", "value": ["log", "doc"]}, True),
        ({"type": "nin", "key": "kind", "value": ["log"]}, False),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "kind", "value": "log"},
                    {"type": "eq", "key": "flag", "value": True},
                ],
            },
            True,
        ),  # fmt: skip
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "kind", "value": "doc"},
                    {"type": "lt", "key": "year", "value": 2000},
                ],
            },
            False,
        ),  # fmt: skip
    ],
)
def test_filters_match_attributes(node, expected):
    attribute_filters.check(node)
    assert attribute_filters.matches(node, {"kind": "log", "year": 2024, "flag": True}) is expected


@pytest.mark.parametrize(
    ("node", "param"),
    [
        ([], "filters"),
        ({"type": "near", "key": "a", "value": 1}, "filters.type"),
        ({"type": "eq", "value": 1}, "filters.key"),
        ({"type": "in", "key": "a", "value": "x"}, "filters.value"),
        ({"type": "and", "filters": [{"type": "eq", "key": "a"}]}, "filters.filters[0].value"),
    ],
)
def test_bad_filters_are_refused(node, param):
    with pytest.raises(errors.InvalidRequest) as caught:
        attribute_filters.check(node)
    assert caught.value.param == param


@pytest.fixture
def store(db):
    tenant = services.create_tenant("acme", "Acme")
    made = vector_stores.create_store(tenant_id=tenant.pk, name="s", embedding_model="e", expires_after_days=None,
                                      metadata={})  # fmt: skip
    ids = [files.create(tenant_id=tenant.pk, api_key_id=None, purpose="assistants", filename=f"{i}.txt",
                        content=b"text").pk for i in range(2)]  # fmt: skip
    vector_stores.add_files(made, [Entry(i, Chunking(), {}) for i in ids], api_key_id=None)
    return made


def test_one_indexer_at_a_time_and_quiet_ones_are_replaced(store):
    row = store.files.first()
    assert vector_stores.claim(row.pk, stale_seconds=60) is not None
    assert vector_stores.claim(row.pk, stale_seconds=60) is None  # claimed, and showing life
    assert row.pk not in vector_stores.stale(60)
    VectorStoreFile.objects.filter(pk=row.pk).update(claimed_at=timezone.now() - timedelta(seconds=120))
    assert row.pk in vector_stores.stale(60)
    assert vector_stores.claim(row.pk, stale_seconds=60) is not None  # taken over
    vector = np.ones(4, "<f4").tobytes()
    assert vector_stores.finish(row.pk, [("a", vector), ("b", vector)])
    row.refresh_from_db()
    assert row.status == "completed" and row.usage_bytes == 2 * (1 + 16)
    assert vector_stores.claim(row.pk, stale_seconds=60) is None  # done: nothing to claim


def test_a_cancelled_files_work_is_dropped(store):
    batch, rows = vector_stores.create_batch(store, [Entry(f.file_id, Chunking(), {}) for f in store.files.all()],
                                             api_key_id=None)  # fmt: skip
    assert vector_stores.claim(rows[0].pk, stale_seconds=60) is not None
    vector_stores.cancel_batch(batch)
    assert vector_stores.batch_resource(batch)["status"] == "cancelled"
    assert not vector_stores.renew(rows[0].pk)
    assert not vector_stores.finish(rows[0].pk, [("a", b"\0\0\0\0")])
    assert not VectorStoreChunk.objects.exists()
    assert_valid("VectorStoreFileBatchObject", vector_stores.batch_resource(batch))
    assert vector_stores.store_resource(store)["file_counts"]["cancelled"] == 2


def test_stores_expire_after_their_last_activity(store):
    vector_stores.update_store(store, {"expires_after_days": 1})
    resource = vector_stores.store_resource(store)
    assert_valid("VectorStoreObject", resource)
    assert resource["expires_after"] == {"anchor": "last_active_at", "days": 1} and resource["status"] == "in_progress"
    assert vector_stores.expire() == 0
    VectorStore.objects.filter(pk=store.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    store.refresh_from_db()
    assert vector_stores.store_resource(store)["status"] == "expired"
    assert vector_stores.expire() == 1 and not VectorStoreFile.objects.exists()


def test_a_deleted_or_expired_file_leaves_every_store_with_its_chunks(store):
    """As OpenAI's: deleting the underlying file removes it from all vector stores."""
    other = vector_stores.create_store(tenant_id=store.tenant_id, name="t", embedding_model="e",
                                       expires_after_days=None, metadata={})  # fmt: skip
    first, second = [row.file_id for row in store.files.order_by("id")]
    vector_stores.add_files(other, [Entry(first, Chunking(), {}), Entry(second, Chunking(), {})], api_key_id=None)
    row = store.files.get(file_id=first)
    vector_stores.claim(row.pk, stale_seconds=60)
    vector_stores.finish(row.pk, [("a", np.ones(4, "<f4").tobytes())])
    assert files.delete(store.tenant_id, first)
    assert set(VectorStoreFile.objects.values_list("file_id", flat=True)) == {second}
    assert VectorStoreFile.objects.filter(file_id=second).count() == 2 and not VectorStoreChunk.objects.exists()
    assert not vector_stores.renew(row.pk)  # an indexer at work on it drops its work
    assert vector_stores.store_resource(store)["file_counts"]["total"] == 1

    files.StoredFile.objects.filter(pk=second).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert files.expire() == 1 and not VectorStoreFile.objects.exists()
    assert VectorStore.objects.count() == 2  # the stores stay, empty


def test_searches_read_vectors_from_memory_while_they_stay_current(store, settings):
    from hub.vector_stores import vectors

    vectors.clear()
    row = store.files.first()
    vector_stores.claim(row.pk, stale_seconds=60)
    vector_stores.finish(row.pk, [("a", np.ones(4, "<f4").tobytes()), ("b", np.zeros(4, "<f4").tobytes())])
    first = vectors.of_files([row.pk])[row.pk]
    assert first.matrix.tolist() == [[1.0] * 4, [0.0] * 4]
    assert vectors.of_files([row.pk])[row.pk] is first  # kept
    # indexed again (new chunks, new ids): read afresh
    vector_stores.add_files(store, [Entry(row.file_id, Chunking(), {})], api_key_id=None)
    vector_stores.claim(row.pk, stale_seconds=60)
    vector_stores.finish(row.pk, [("c", np.full(4, 2.0, "<f4").tobytes())])
    again = vectors.of_files([row.pk])[row.pk]
    assert again is not first and again.matrix.tolist() == [[2.0] * 4]
    # removed: gone, whatever memory holds
    vector_stores.remove_file(store, row.file_id)
    assert vectors.of_files([row.pk]) == {}
    settings.HUB_VECTOR_CACHE_MB = 0  # nothing kept
    vectors.clear()
    other = store.files.first()
    vector_stores.claim(other.pk, stale_seconds=60)
    vector_stores.finish(other.pk, [("d", np.ones(4, "<f4").tobytes())])
    assert vectors.of_files([other.pk])[other.pk] is not vectors.of_files([other.pk])[other.pk]


def test_keyword_postings_are_kept_beside_the_vectors_while_current(store, settings):
    from hub.vector_stores import keywords, vectors

    vectors.clear()
    row = store.files.first()
    vector_stores.claim(row.pk, stale_seconds=60)
    vector_stores.finish(row.pk, [("a fox", np.ones(4, "<f4").tobytes()), ("the fox fox", np.ones(4, "<f4").tobytes())])
    first = keywords.of_files([row.pk])[row.pk]
    assert first.lengths.tolist() == [1, 2] and first.postings["fox"][1].tolist() == [1, 2]  # stop words not terms
    assert first.chunk_ids == vectors.of_files([row.pk])[row.pk].chunk_ids  # aligned with the vectors, chunk by chunk
    assert keywords.of_files([row.pk])[row.pk] is first  # kept
    assert keywords.of_files([row.pk], {row.pk: (first.first, 2)})[row.pk] is first  # as a search's vectors show it
    vector_stores.add_files(store, [Entry(row.file_id, Chunking(), {})], api_key_id=None)  # indexed again
    vector_stores.claim(row.pk, stale_seconds=60)
    vector_stores.finish(row.pk, [("an owl", np.ones(4, "<f4").tobytes())])
    again = keywords.of_files([row.pk])[row.pk]
    assert again is not first and set(again.postings) == {"owl"}
    vectors.clear()  # the one memory of both
    assert keywords.of_files([row.pk])[row.pk] is not again
    settings.HUB_VECTOR_CACHE_MB = 0
    vectors.clear()
    assert keywords.of_files([row.pk])[row.pk] is not keywords.of_files([row.pk])[row.pk]
