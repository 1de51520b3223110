"""The OpenAPI document served by the hub describes what the hub really answers: live answers of every
public route, streamed chunks and error bodies are validated against the document's own schemas."""

from __future__ import annotations

import json

import httpx
import pytest
from jsonschema import Draft202012Validator

from tests.support.live import CHAT, COMPLETION, EMBED

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def check(hub):
    document = httpx.get(f"{hub.url}/openapi.json", timeout=10).json()

    def validate(name: str, instance) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=str)
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)}\n{instance}"

    validate.document = document
    return validate


def _events(response: httpx.Response) -> list:
    lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_live_answers_match_the_documented_schemas(hub, check):
    auth = {"authorization": f"Bearer {hub.everything.secret}"}
    with httpx.Client(base_url=f"{hub.url}/v1", headers=auth, timeout=120) as http:
        check("ModelList", http.get("/models").json())
        check("Model", http.get(f"/models/{CHAT}").json())
        chat = {"model": CHAT, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
        check("ChatCompletion", http.post("/chat/completions", json=chat).json())
        with http.stream(
            "POST", "/chat/completions", json={**chat, "stream": True, "stream_options": {"include_usage": True}}
        ) as response:
            chunks = _events(response)
        assert chunks[-1]["usage"] is not None
        for chunk in chunks:
            check("ChatCompletionChunk", chunk)
        completion = {"model": COMPLETION, "prompt": "Once", "max_tokens": 4}
        check("Completion", http.post("/completions", json=completion).json())
        with http.stream("POST", "/completions", json={**completion, "stream": True}) as response:
            for chunk in _events(response):
                check("Completion", chunk)
        for encoding in ("float", "base64"):
            answer = http.post("/embeddings", json={"model": EMBED, "input": ["a", "b"], "encoding_format": encoding})
            check("EmbeddingList", answer.json())
        check("UsagePage", http.get("/usage", params={"group_by": "model"}).json())
        for response in (
            http.post("/chat/completions", json={**chat, "model": "nope"}),  # 404
            http.post("/chat/completions", json={**chat, "max_tokens": 10**6}),  # 400 context_length_exceeded
            http.get("/usage", params={"group_by": "week"}),  # 400
            http.get("/models", headers={"authorization": "Bearer sk-wrong"}),  # 401
        ):
            assert response.status_code >= 400
            check("Error", response.json())
            documented = check.document["paths"][response.request.url.path.removeprefix("/v1")]
            method = response.request.method.lower()
            assert str(response.status_code) in documented[method]["responses"], response.request.url
