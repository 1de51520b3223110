"""OpenAI's vector stores on a live hub in front of the live inference service, with the real OpenAI SDK: files
indexed in the background by the packaged embedding model (all-MiniLM-L6-v2, the hub's default for vector stores),
searched by meaning, filtered by attributes; every answer checked against OpenAI's schemas; the embeddings of
indexing and of searches metered to the tenant; the refusals OpenAI makes, each an OpenAI error."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from accounts import services
from accounts.models import ModelKind, StoredResponse, UsageRecord, VectorStore, VectorStoreChunk
from hub.vector_stores import rewrite
from tests.openai_spec import assert_valid
from tests.support import encoders
from tests.support.batches import batch_worker
from tests.support.inference import inference_service, model_flags
from tests.support.legacy_word import legacy_word_document
from tests.support.live import CHAT, EMBED, STORE_RERANKER, STORE_REWRITER, barrier, hub_clients, rows
from tests.support.office import legacy_compound, legacy_workbook, slide_deck
from tests.support.pdfs import mixed_pdf, printed_scan, text_pdf

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("worker")]

DOCS = {
    "france.txt": "Paris is the capital and largest city of France. The Eiffel Tower stands on the Champ de Mars in "
    "Paris, and the Louvre is the most visited art museum in the world.",
    "plants.txt": "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to make "
    "glucose and release oxygen. Chlorophyll in the leaves absorbs the light.",
    "python.txt": "Python is a programming language that lets you work quickly. Its standard library includes modules "
    "for regular expressions, JSON, threads and sockets.",
}


@pytest.fixture(scope="module")
def worker():
    """A Celery worker, as production indexes files (the live hub has a broker; ``make run``'s runs them itself)."""
    with batch_worker() as process:
        yield process


def _raw(hub, method: str, path: str, **kwargs) -> httpx.Response:
    headers = {"authorization": f"Bearer {hub.everything.secret}"}
    return httpx.request(method, f"{hub.url}/v1/{path}", headers=headers, timeout=60, **kwargs)


def _upload(client, name: str, text: str | bytes) -> str:
    content = text.encode() if isinstance(text, str) else text
    return client.files.create(file=(name, content), purpose="assistants").id


def _settled(client, store_id: str, timeout: float = 120):
    """The store once none of its files is in progress."""
    deadline = time.monotonic() + timeout
    while True:
        store = client.vector_stores.retrieve(store_id)
        if store.file_counts.in_progress == 0:
            return store
        assert time.monotonic() < deadline, f"{store_id}: files still in progress after {timeout} s: {store}"
        time.sleep(0.2)


def test_files_are_indexed_and_searched_by_meaning(hub):
    client = hub()
    ids = {name: _upload(client, name, text) for name, text in DOCS.items()}
    store = client.vector_stores.create(name="docs", file_ids=list(ids.values()), metadata={"team": "search"})
    assert store.status in ("in_progress", "completed") and store.file_counts.total == 3
    store = _settled(client, store.id)
    assert store.status == "completed" and store.file_counts.completed == 3 and store.usage_bytes > 0
    assert_valid("VectorStoreObject", _raw(hub, "GET", f"vector_stores/{store.id}").json())

    for query, expected in [("What is the capital of France?", "france.txt"),
                            ("How do leaves turn sunlight into sugar?", "plants.txt"),
                            ("a language for writing software", "python.txt")]:  # fmt: skip
        page = _raw(hub, "POST", f"vector_stores/{store.id}/search", json={"query": query}).json()
        assert_valid("VectorStoreSearchResultsPage", page)
        assert page["search_query"] == [query] and len(page["data"]) == 3
        best = page["data"][0]
        assert best["filename"] == expected and best["file_id"] == ids[expected], (query, page)
        assert best["content"] == [{"type": "text", "text": DOCS[expected]}]
        scores = [hit["score"] for hit in page["data"]]
        assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] < scores[0] <= 1
    # the SDK's own search, one result, and a threshold that leaves none
    found = client.vector_stores.search(store.id, query="Eiffel Tower", max_num_results=1)
    assert [r.filename for r in found.data] == ["france.txt"]
    assert not client.vector_stores.search(store.id, query="Eiffel Tower",
                                           ranking_options={"score_threshold": 0.999}).data  # fmt: skip

    # indexing and searching were metered: each search's query once, the files' chunks in the batch tier
    indexed = rows(1, route="vector_stores/files")
    assert indexed and all(r.model == EMBED and r.service_tier == "batch" and r.prompt_tokens > 0 for r in indexed)
    searched = rows(5, route="vector_stores/search")
    assert len(searched) == 5 and all(r.service_tier == "default" for r in searched)
    assert UsageRecord.objects.filter(route="vector_stores/files").count() == len(indexed)

    listed = _raw(hub, "GET", "vector_stores", params={"limit": 5}).json()
    assert_valid("ListVectorStoresResponse", listed)
    files = _raw(hub, "GET", f"vector_stores/{store.id}/files", params={"filter": "completed"}).json()
    assert_valid("ListVectorStoreFilesResponse", files)
    assert {f["id"] for f in files["data"]} == set(ids.values())
    assert_valid("VectorStoreFileObject", files["data"][0])
    content = _raw(hub, "GET", f"vector_stores/{store.id}/files/{ids['plants.txt']}/content").json()
    assert_valid("VectorStoreFileContentResponse", content)
    assert content["data"] == [{"type": "text", "text": DOCS["plants.txt"]}]

    removed = _raw(hub, "DELETE", f"vector_stores/{store.id}/files/{ids['france.txt']}").json()
    assert_valid("DeleteVectorStoreFileResponse", removed)
    hits = client.vector_stores.search(store.id, query="What is the capital of France?").data
    assert "france.txt" not in {h.filename for h in hits} and client.files.retrieve(ids["france.txt"])
    deleted = _raw(hub, "DELETE", f"vector_stores/{store.id}").json()
    assert_valid("DeleteVectorStoreResponse", deleted)
    assert not VectorStoreChunk.objects.filter(vector_store_id=store.id).exists()
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)


def test_chunking_attributes_filters_and_batches(hub):
    client = hub()
    store = client.vector_stores.create(name="chunked")
    long_text = " ".join(f"Sentence number {i} talks about the weather in town {i % 7}." for i in range(120))
    row = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("long.txt", long_text.encode()), attributes={"kind": "log", "year": 2024},
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}},
    )  # fmt: skip
    assert row.status == "completed" and row.attributes == {"kind": "log", "year": 2024}
    assert row.chunking_strategy.static.max_chunk_size_tokens == 100
    chunks = list(VectorStoreChunk.objects.filter(file__file_id=row.id).order_by("position"))
    assert len(chunks) > 5 and all(c.text in long_text for c in chunks)
    assert chunks[0].text.startswith("Sentence number 0") and long_text.endswith(chunks[-1].text)
    # the default strategy (800 tokens) is cut to MiniLM's context
    default = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("b.txt", b"Bananas are yellow."), attributes={"kind": "fruit", "year": 2023}
    )
    assert default.chunking_strategy.static.max_chunk_size_tokens < 800

    def names(filters) -> set[str]:
        hits = client.vector_stores.search(store.id, query="weather", filters=filters, max_num_results=50).data
        return {h.filename for h in hits}

    assert names({"type": "eq", "key": "kind", "value": "fruit"}) == {"b.txt"}
    assert names({"type": "gte", "key": "year", "value": 2024}) == {"long.txt"}
    assert names({"type": "or", "filters": [{"type": "eq", "key": "kind", "value": "fruit"},
                                            {"type": "lt", "key": "year", "value": 2000}]}) == {"b.txt"}  # fmt: skip
    assert names({"type": "nin", "key": "kind", "value": ["log", "fruit"]}) == set()

    batch = client.vector_stores.file_batches.upload_and_poll(
        store.id, files=[("x.txt", b"Xylophones are instruments."), ("y.txt", b"Yaks live in the Himalayas.")]
    )
    assert batch.status == "completed" and batch.file_counts.completed == 2
    shown = _raw(hub, "GET", f"vector_stores/{store.id}/file_batches/{batch.id}").json()
    assert_valid("VectorStoreFileBatchObject", shown)
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert len(listed.data) == 2
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "completed"  # nothing was left to cancel
    assert client.vector_stores.search(store.id, query="animals of the mountains").data[0].filename == "y.txt"


def test_failures_and_refusals(hub, live_hub):
    client = hub()
    store = client.vector_stores.create(name="mixed")
    pdf = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("report.pdf", text_pdf(["The annual report of Acme.", "Revenue grew by half."]))
    )
    assert pdf.status == "completed"
    assert client.vector_stores.search(store.id, query="How did revenue change?").data[0].filename == "report.pdf"
    deck = slide_deck([("Hiking", "Goats climb the steep mountain cliffs."), ("Sea", "Whales sing in the ocean.")])
    slides = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("talk.pptx", deck))
    assert slides.status == "completed"
    assert client.vector_stores.search(store.id, query="Which animals climb cliffs?").data[0].filename == "talk.pptx"
    # an HTML page is indexed as its text, a legacy .xls as an .xlsx (sheets row by row), a legacy .doc as a .docx, a
    # scan as OCR reads it
    page = b"<!doctype html><html><head><script>var goats = 1;</script></head><body><p>Owls hunt at night.</p></body>"
    sheet = legacy_workbook({"Fleet": [["Ship", "Crew"], ["Nautilus", 42]]})
    scan = mixed_pdf([printed_scan(["Invoice 4471 was paid in full."])])
    for name, data, text in [("owls.html", page, "Owls hunt at night."),
                             ("fleet.xls", sheet, "Sheet: Fleet\nShip | Crew\nNautilus | 42"),
                             ("memo.doc", legacy_word_document("Memo\rThe café opens at nine.\r"),
                              "Memo\nThe café opens at nine."),
                             ("invoice.pdf", scan, "Invoice 4471 was paid in full.")]:  # fmt: skip
        added = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=(name, data))
        assert added.status == "completed", added.last_error
        content = _raw(hub, "GET", f"vector_stores/{store.id}/files/{added.id}/content").json()
        assert content["data"] == [{"type": "text", "text": text}]
    png = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("a.png", b"\x89PNG\r\n\x1a\n\xff"))
    assert png.status == "failed" and png.last_error.code == "unsupported_file"
    ppt = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("old.ppt", legacy_compound(
        "PowerPoint Document")))  # fmt: skip
    assert ppt.status == "failed" and ppt.last_error.code == "unsupported_file" and ".pptx" in ppt.last_error.message
    empty = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("e.txt", b"  \n"))
    assert empty.status == "failed" and empty.last_error.code == "invalid_file"
    assert _settled(client, store.id).file_counts.failed == 3 and _settled(client, store.id).file_counts.completed == 6

    cases = [
        ("POST", "vector_stores", {"file_ids": ["file-nope"]}, 404, "file_id"),
        ("POST", "vector_stores", {"embedding_model": "smollm2-135m-instruct"}, 400, "embedding_model"),
        ("POST", "vector_stores", {"expires_after": {"anchor": "created_at", "days": 1}}, 400, "expires_after"),
        ("POST", "vector_stores", {"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 50,
                                   "chunk_overlap_tokens": 0}}}, 400,
         "chunking_strategy.static.max_chunk_size_tokens"),
        ("POST", f"vector_stores/{store.id}/search", {"query": ""}, 400, "query"),
        ("POST", f"vector_stores/{store.id}/search", {"query": "x", "max_num_results": 51}, 400, "max_num_results"),
        ("POST", f"vector_stores/{store.id}/search", {"query": "x", "filters": {"type": "gt", "key": "a"}}, 400,
         "filters.value"),
        ("POST", f"vector_stores/{store.id}/files", {"file_id": "file-x", "attributes": {"k" * 65: 1}}, 400,
         "attributes"),
        ("GET", f"vector_stores/{store.id}/files/file-nope", None, 404, "file_id"),
        ("GET", "vector_stores/vs_nope", None, 404, "vector_store_id"),
        # found under make run: an unknown 'before' was ignored (the first page came back)
        ("GET", "vector_stores?before=vs_nope", None, 400, "before"),
        ("GET", f"vector_stores?before={store.id}&after={store.id}", None, 400, "before"),
        ("GET", f"vector_stores/{store.id}/files?before=file-nope", None, 400, "before"),
    ]  # fmt: skip
    for method, path, body, status, param in cases:
        answer = _raw(hub, method, path, json=body)
        assert answer.status_code == status, (path, body, answer.text)
        assert answer.json()["error"]["param"] == param, (path, body, answer.json())
    # OpenAI's 'before': the page just before a file, in the list's order (newest first)
    listed = [f.id for f in client.vector_stores.files.list(vector_store_id=store.id, limit=100)]
    before = client.vector_stores.files.list(vector_store_id=store.id, before=listed[4], limit=2)
    assert [f.id for f in before.data] == listed[2:4] and before.has_more

    # an expired store is shown as such and can no longer be searched, nor added to
    old = client.vector_stores.create(name="old", expires_after={"anchor": "last_active_at", "days": 1})
    VectorStore.objects.filter(pk=old.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.vector_stores.retrieve(old.id).status == "expired"
    tools = [{"type": "file_search", "vector_store_ids": [old.id]}]
    asks = [(f"vector_stores/{old.id}/search", {"query": "x"}, "vector_store_id"),
            ("responses", {"model": CHAT, "input": "x", "tools": tools}, "tools.vector_store_ids")]  # fmt: skip
    for path, body, param in asks:
        answer = _raw(hub, "POST", path, json=body)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text

    # another tenant's store is not found, exactly like one that never existed
    other = hub_clients(live_hub, services.create_tenant("globex", "Globex"), [EMBED], EMBED)
    with pytest.raises(openai.NotFoundError):
        other().vector_stores.search(store.id, query="x")


def test_hybrid_search_fuses_the_keywords_ranking_with_the_embeddings(hub):
    """``ranking_options.hybrid_search``: a part number no embedding ranks first comes first by its keywords; the
    scores are the documented fusion of the embeddings' ranking (the same search without it) and the keywords'."""
    client = hub()
    docs = {**DOCS, "parts.txt": "Order form. Item ZX-4471 ships in a blue crate."}
    ids = {_upload(client, name, text): name for name, text in docs.items()}
    store = _settled(client, client.vector_stores.create(name="hybrid", file_ids=list(ids)).id)

    def search(query="ZX-4471", **options) -> list[dict]:
        body = {"query": query, "max_num_results": 50, **({"ranking_options": options} if options else {})}
        page = _raw(hub, "POST", f"vector_stores/{store.id}/search", json=body).json()
        assert_valid("VectorStoreSearchResultsPage", page)
        return page["data"]

    by_meaning = [hit["filename"] for hit in search()]
    assert sorted(by_meaning) == sorted(docs)
    keywords_only = search(hybrid_search={"embedding_weight": 0, "text_weight": 1})
    assert [(h["filename"], h["score"]) for h in keywords_only][0] == ("parts.txt", 1.0)
    assert all(h["score"] == 0 for h in keywords_only[1:])  # no term of the query in them
    both = search(hybrid_search={"embedding_weight": 1, "text_weight": 1})
    assert both[0]["filename"] == "parts.txt"
    for hit in both:
        fused = 1 / (60 + by_meaning.index(hit["filename"]) + 1) + (1 / 61 if hit["filename"] == "parts.txt" else 0)
        assert hit["score"] == pytest.approx(fused / (2 / 61), abs=1e-6), (hit, by_meaning)
    assert [h["filename"] for h in both[1:]] == [n for n in by_meaning if n != "parts.txt"]
    threshold = search(hybrid_search={"embedding_weight": 1, "text_weight": 1}, score_threshold=0.6)
    assert [h["filename"] for h in threshold] == ["parts.txt"]
    # the keywords are stemmed English: "shipping crates" is "ships ... crate", and "the" (a stop word) no term
    stemmed = search("the shipping crates", hybrid_search={"embedding_weight": 0, "text_weight": 1})
    assert [(h["filename"], h["score"]) for h in stemmed][0] == ("parts.txt", 1.0)
    assert all(h["score"] == 0 for h in stemmed[1:])  # france.txt and plants.txt hold "the": not a term
    refused = _raw(hub, "POST", f"vector_stores/{store.id}/search", json={
        "query": "x", "ranking_options": {"hybrid_search": {"embedding_weight": 0, "text_weight": 0}}})  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "ranking_options.hybrid_search"

    # the Responses API's file_search tool takes it, and echoes it
    hybrid = {"embedding_weight": 0, "text_weight": 1}
    tool = {"type": "file_search", "vector_store_ids": [store.id], "ranking_options": {"hybrid_search": hybrid}}
    raw = client.responses.with_raw_response.create(
        model=CHAT, input="Search for ZX-4471.", tools=[tool], tool_choice={"type": "file_search"}, max_tool_calls=1,
        max_output_tokens=64, temperature=0, include=["file_search_call.results"])  # fmt: skip
    body = raw.http_response.json()
    assert_valid("Response", body)
    assert body["tools"][0]["ranking_options"] == {"ranker": "auto", "score_threshold": 0, "hybrid_search": hybrid}
    call = body["output"][0]
    assert call["type"] == "file_search_call" and call["status"] == "completed", call
    # the tool's results are the search's for the model's queries with the same options
    same = _raw(hub, "POST", f"vector_stores/{store.id}/search", json={
        "query": call["queries"], "ranking_options": {"hybrid_search": hybrid}}).json()["data"]  # fmt: skip
    assert [(r["file_id"], r["score"]) for r in call["results"]] == [(h["file_id"], h["score"]) for h in same]


@pytest.fixture(scope="module")
def reranker_url(tmp_path_factory):
    """A service serving a tiny random-weight BERT cross-encoder (its relevance arbitrary, the same each time)."""
    checkpoint = encoders.bert_reranker_checkpoint(tmp_path_factory.mktemp("store-rerank") / "bert-rerank")
    with inference_service(*model_flags(f"tiny-rerank={checkpoint}:rerank")) as url:
        yield f"{url}/v1"


def test_a_rerank_model_reorders_the_best_chunks_unless_ranker_is_none(hub, reranker_url):
    """The live hub names ``STORE_RERANKER`` (``HUB_VECTOR_STORE_RERANK_MODEL``): once the catalog has it and the key
    may use it, a search's chunks take its relevance as their score and order (as ``/v1/rerank`` gives it for the
    same query and texts), metered under ``vector_stores/search``; ``ranker: "none"``, or a key that may not use
    it, searches as before."""
    client = hub()
    ids = {_upload(client, name, text): name for name, text in DOCS.items()}
    store = _settled(client, client.vector_stores.create(name="rerank", file_ids=list(ids)).id)
    services.register_model(STORE_RERANKER, ModelKind.RERANK, max_sequence_length=encoders.RERANK_MAX_POSITIONS,
                            deployment_url=reranker_url, upstream_model="tiny-rerank")  # fmt: skip
    services.grant_models(hub.tenant, [STORE_RERANKER])
    key = services.issue_key(hub.tenant, name="rerank")  # a new key: the others' entitlements may be cached
    query = "What is the capital of France?"

    def search(secret: str, **options) -> list[dict]:
        body = {"query": query, **({"ranking_options": options} if options else {})}
        answer = httpx.post(f"{hub.url}/v1/vector_stores/{store.id}/search", json=body, timeout=60,
                            headers={"authorization": f"Bearer {secret}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert_valid("VectorStoreSearchResultsPage", answer.json())
        return [(hit["filename"], hit["score"]) for hit in answer.json()["data"]]

    reranked = search(key.secret)
    direct = httpx.post(f"{hub.url}/v1/rerank", headers={"authorization": f"Bearer {key.secret}"}, timeout=60, json={
        "model": STORE_RERANKER, "query": query, "documents": list(DOCS.values())}).json()  # fmt: skip
    names = list(DOCS)
    expected = [(names[r["index"]], round(min(max(r["relevance_score"], 0.0), 1.0), 6)) for r in direct["results"]]
    assert [n for n, _ in reranked] == [n for n, _ in expected]
    assert [s for _, s in reranked] == pytest.approx([s for _, s in expected], abs=1e-6)
    by_meaning = search(hub.embed_only.secret)  # a key that may not use the reranker
    assert search(key.secret, ranker="none") == by_meaning
    assert by_meaning[0][0] == "france.txt" and by_meaning != reranked
    barrier(hub)  # the re-ranking was metered, once: neither of the last two searches re-ranked
    [row] = rows(route="vector_stores/search", model=STORE_RERANKER)
    assert row.api_key_id == key.key.pk and row.prompt_tokens > 0


def test_rewrite_query_searches_what_the_operators_chat_model_wrote(hub, inference_url):
    """The live hub names ``STORE_REWRITER`` (``HUB_VECTOR_STORE_REWRITE_MODEL``): until the catalog has it and the key
    may use it, ``rewrite_query`` searches the query as given; then the query is rewritten by it (the chat completion
    ``rewrite.request`` describes, as ``/v1/chat/completions`` gives it), ``search_query`` shows what was searched,
    the hits are that text's, and the rewriting is metered once under ``vector_stores/search``."""
    client = hub()
    ids = {_upload(client, name, text): name for name, text in DOCS.items()}
    store = _settled(client, client.vector_stores.create(name="rewrite", file_ids=list(ids)).id)
    query = "Hello! I was wondering, could you please tell me which city is the capital of France?"

    def search(secret: str, **body) -> dict:
        answer = httpx.post(f"{hub.url}/v1/vector_stores/{store.id}/search", json={"query": query, **body},
                            headers={"authorization": f"Bearer {secret}"}, timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert_valid("VectorStoreSearchResultsPage", answer.json())
        return answer.json()

    assert search(hub.everything.secret, rewrite_query=True)["search_query"] == [query]  # no such model yet
    services.register_model(STORE_REWRITER, ModelKind.CHAT, max_sequence_length=8192, max_output_length=256,
                            deployment_url=inference_url, upstream_model=CHAT)  # fmt: skip
    services.grant_models(hub.tenant, [STORE_REWRITER, EMBED])
    key = services.issue_key(hub.tenant, name="rewrite")  # a new key: the others' entitlements may be cached
    page = search(key.secret, rewrite_query=True)
    direct = httpx.post(f"{hub.url}/v1/chat/completions", json=rewrite.request(STORE_REWRITER, query), timeout=60,
                        headers={"authorization": f"Bearer {key.secret}"}).json()  # fmt: skip
    written = rewrite.query_of(direct["choices"][0]["message"]["content"], query)
    print(f"SmolLM2 rewrote {query!r} as {written!r}")
    assert page["search_query"] == [written] and "\n" not in written, (page["search_query"], direct)
    as_written = search(key.secret, query=written)
    assert as_written["search_query"] == [written] and as_written["data"] == page["data"]
    assert search(key.secret, rewrite_query=False)["search_query"] == [query]
    refused = httpx.post(f"{hub.url}/v1/vector_stores/{store.id}/search", json={"query": query, "rewrite_query": 1},
                         headers={"authorization": f"Bearer {key.secret}"}, timeout=60)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "rewrite_query", refused.text
    barrier(hub)  # the rewriting was metered once: no other search rewrote
    [row] = rows(route="vector_stores/search", model=STORE_REWRITER)
    assert row.api_key_id == key.key.pk and row.prompt_tokens > 0 and row.completion_tokens > 0


def test_the_responses_api_runs_file_search(hub):
    """The model (SmolLM2, made to call the tool by tool_choice) searches the store; the hub runs the search, shows it
    as a file_search_call item and lets the model answer with the results: one response, one usage row of both
    rounds."""
    client = hub()
    ids = [_upload(client, name, text) for name, text in DOCS.items()]
    store = _settled(client, client.vector_stores.create(name="rag", file_ids=ids).id)
    tool = {"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 2}
    # one search (SmolLM2 may copy the passages' markers into new ones); max_output_tokens bounds both rounds
    ask = {"model": CHAT, "input": "What is the capital of France?", "tools": [tool], "temperature": 0,
           "tool_choice": {"type": "file_search"}, "max_tool_calls": 1, "max_output_tokens": 64}  # fmt: skip
    raw = client.responses.with_raw_response.create(**ask, include=["file_search_call.results"])
    body = raw.http_response.json()
    assert_valid("Response", body)
    call, answer = body["output"][0], body["output"][-1]
    assert call["type"] == "file_search_call" and call["status"] == "completed" and call["queries"]
    assert 1 <= len(call["results"]) <= 2 and {r["filename"] for r in call["results"]} <= set(DOCS)
    assert all(r["text"] == DOCS[r["filename"]] for r in call["results"])
    part = answer["content"][0]
    assert answer["type"] == "message" and (part["text"] or part["annotations"])
    # the markers SmolLM2 may copy from the passages are citations of the files found, never left in the text
    assert not set(re.findall(r"<\|(file-\w+)\|>", part["text"])) & {r["file_id"] for r in call["results"]}
    assert all(a["file_id"] in {r["file_id"] for r in call["results"]} and 0 <= a["index"] <= len(part["text"])
               for a in part["annotations"])  # fmt: skip
    assert body["tools"][0]["vector_store_ids"] == [store.id]
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == (
        "responses", body["usage"]["input_tokens"], body["usage"]["output_tokens"])  # fmt: skip
    # the second round read the first's prompt again, and the results: both are counted
    assert row.prompt_tokens > 2 * len(body["instructions"] or "") + 100

    # streamed: the search's events, in order, each one OpenAI's; results only when asked for
    events = []
    with client.responses.stream(**ask) as stream:
        for event in stream:
            events.append(event.model_dump(mode="json", exclude_unset=True))
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    searched = [k for k in kinds if k.startswith("response.file_search_call.")]
    assert searched[:3] == ["response.file_search_call.in_progress", "response.file_search_call.searching",
                            "response.file_search_call.completed"]  # fmt: skip
    final = events[-1]["response"]
    # SmolLM2 may write up to max_output_tokens: then the response is incomplete, as OpenAI's
    assert kinds[-1] in ("response.completed", "response.incomplete") and final["output"][0]["results"] is None
    # results not shown are still kept for the responses that continue this one, as OpenAI's; never shown
    [search] = [i for i in StoredResponse.objects.get(pk=final["id"]).context() if i["type"] == "file_search_call"]
    assert search["results"] and {r["filename"] for r in search["results"]} <= set(DOCS)
    assert client.responses.retrieve(final["id"]).output[0].results is None
    # ... unless the retrieve asks for them, as OpenAI's
    shown = client.responses.retrieve(final["id"], include=["file_search_call.results"]).output[0].results
    assert [r.file_id for r in shown] == [r["file_id"] for r in search["results"]]

    # cut by max_output_tokens before the model had written its call whole: shown as an incomplete call, not run
    # (found under make run: it was left out, the output empty, or its markup, "<tool_", was shown as text)
    cut = client.responses.with_raw_response.create(**{**ask, "max_output_tokens": 3}).http_response.json()
    assert_valid("Response", cut)
    assert cut["status"] == "incomplete" and cut["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [(o["type"], o["status"], o["queries"], o["results"]) for o in cut["output"]] == [
        ("file_search_call", "incomplete", [], None)]  # fmt: skip
    with client.responses.stream(**{**ask, "max_output_tokens": 3}) as stream:
        kinds = [event.type for event in stream]
    assert kinds[2:] == ["response.output_item.added", "response.output_item.done", "response.incomplete"]

    # continued: the search stays in the context (stored response, and as input items sent back)
    more = client.responses.create(model=CHAT, previous_response_id=body["id"], input="And in one word?",
                                   max_output_tokens=8, temperature=0)  # fmt: skip
    assert more.output_text
    again = client.responses.create(model=CHAT, input=[{"role": "user", "content": "Capital of France?"}, call,
                                                       answer], max_output_tokens=8, temperature=0)  # fmt: skip
    assert again.output_text

    for changes, status, param in [
        ({"tools": [{**tool, "vector_store_ids": ["vs_nope"]}]}, 404, "tools.vector_store_ids"),
        ({"tools": [tool, tool]}, 400, "tools"),
        ({"tools": [], "tool_choice": {"type": "file_search"}}, 400, "tool_choice"),
        ({"tools": [{**tool, "max_num_results": 51}]}, 400, "tools[0].max_num_results"),
        ({"tools": [{**tool, "filters": {"type": "eq", "key": "a"}}]}, 400, "tools[0].filters.value"),
        (
            {"tools": [{**tool, "ranking_options": {"hybrid_search": {"embedding_weight": -1, "text_weight": 1}}}]},
            400,
            "tools[0].ranking_options.hybrid_search.embedding_weight",
        ),
        (
            {"tools": [{**tool, "ranking_options": {"hybrid_search": {"text_weight": 0, "embedding_weight": 0}}}]},
            400,
            "tools[0].ranking_options.hybrid_search",
        ),
    ]:
        answer = _raw(hub, "POST", "responses", json={**ask, **changes})
        assert answer.status_code == status, (changes, answer.text)
        assert answer.json()["error"]["param"] == param, (changes, answer.json())
