"""Fuzzing every public route with schemathesis, generated from the live hub's own ``/openapi.json``: valid
bodies (positive) and bodies that break the schema (negative: wrong types, out-of-range numbers, missing
fields), against a live hub in front of the live inference service. Whatever comes in, no answer is a 5xx,
every error is OpenAI's error object, a stream carries no error event, the hub logs no traceback, every answer
is one the document gives (its status, its media type and its body, each streamed event's JSON too), and every
answer a model gave is metered: its usage row is written.

The routes: models, usage and costs; chat, completions, embeddings; rerank and score (on a tiny random-weight
cross-encoder that a service of this module's own serves); moderations (on a tiny random-weight guard, served the same
way); the Responses API, its stored responses and cancel;
stored chat completions; conversations and their items; files, uploads and batches, vector stores, their files and
file batches, webhook endpoints (the steered cases of these name one the test stored);
transcriptions and translations (the steered positive cases carry a
real recording, so that their other fields reach Whisper); speech (on a tiny random-weight VITS voice, served the same
way).

The budget is fixed (``EXAMPLES`` per operation and mode, derandomized: the same cases on every run) so CI's time
is known. To keep the CPU's generations short, the fuzz steers some cases to a catalog model of its own,
``fuzz-chat`` (the packaged chat model behind a tiny ``max_output_length``, so the hub refuses big ``max_tokens``
itself), or to the route's model; the rest keep their random model ids (404s). A body with no ``max_tokens``
(``max_output_tokens``) gets a small one: without it, a CPU model would generate up to its context length. A
background response is not streamed (no worker runs the fuzz's: its stream would wait for ever).
Steered chat messages without a content get one (the schema requires only a role, so most valid-by-schema chats
would stop at that 400). The first positive case of each operation is the canonical valid request, and it must be
served (cancel's is the documented 400: the stored response it names was not made in the background).
"""

from __future__ import annotations

import functools
import io
import json
import wave

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from accounts import services
from accounts.models import ModelKind
from tests.support import encoders
from tests.support.inference import guard_service, inference_service, model_flags, tts_service
from tests.support.live import CHAT, EMBED, WHISPER, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

EXAMPLES = 50  # per operation and generation mode
VECTOR_STORE_OPERATIONS = (
    "POST /vector_stores",
    "GET /vector_stores",
    "GET /vector_stores/{vector_store_id}",
    "POST /vector_stores/{vector_store_id}",
    "DELETE /vector_stores/{vector_store_id}",
    "POST /vector_stores/{vector_store_id}/search",
    "POST /vector_stores/{vector_store_id}/files",
    "GET /vector_stores/{vector_store_id}/files",
    "GET /vector_stores/{vector_store_id}/files/{file_id}",
    "POST /vector_stores/{vector_store_id}/files/{file_id}",
    "DELETE /vector_stores/{vector_store_id}/files/{file_id}",
    "GET /vector_stores/{vector_store_id}/files/{file_id}/content",
    "POST /vector_stores/{vector_store_id}/file_batches",
    "GET /vector_stores/{vector_store_id}/file_batches/{batch_id}",
    "POST /vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel",
    "GET /vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
)
WEBHOOK_OPERATIONS = (
    "POST /webhook_endpoints",
    "GET /webhook_endpoints",
    "GET /webhook_endpoints/{webhook_endpoint_id}",
    "POST /webhook_endpoints/{webhook_endpoint_id}",
    "DELETE /webhook_endpoints/{webhook_endpoint_id}",
    "POST /webhook_endpoints/{webhook_endpoint_id}/rotate_secret",
    "POST /webhook_endpoints/{webhook_endpoint_id}/test",
    "GET /webhook_event_types",
)
# fewer where a steered case runs Whisper on a real recording (about a second each on this CPU), and on the vector
# store and webhook routes (sixteen and eight of them: the budget of a few)
FEWER_EXAMPLES = {"POST /audio/transcriptions": 20, "POST /audio/translations": 20, "POST /audio/speech": 20,
                  **dict.fromkeys(VECTOR_STORE_OPERATIONS, 10), **dict.fromkeys(WEBHOOK_OPERATIONS, 10)}  # fmt: skip
FUZZ_CHAT = "fuzz-chat"
MAX_OUTPUT = 8  # fuzz-chat's max_output_length: a larger max_tokens is the hub's 400, not a long generation
SMALL_MAX_TOKENS = 4  # given to bodies without one (see above)
FUZZ_RERANK = "fuzz-rerank"  # a tiny random-weight cross-encoder, served by its own service (``reranker_url``)
FUZZ_GUARD = "fuzz-guard"  # a tiny random-weight Llama Guard, served by its own service (``guard_url``)
FUZZ_TTS = "fuzz-tts"  # a tiny random-weight VITS voice, served by its own service (``tts_url``)
STORED = "{stored}"  # in VALID: the id of a response stored for the test (``_stored_response``)
OPERATIONS = (
    "GET /models",
    "GET /models/{model_id}",
    "GET /usage",
    "GET /costs",
    "POST /chat/completions",
    "POST /completions",
    "POST /embeddings",
    "POST /rerank",
    "POST /score",
    "POST /moderations",
    "POST /responses",
    "POST /responses/input_tokens",
    "POST /responses/compact",
    "GET /responses/{response_id}",
    "GET /responses/{response_id}/input_items",
    "DELETE /responses/{response_id}",
    "POST /responses/{response_id}/cancel",
    "GET /chat/completions",
    "GET /chat/completions/{completion_id}",
    "POST /chat/completions/{completion_id}",
    "DELETE /chat/completions/{completion_id}",
    "GET /chat/completions/{completion_id}/messages",
    "POST /conversations",
    "GET /conversations/{conversation_id}",
    "POST /conversations/{conversation_id}",
    "DELETE /conversations/{conversation_id}",
    "GET /conversations/{conversation_id}/items",
    "POST /conversations/{conversation_id}/items",
    "GET /conversations/{conversation_id}/items/{item_id}",
    "DELETE /conversations/{conversation_id}/items/{item_id}",
    "POST /audio/transcriptions",
    "POST /audio/translations",
    "POST /audio/speech",
    "POST /files",
    "GET /files",
    "GET /files/{file_id}",
    "GET /files/{file_id}/content",
    "DELETE /files/{file_id}",
    "POST /batches",
    "GET /batches",
    "GET /batches/{batch_id}",
    "POST /batches/{batch_id}/cancel",
    "POST /uploads",
    "POST /uploads/{upload_id}/parts",
    "POST /uploads/{upload_id}/complete",
    "POST /uploads/{upload_id}/cancel",
    *VECTOR_STORE_OPERATIONS,
    *WEBHOOK_OPERATIONS,
)
# the model a steered case uses, by path: the right kind for the route, and once in four the wrong kind
RIGHT = {
    "/chat/completions": FUZZ_CHAT, "/completions": FUZZ_CHAT, "/responses": FUZZ_CHAT, "/embeddings": EMBED,
    "/responses/input_tokens": FUZZ_CHAT, "/responses/compact": FUZZ_CHAT,
    "/rerank": FUZZ_RERANK, "/score": FUZZ_RERANK, "/audio/transcriptions": WHISPER, "/audio/translations": WHISPER,
    "/models/{model_id}": CHAT, "/moderations": FUZZ_GUARD, "/audio/speech": FUZZ_TTS,
}  # fmt: skip
WRONG = {
    "/chat/completions": EMBED, "/completions": EMBED, "/responses": EMBED, "/embeddings": FUZZ_CHAT,
    "/responses/input_tokens": EMBED, "/responses/compact": EMBED,
    "/rerank": EMBED, "/score": FUZZ_CHAT, "/audio/transcriptions": FUZZ_CHAT, "/audio/translations": EMBED,
    "/models/{model_id}": "nope", "/moderations": EMBED, "/audio/speech": WHISPER,
}  # fmt: skip
# the routes whose answers are metered (POST: GET /chat/completions lists stored ones): each 200 has its usage row
METERED = {"/chat/completions", "/completions", "/embeddings", "/rerank", "/score", "/responses", "/responses/compact",
           "/audio/transcriptions", "/audio/translations", "/audio/speech", "/moderations",
           "/vector_stores/{vector_store_id}/search"}  # fmt: skip
MAX_TOKENS_FIELD = {"/chat/completions": "max_tokens", "/completions": "max_tokens", "/responses": "max_output_tokens"}
_HI = [{"role": "user", "content": "Hi"}]
_AUDIO = {"model": WHISPER, "response_format": "text"}
_VS_FILE = {"vector_store_id": STORED, "file_id": STORED}
_VS_BATCH = {"vector_store_id": STORED, "batch_id": STORED}
_WEBHOOK = {"webhook_endpoint_id": STORED}
VALID = {  # one valid request per operation, as the OpenAI SDK sends it
    "GET /models": {},
    "GET /models/{model_id}": {"path_parameters": {"model_id": FUZZ_CHAT}},
    "GET /usage": {"query": {"group_by": "model"}},
    "GET /costs": {"query": {"group_by": "line_item"}},
    "POST /chat/completions": {"body": {"model": FUZZ_CHAT, "messages": _HI, "max_tokens": 4, "stream": True}},
    "POST /completions": {"body": {"model": FUZZ_CHAT, "prompt": "Once", "max_tokens": 4}},
    "POST /embeddings": {"body": {"model": EMBED, "input": ["a", "b"]}},
    "POST /rerank": {"body": {"model": FUZZ_RERANK, "query": "fox?", "documents": ["a fox", "Paris"], "top_n": 1}},
    "POST /score": {"body": {"model": FUZZ_RERANK, "text_1": "fox?", "text_2": ["a fox", "Paris"]}},
    "POST /moderations": {"body": {"model": FUZZ_GUARD, "input": ["a fox", "Paris"]}},
    "POST /responses": {"body": {"model": FUZZ_CHAT, "input": "Hi", "max_output_tokens": 4, "stream": True}},
    "POST /responses/input_tokens": {"body": {"model": FUZZ_CHAT, "input": "Hi", "instructions": "Be brief."}},
    "POST /responses/compact": {
        "body": {
            "model": FUZZ_CHAT,
            "input": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        }
    },
    "GET /responses/{response_id}": {"path_parameters": {"response_id": STORED}},
    "GET /responses/{response_id}/input_items": {"path_parameters": {"response_id": STORED}, "query": {"limit": 1}},
    "DELETE /responses/{response_id}": {"path_parameters": {"response_id": STORED}},
    "POST /responses/{response_id}/cancel": {"path_parameters": {"response_id": STORED}},
    "GET /chat/completions": {"query": {"limit": 2, "order": "desc"}},
    "GET /chat/completions/{completion_id}": {"path_parameters": {"completion_id": STORED}},
    "POST /chat/completions/{completion_id}": {
        "path_parameters": {"completion_id": STORED},
        "body": {"metadata": {"a": "b"}},
    },  # fmt: skip
    "DELETE /chat/completions/{completion_id}": {"path_parameters": {"completion_id": STORED}},
    "GET /chat/completions/{completion_id}/messages": {"path_parameters": {"completion_id": STORED}},
    "POST /conversations": {"body": {"items": _HI, "metadata": {"a": "b"}}},
    "GET /conversations/{conversation_id}": {"path_parameters": {"conversation_id": STORED}},
    "POST /conversations/{conversation_id}": {
        "path_parameters": {"conversation_id": STORED},
        "body": {"metadata": {"a": "b"}},
    },  # fmt: skip
    "DELETE /conversations/{conversation_id}": {"path_parameters": {"conversation_id": STORED}},
    "GET /conversations/{conversation_id}/items": {"path_parameters": {"conversation_id": STORED}},
    "POST /conversations/{conversation_id}/items": {
        "path_parameters": {"conversation_id": STORED},
        "body": {"items": _HI},
    },  # fmt: skip
    "GET /conversations/{conversation_id}/items/{item_id}": {
        "path_parameters": {"conversation_id": STORED, "item_id": STORED}
    },
    "DELETE /conversations/{conversation_id}/items/{item_id}": {
        "path_parameters": {"conversation_id": STORED, "item_id": STORED}
    },
    "POST /audio/transcriptions": {"body": {**_AUDIO, "file": "{wav}", "stream": True}},
    "POST /audio/translations": {"body": {**_AUDIO, "file": "{wav}"}},
    "POST /audio/speech": {"body": {"model": FUZZ_TTS, "input": "Hi there.", "voice": "alloy", "stream_format": "sse"}},
    "POST /files": {"body": {"file": "{jsonl}", "purpose": "batch"}},
    "GET /files": {"query": {"purpose": "batch", "limit": 2}},
    "GET /files/{file_id}": {"path_parameters": {"file_id": STORED}},
    "GET /files/{file_id}/content": {"path_parameters": {"file_id": STORED}},
    "DELETE /files/{file_id}": {"path_parameters": {"file_id": STORED}},
    "POST /batches": {
        "body": {"input_file_id": STORED, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    },
    "GET /batches": {"query": {"limit": 2}},
    "GET /batches/{batch_id}": {"path_parameters": {"batch_id": STORED}},
    "POST /batches/{batch_id}/cancel": {"path_parameters": {"batch_id": STORED}},
    "POST /uploads": {"body": {"filename": "in.jsonl", "purpose": "batch", "bytes": 100, "mime_type": "text/jsonl"}},
    "POST /uploads/{upload_id}/parts": {"path_parameters": {"upload_id": STORED}, "body": {"data": "{jsonl}"}},
    "POST /uploads/{upload_id}/complete": {"path_parameters": {"upload_id": STORED}, "body": {"part_ids": STORED}},
    "POST /uploads/{upload_id}/cancel": {"path_parameters": {"upload_id": STORED}},
    "POST /vector_stores": {"body": {"name": "docs", "metadata": {"a": "b"}}},
    "GET /vector_stores": {"query": {"limit": 2}},
    "GET /vector_stores/{vector_store_id}": {"path_parameters": {"vector_store_id": STORED}},
    "POST /vector_stores/{vector_store_id}": {
        "path_parameters": {"vector_store_id": STORED},
        "body": {"name": "renamed"},
    },
    "DELETE /vector_stores/{vector_store_id}": {"path_parameters": {"vector_store_id": STORED}},
    "POST /vector_stores/{vector_store_id}/search": {
        "path_parameters": {"vector_store_id": STORED},
        "body": {"query": "fox", "max_num_results": 2},
    },
    "POST /vector_stores/{vector_store_id}/files": {
        "path_parameters": {"vector_store_id": STORED},
        "body": {"file_id": STORED},
    },
    "GET /vector_stores/{vector_store_id}/files": {"path_parameters": {"vector_store_id": STORED}},
    "GET /vector_stores/{vector_store_id}/files/{file_id}": {"path_parameters": _VS_FILE},
    "POST /vector_stores/{vector_store_id}/files/{file_id}": {
        "path_parameters": _VS_FILE,
        "body": {"attributes": {"a": 1}},
    },
    "DELETE /vector_stores/{vector_store_id}/files/{file_id}": {"path_parameters": _VS_FILE},
    "GET /vector_stores/{vector_store_id}/files/{file_id}/content": {"path_parameters": _VS_FILE},
    "POST /vector_stores/{vector_store_id}/file_batches": {
        "path_parameters": {"vector_store_id": STORED},
        "body": {"file_ids": STORED},
    },
    "GET /vector_stores/{vector_store_id}/file_batches/{batch_id}": {"path_parameters": _VS_BATCH},
    "POST /vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel": {"path_parameters": _VS_BATCH},
    "GET /vector_stores/{vector_store_id}/file_batches/{batch_id}/files": {"path_parameters": _VS_BATCH},
    "POST /webhook_endpoints": {
        "body": {"name": "ops", "url": "https://hooks.example.com/in", "event_types": ["batch.completed"]}
    },
    "GET /webhook_endpoints": {"query": {"limit": 2}},
    "GET /webhook_endpoints/{webhook_endpoint_id}": {"path_parameters": _WEBHOOK},
    "POST /webhook_endpoints/{webhook_endpoint_id}": {"path_parameters": _WEBHOOK, "body": {"name": "renamed"}},
    "DELETE /webhook_endpoints/{webhook_endpoint_id}": {"path_parameters": _WEBHOOK},
    "POST /webhook_endpoints/{webhook_endpoint_id}/rotate_secret": {
        "path_parameters": _WEBHOOK,
        "body": {"keep_old_secret_active_for_24_hours": True},
    },
    "POST /webhook_endpoints/{webhook_endpoint_id}/test": {
        "path_parameters": _WEBHOOK,
        "body": {"event_type": "response.completed"},
    },
    "GET /webhook_event_types": {},
}
# a batch's input file: one chat request (no worker runs the fuzz's batches: they stay queued, as created)
_JSONL = (json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": FUZZ_CHAT, "messages": _HI, "max_tokens": 1}}) + "\n").encode()  # fmt: skip
# the status of VALID's request: cancelling takes a background response, and the stored one is not (documented)
VALID_STATUS = {"POST /responses/{response_id}/cancel": 400}
ERROR_FIELDS = {"message", "type", "param", "code"}
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
RESPONSE_ENDS = ("response.completed", "response.incomplete")  # a Responses stream's last event, unfailed


@pytest.fixture(scope="module")
def reranker_url(tmp_path_factory):
    """A service serving a tiny random-weight BERT cross-encoder: the live service serves no rerank model."""
    root = tmp_path_factory.mktemp("fuzz-rerank")
    checkpoint = encoders.bert_reranker_checkpoint(root / "bert-rerank")
    with inference_service(*model_flags(f"tiny-rerank={checkpoint}:rerank")) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def guard_url(tmp_path_factory):
    """A service serving a tiny random-weight guard (Llama Guard 3's template): the live service serves none."""
    with guard_service(tmp_path_factory.mktemp("fuzz-guard"), "tiny-guard") as url:
        yield url


@pytest.fixture(scope="module")
def tts_url(tmp_path_factory):
    """A service serving a tiny random-weight VITS voice: the live service serves none."""
    with tts_service(tmp_path_factory.mktemp("fuzz-tts"), "tiny-tts") as url:
        yield url


@pytest.fixture
def fuzz(hub, inference_url, reranker_url, guard_url, tts_url):
    """The hub's schema as schemathesis loads it, an HTTP session, a key entitled to every model, the base URL."""
    services.register_model(
        FUZZ_CHAT, ModelKind.CHAT, max_sequence_length=2048, max_output_length=MAX_OUTPUT,
        deployment_url=inference_url, upstream_model=CHAT,
    )  # fmt: skip
    services.register_model(
        FUZZ_RERANK, ModelKind.RERANK, max_sequence_length=encoders.RERANK_MAX_POSITIONS,
        deployment_url=reranker_url, upstream_model="tiny-rerank",
    )  # fmt: skip
    services.register_model(
        FUZZ_GUARD, ModelKind.MODERATION, max_sequence_length=2048, deployment_url=guard_url,
        upstream_model="tiny-guard",
    )  # fmt: skip
    services.register_model(FUZZ_TTS, ModelKind.TTS, deployment_url=tts_url, upstream_model="tiny-tts")
    services.grant_models(hub.tenant, [FUZZ_CHAT, FUZZ_RERANK, FUZZ_GUARD, FUZZ_TTS])
    auth = {"authorization": f"Bearer {hub.everything.secret}"}
    with requests.Session() as session:
        yield schemathesis.openapi.from_url(f"{hub.url}/openapi.json"), session, auth, f"{hub.url}/v1"


def _stored(label: str, session: requests.Session, base_url: str, auth: dict[str, str]) -> dict[str, str]:
    """What the steered cases of ``label`` name, stored for this test: a response, a chat completion, or a
    conversation and its item (path parameter -> id)."""

    def post(route: str, body: dict) -> dict:
        answer = session.post(f"{base_url}/{route}", json=body, headers=auth, timeout=120)
        assert answer.status_code == 200, answer.text
        return answer.json()

    if label.split(" ")[1].startswith("/vector_stores"):  # a store with a file and a batch of another, or a file
        note = {"file": ("notes.txt", b"The quick brown fox jumps over the lazy dog.")}
        upload = session.post(f"{base_url}/files", data={"purpose": "assistants"}, files=note, headers=auth, timeout=30)
        assert upload.status_code == 200, upload.text
        file_id = upload.json()["id"]
        if "{vector_store_id}" not in label:
            return {}
        store = post("vector_stores", {"name": "fuzz", "file_ids": [file_id]})["id"]
        batch = post(f"vector_stores/{store}/file_batches", {"file_ids": [file_id]})["id"]
        return {"vector_store_id": store, "file_id": file_id, "batch_id": batch, "file_ids": [file_id]}
    if "{response_id}" in label:
        return {"response_id": post("responses", {"model": FUZZ_CHAT, "input": "Hi",
                                                  "max_output_tokens": SMALL_MAX_TOKENS})["id"]}  # fmt: skip
    if "{completion_id}" in label:
        body = {"model": FUZZ_CHAT, "messages": _HI, "max_tokens": SMALL_MAX_TOKENS, "store": True}
        return {"completion_id": post("chat/completions", body)["id"]}
    if "{file_id}" in label or "/batches" in label:
        answer = session.post(f"{base_url}/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", _JSONL)},
                              headers=auth, timeout=30)  # fmt: skip
        assert answer.status_code == 200, answer.text
        found = {"file_id": answer.json()["id"]}
        if "{batch_id}" in label:
            body = {"input_file_id": found["file_id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
            found["batch_id"] = post("batches", body)["id"]
        return found
    if "{upload_id}" in label:  # room for parts; for complete, one part that fills it
        size = len(_JSONL) * (1 if label.endswith("/complete") else 1000)
        upload = post("uploads", {"filename": "in.jsonl", "purpose": "batch", "bytes": size, "mime_type": "text/jsonl"})
        found = {"upload_id": upload["id"]}
        if label.endswith("/complete"):
            answer = session.post(f"{base_url}/uploads/{upload['id']}/parts", files={"data": ("blob", _JSONL)},
                                  headers=auth, timeout=30)  # fmt: skip
            assert answer.status_code == 200, answer.text
            found["part_ids"] = [answer.json()["id"]]
        return found
    if "{webhook_endpoint_id}" in label:  # its test events go to the hub's own /health (which answers a POST 405)
        body = {"name": "fuzz", "url": base_url.rsplit("/", 1)[0] + "/health", "event_types": ["batch.failed"]}
        return {"webhook_endpoint_id": post("webhook_endpoints", body)["id"]}
    if "{conversation_id}" in label:
        conversation = post("conversations", {"items": _HI})["id"]
        items = session.get(f"{base_url}/conversations/{conversation}/items", headers=auth, timeout=30).json()
        return {"conversation_id": conversation, "item_id": items["data"][0]["id"]}
    return {}


@functools.cache
def _wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 440 Hz tone as a 16-bit mono wav: audio Whisper decodes (what it hears in it does not matter here)."""
    samples = (np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 8000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1), file.setsampwidth(2), file.setframerate(rate), file.writeframes(samples.tobytes())
    return out.getvalue()


def _steer(case: schemathesis.Case, pick: str | None, auth: dict[str, str], stored: dict[str, str],
           real: bool) -> None:  # fmt: skip
    """Point a case at a served model (or, on the routes of something stored, at ``_stored``'s) with
    a valid key (``pick``: "right" or "wrong" kind; None keeps the case as generated: a random model id, and in
    negative mode sometimes no key), and bound its generation. ``real``: a steered audio case's file is a real
    recording, so that its other fields reach the decoder (the negative cases' fields are refused before it)."""
    path = case.operation.path
    if pick:  # a header of the case itself: negative mode drops the key from the request otherwise
        case.headers = {**(case.headers or {}), **auth}
    if pick and path == "/models/{model_id}":
        case.path_parameters = {**(case.path_parameters or {}), "model_id": (RIGHT if pick == "right" else WRONG)[path]}
    if pick == "right" and stored:
        case.path_parameters = {**(case.path_parameters or {}),
                                **{k: v for k, v in stored.items() if f"{{{k}}}" in path}}  # fmt: skip
    if not isinstance(case.body, dict) or case.operation.method.upper() != "POST" or path not in RIGHT:
        return
    if pick:
        case.body["model"] = (RIGHT if pick == "right" else WRONG)[path]
    field = MAX_TOKENS_FIELD.get(path)
    if field and case.body.get(field) is None and case.body.get("max_completion_tokens") is None:
        case.body[field] = SMALL_MAX_TOKENS
    if case.body.get("background") is True and case.body.get("stream") is True:
        case.body["stream"] = False  # its stream waits for the run, and no worker runs the fuzz's background work
    if real and pick == "right" and path.startswith("/audio/") and "file" in case.body:
        case.body["file"] = _wav()
    if real and pick == "right" and path == "/audio/speech" and isinstance(case.body.get("voice"), str):
        case.body["voice"] = "alloy"  # a voice the model has, so that its other fields reach it
    messages = case.body.get("messages")
    if pick == "right" and isinstance(messages, list):  # the schema requires only a role; the hub a content too
        for message in messages:
            if isinstance(message, dict) and message.get("role") != "assistant" and "content" not in message:
                message["content"] = "Hi"


ANSWERED: dict[str, str] = {}  # request id -> the request and its answer, to say which one was not metered
QUEUED: set[str] = set()  # background responses answered "queued": metered when a runner answers them (none here)


def _check(case: schemathesis.Case, response: schemathesis.Response) -> None:
    if response.status_code == 200:
        request_id = (response.headers.get("x-request-id") or [""])[0]
        ANSWERED[request_id] = f"{json.dumps(case.body, default=str)[:1000]} -> {response.content[:500]!r}"
        json_answer = response.headers.get("content-type", [""])[0].startswith("application/json")
        if case.operation.path == "/responses" and json_answer and response.json().get("status") == "queued":
            QUEUED.add(request_id)
    where = f"{response.request.method} {response.request.url} -> {response.status_code}\n{case.as_curl_command()}"
    assert response.status_code < 500, f"{where}\n{response.content[:2000]!r}"
    content_type = response.headers.get("content-type", [""])[0]
    if response.status_code >= 400:
        assert content_type.startswith("application/json"), where
        body = json.loads(response.content)
        assert set(body) == {"error"} and set(body["error"]) == ERROR_FIELDS, f"{where}\n{body}"
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str), where
        assert all(error[f] is None or isinstance(error[f], str) for f in ("param", "code")), f"{where}\n{body}"
    elif content_type.startswith("text/event-stream"):
        events = [line[6:] for line in response.content.decode().splitlines() if line.startswith("data: ")]
        parsed = [json.loads(event) for event in events if event != "[DONE]"]
        assert not any("error" in event for event in parsed), f"{where}\n{events}"
        if case.operation.path == "/audio/speech":  # OpenAI's speech events: audio, then the usage; no [DONE]
            last = parsed[-1]["type"] if parsed else None
            assert response.stream_cut_short or last == "speech.audio.done", f"{where}\n{events}"
        elif case.operation.path == "/responses":  # typed events, the last one final; no [DONE]
            assert not any(event["type"] in ("error", "response.failed") for event in parsed), f"{where}\n{events}"
            last = parsed[-1]["type"] if parsed else None
            assert response.stream_cut_short or last in RESPONSE_ENDS, f"{where}\n{events}"
        else:
            assert response.stream_cut_short or events[-1] == "[DONE]", f"{where}\n{events}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_public_route_under_fuzzing(fuzz, label, mode):
    schema, session, auth, base_url = fuzz
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is missing from /openapi.json"
    stored = _stored(label, session, base_url, auth)
    picks = st.sampled_from(["right", "wrong", None, "right"])  # Hypothesis draws the first one most
    statuses: list[int] = []
    served: list[str] = []  # the request ids of the answers a model gave

    @settings(
        max_examples=FEWER_EXAMPLES.get(label, EXAMPLES), derandomize=True, deadline=None, database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), pick=picks)
    def fuzz_one(case: schemathesis.Case, pick: str | None) -> None:
        _steer(case, pick, auth, stored, real=mode == GenerationMode.POSITIVE)
        response = case.call(base_url=base_url, session=session, headers=auth, timeout=120)
        statuses.append(response.status_code)
        _check(case, response)
        if response.status_code == 200 and case.operation.method.upper() == "POST" and case.operation.path in METERED:
            served.append(response.headers["x-request-id"][0])
        case.validate_response(response, checks=CONFORMANCE)  # the status, media type and body the document gives

    if mode == GenerationMode.POSITIVE:  # the canonical valid request, first: it must be served
        valid = {**VALID[label]}
        if "path_parameters" in valid:
            valid["path_parameters"] = {k: stored[k] if v == STORED else v for k, v in valid["path_parameters"].items()}
        if "file" in valid.get("body", {}):
            valid["body"] = {**valid["body"], "file": _wav() if valid["body"]["file"] == "{wav}" else _JSONL}
        if "data" in valid.get("body", {}):  # an upload's part
            valid["body"] = {**valid["body"], "data": _JSONL}
        if valid.get("body", {}).get("part_ids") == STORED:
            valid["body"] = {**valid["body"], "part_ids": stored["part_ids"]}
        if valid.get("body", {}).get("file_id") == STORED:
            valid["body"] = {**valid["body"], "file_id": stored["file_id"]}
        if valid.get("body", {}).get("file_ids") == STORED:
            valid["body"] = {**valid["body"], "file_ids": stored["file_ids"]}
        if valid.get("body", {}).get("input_file_id") == STORED:
            valid["body"] = {**valid["body"], "input_file_id": stored["file_id"]}
        fuzz_one = example(case=operation.Case(**valid), pick=None)(fuzz_one)
    fuzz_one()
    assert mode == GenerationMode.NEGATIVE or statuses[0] == VALID_STATUS.get(label, 200), statuses
    metered = {row.request_id for row in rows(len(served), request_id__in=served)}
    missing = sorted(set(served) - metered - QUEUED)
    assert not missing, "answered but not metered:\n" + "\n".join(f"{i}: {ANSWERED.get(i)}" for i in missing)
