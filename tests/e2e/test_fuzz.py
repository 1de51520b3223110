"""Fuzzing every public route with schemathesis, generated from the live hub's own ``/openapi.json``: valid
bodies (positive) and bodies that break the schema (negative: wrong types, out-of-range numbers, missing
fields), against a live hub in front of the live inference service. Whatever comes in, no answer is a 5xx,
every error is OpenAI's error object, and a stream carries no error event.

The budget is fixed (``EXAMPLES`` per operation and mode, derandomized: the same cases on every run) so CI's time
is known. To keep the CPU's generations short, the fuzz steers some cases to a catalog model of its own,
``fuzz-chat`` (the packaged chat model behind a tiny ``max_output_length``, so the hub refuses big ``max_tokens``
itself), or to the embedding model; the rest keep their random model ids (404s). A body with no ``max_tokens``
gets a small one: without it, a CPU model would generate up to its context length. Steered chat messages without
a content get one (the schema requires only a role, so most valid-by-schema chats would stop at that 400). The
first positive case of each operation is the canonical valid request, and a 200 must be among the answers.
"""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from accounts import services
from accounts.models import ModelKind
from tests.support.live import CHAT, EMBED

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

EXAMPLES = 50  # per operation and generation mode
FUZZ_CHAT = "fuzz-chat"
MAX_OUTPUT = 8  # fuzz-chat's max_output_length: a larger max_tokens is the hub's 400, not a long generation
SMALL_MAX_TOKENS = 4  # given to bodies without one (see above)
OPERATIONS = (
    "GET /models",
    "GET /models/{model_id}",
    "GET /usage",
    "POST /chat/completions",
    "POST /completions",
    "POST /embeddings",
)
# the model a steered case uses, by path: the right kind for the route, and once in four the wrong kind
RIGHT = {"/chat/completions": FUZZ_CHAT, "/completions": FUZZ_CHAT, "/embeddings": EMBED, "/models/{model_id}": CHAT}
WRONG = {"/chat/completions": EMBED, "/completions": EMBED, "/embeddings": FUZZ_CHAT, "/models/{model_id}": "nope"}
_HI = [{"role": "user", "content": "Hi"}]
VALID = {  # one valid request per operation, as the OpenAI SDK sends it
    "GET /models": {},
    "GET /models/{model_id}": {"path_parameters": {"model_id": FUZZ_CHAT}},
    "GET /usage": {"query": {"group_by": "model"}},
    "POST /chat/completions": {"body": {"model": FUZZ_CHAT, "messages": _HI, "max_tokens": 4, "stream": True}},
    "POST /completions": {"body": {"model": FUZZ_CHAT, "prompt": "Once", "max_tokens": 4}},
    "POST /embeddings": {"body": {"model": EMBED, "input": ["a", "b"]}},
}
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture
def fuzz(hub, inference_url):
    """The hub's schema as schemathesis loads it, an HTTP session, a key entitled to every model, the base URL."""
    services.register_model(
        FUZZ_CHAT, ModelKind.CHAT, max_sequence_length=2048, max_output_length=MAX_OUTPUT,
        deployment_url=inference_url, upstream_model=CHAT,
    )  # fmt: skip
    services.grant_models(hub.tenant, [FUZZ_CHAT])
    auth = {"authorization": f"Bearer {hub.everything.secret}"}
    with requests.Session() as session:
        yield schemathesis.openapi.from_url(f"{hub.url}/openapi.json"), session, auth, f"{hub.url}/v1"


def _steer(case: schemathesis.Case, pick: str | None, auth: dict[str, str]) -> None:
    """Point a case at a served model with a valid key (``pick``: "right" or "wrong" kind; None keeps the case as
    generated: a random model id, and in negative mode sometimes no key), and bound its generation."""
    path = case.operation.path
    if pick:  # a header of the case itself: negative mode drops the key from the request otherwise
        case.headers = {**(case.headers or {}), **auth}
    if pick and path == "/models/{model_id}":
        case.path_parameters = {**(case.path_parameters or {}), "model_id": (RIGHT if pick == "right" else WRONG)[path]}
    if not isinstance(case.body, dict) or case.operation.method.upper() != "POST":
        return
    if pick:
        case.body["model"] = (RIGHT if pick == "right" else WRONG)[path]
    if path != "/embeddings" and case.body.get("max_tokens") is None and case.body.get("max_completion_tokens") is None:
        case.body["max_tokens"] = SMALL_MAX_TOKENS
    messages = case.body.get("messages")
    if pick == "right" and isinstance(messages, list):  # the schema requires only a role; the hub a content too
        for message in messages:
            if isinstance(message, dict) and message.get("role") != "assistant" and "content" not in message:
                message["content"] = "Hi"


def _check(case: schemathesis.Case, response: schemathesis.Response) -> None:
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
        assert not any("error" in json.loads(event) for event in events if event != "[DONE]"), f"{where}\n{events}"
        assert response.stream_cut_short or events[-1] == "[DONE]", f"{where}\n{events}"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("label", OPERATIONS)
def test_public_route_under_fuzzing(fuzz, label, mode):
    schema, session, auth, base_url = fuzz
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is missing from /openapi.json"
    picks = st.sampled_from(["right", "wrong", None, "right"])  # Hypothesis draws the first one most
    statuses: list[int] = []

    @settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=False,
        suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), pick=picks)
    def fuzz_one(case: schemathesis.Case, pick: str | None) -> None:
        _steer(case, pick, auth)
        response = case.call(base_url=base_url, session=session, headers=auth, timeout=120)
        statuses.append(response.status_code)
        _check(case, response)

    if mode == GenerationMode.POSITIVE:  # the canonical valid request, first: it must be served
        fuzz_one = example(case=operation.Case(**VALID[label]), pick=None)(fuzz_one)
    fuzz_one()
    assert mode == GenerationMode.NEGATIVE or 200 in statuses, statuses
