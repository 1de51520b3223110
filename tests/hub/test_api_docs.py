"""The API documentation: the OpenAPI document, Swagger UI at /docs and ReDoc at /redoc, all served
without the internet (assets from drf-spectacular-sidecar). That the document describes the real
answers is checked against a live hub in ``tests/e2e/test_reference_examples.py`` and, for every route, streamed
events included, in ``tests/e2e/test_fuzz.py``."""

from __future__ import annotations

import re

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

PUBLIC_ROUTES = {
    "/chat/completions": {"post", "get"},
    "/chat/completions/{completion_id}": {"get", "post", "delete"},
    "/chat/completions/{completion_id}/messages": {"get"},
    "/completions": {"post"},
    "/embeddings": {"post"},
    "/rerank": {"post"},
    "/score": {"post"},
    "/moderations": {"post"},
    "/responses": {"post"},
    "/responses/input_tokens": {"post"},
    "/responses/compact": {"post"},
    "/responses/{response_id}": {"get", "delete"},
    "/responses/{response_id}/input_items": {"get"},
    "/responses/{response_id}/cancel": {"post"},
    "/conversations": {"post"},
    "/conversations/{conversation_id}": {"get", "post", "delete"},
    "/conversations/{conversation_id}/items": {"get", "post"},
    "/conversations/{conversation_id}/items/{item_id}": {"get", "delete"},
    "/audio/transcriptions": {"post"},
    "/audio/translations": {"post"},
    "/audio/speech": {"post"},
    "/models": {"get"},
    "/models/{model_id}": {"get"},
    "/usage": {"get"},
    "/costs": {"get"},
    "/files": {"get", "post"},
    "/files/{file_id}": {"get", "delete"},
    "/files/{file_id}/content": {"get"},
    "/uploads": {"post"},
    "/uploads/{upload_id}/parts": {"post"},
    "/uploads/{upload_id}/complete": {"post"},
    "/uploads/{upload_id}/cancel": {"post"},
    "/batches": {"get", "post"},
    "/batches/{batch_id}": {"get"},
    "/batches/{batch_id}/cancel": {"post"},
    "/webhook_endpoints": {"get", "post"},
    "/webhook_endpoints/{webhook_endpoint_id}": {"get", "post", "delete"},
    "/webhook_endpoints/{webhook_endpoint_id}/rotate_secret": {"post"},
    "/webhook_endpoints/{webhook_endpoint_id}/test": {"post"},
    "/webhook_event_types": {"get"},
    "/vector_stores": {"get", "post"},
    "/vector_stores/{vector_store_id}": {"get", "post", "delete"},
    "/vector_stores/{vector_store_id}/search": {"post"},
    "/vector_stores/{vector_store_id}/files": {"get", "post"},
    "/vector_stores/{vector_store_id}/files/{file_id}": {"get", "post", "delete"},
    "/vector_stores/{vector_store_id}/files/{file_id}/content": {"get"},
    "/vector_stores/{vector_store_id}/file_batches": {"post"},
    "/vector_stores/{vector_store_id}/file_batches/{batch_id}": {"get"},
    "/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel": {"post"},
    "/vector_stores/{vector_store_id}/file_batches/{batch_id}/files": {"get"},
}


@pytest.fixture
def schema(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response["content-type"].startswith("application/")
    return response.json()


def _refs(node) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_the_schema_is_valid_openapi_with_every_public_route_once(schema):
    validate_schema(schema)
    assert {path: set(ops) for path, ops in schema["paths"].items()} == PUBLIC_ROUTES
    assert [s["url"] for s in schema["servers"]] == ["/v1", "/v2", "/vision"]
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "description": "An API key of your tenant (`sk-...`).",
    }  # fmt: skip
    for path, methods in PUBLIC_ROUTES.items():
        for method in methods:
            operation = schema["paths"][path][method]
            assert operation["security"] == [{"ApiKey": []}], (path, method)
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
    defined = {f"#/components/schemas/{name}" for name in schema["components"]["schemas"]}
    assert _refs(schema) <= defined, _refs(schema) - defined


def test_generation_routes_document_their_bodies_and_streams(schema):
    chat = schema["paths"]["/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert {"400", "401", "404", "502", "503"} <= set(chat["responses"])
    request = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert request["required"] == ["model", "messages"]
    assert {"max_tokens", "temperature", "stream", "stream_options", "seed"} <= set(request["properties"])
    embeddings = schema["components"]["schemas"]["EmbeddingRequest"]["properties"]
    assert embeddings["encoding_format"]["enum"] == ["float", "base64"]
    speech = schema["paths"]["/audio/transcriptions"]["post"]
    upload = speech["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    assert upload.endswith("/CreateTranscriptionRequest")
    assert set(speech["responses"]["200"]["content"]) == {"application/json", "text/plain", "text/event-stream"}
    form = schema["components"]["schemas"]["CreateTranscriptionRequest"]
    assert form["required"] == ["file", "model"] and form["properties"]["file"]["format"] == "binary"


@pytest.mark.parametrize("page, marker", [("/docs", "SwaggerUIBundle"), ("/redoc", "<redoc")])
def test_swagger_ui_and_redoc_are_served_with_local_assets(client, page, marker):
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert marker in html and "/openapi.json" in html
    scripts = re.findall(r'src="([^"]+\.js)"', html)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    for src in scripts:
        asset = client.get(src)
        assert asset.status_code == 200, src
        assert b"".join(asset.streaming_content if asset.streaming else [asset.content])
