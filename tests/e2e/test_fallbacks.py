"""A model's fallbacks through the live hub (``hub/api/fallbacks.py``), with the OpenAI SDK: a model that cannot
answer (no deployment reachable, each busy, the request over its output length or context) passes the request to
its next fallback the key may use, and the answer, its usage row, limits and metrics name the model that answered.
The deployments are the fake of our service (``fake-chat``, ``fake-embed``) and upstreams that refuse on purpose:
the gateway's own behaviour, no model runs."""

from __future__ import annotations

from contextlib import ExitStack

import httpx
import openai
import pytest
from starlette.responses import JSONResponse

from accounts import authcache, services
from accounts.limits import Limits
from accounts.models import Deployment, ModelKind, ServedModel
from hub.api.affinity import prefix_key, rank
from tests.support.live import FAKE_CHAT, FAKE_EMBED, chat_upstream, rows, sample, scrape
from tests.support.processes import free_port

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def hub(fake_hub):
    return fake_hub


def dead() -> str:
    """A deployment nobody listens at."""
    return f"http://127.0.0.1:{free_port()}/v1"


def chat_model(name: str, url: str, fallbacks: list[str], tenant, max_output_length: int = 256, **only) -> None:
    """A chat model served at ``url``, falling back to ``fallbacks`` (and ``context_only`` / ``unavailable_only``
    ones after them), that ``tenant`` may use. Each test names its own models: a hub reads a model's deployments and
    fallbacks at most every 5 s."""
    services.register_model(name, ModelKind.CHAT, max_sequence_length=4096, max_output_length=max_output_length,
                            deployment_url=url)  # fmt: skip
    services.grant_models(tenant, [name])
    services.set_fallbacks(name, fallbacks, **only)


def preferring(model: str, url: str) -> list[dict]:
    """Messages whose prompt ranks ``model``'s deployment at ``url`` first (``affinity.rank``, as the hub orders the
    healthy deployments): which one a prompt prefers hangs on the deployments' ids, which depend on what ran before
    (a fixed prompt went to the answering deployment first in one CI run and never to the stopping one)."""
    ids = dict(Deployment.objects.filter(model_id=model).values_list("base_url", "id"))
    for i in range(1000):
        messages = [{"role": "user", "content": f"Hello {i}"}]
        if rank(prefix_key("chat/completions", {"messages": messages}), list(ids.values()), {})[0] == ids[url]:
            return messages
    raise AssertionError(f"no prompt prefers {url} of {ids}")


@pytest.fixture
def refusing():
    """Deployments that answer as an upstream that cannot take a request: ``refusing(status, code)`` is the base URL
    of one answering ``status`` with OpenAI's error object; ``calls[url]`` counts the requests each got."""
    calls: dict[str, int] = {}

    def start(status: int, code: str) -> str:
        url = None

        async def chat(request):
            await request.body()
            calls[url] += 1
            error = {"message": f"refused with {code}", "type": "invalid_request_error", "param": None, "code": code}
            return JSONResponse({"error": error}, status_code=status)

        url = servers.enter_context(chat_upstream(chat))
        calls[url] = 0
        return url

    start.calls = calls
    with ExitStack() as servers:
        yield start


def fallbacks_counted(hub, model: str, fallback: str, reason: str) -> float:
    return sample(scrape(hub.url), "hub_model_fallbacks_total", model=model, fallback=fallback, reason=reason)


def test_a_model_with_no_deployment_reachable_is_answered_by_its_fallback(hub, fake):
    chat_model("primary", dead(), [FAKE_CHAT], hub.tenant)
    before = fallbacks_counted(hub, "primary", FAKE_CHAT, "unavailable")
    response = hub().chat.completions.with_raw_response.create(model="primary", messages=HELLO, max_tokens=7)
    completion = response.parse()
    # the answer names the model that answered, the header the one asked for
    assert completion.model == FAKE_CHAT and response.headers["x-hub-fallback-from"] == "primary"
    assert completion.choices[0].message.content == "".join(f"w{i} " for i in range(7))
    [sent] = fake.requests
    assert sent["messages"] == HELLO and sent["max_tokens"] == 7
    [row] = rows(request_id=response.headers["x-request-id"])  # one row: the model that answered, its tokens
    assert (row.model, row.status_code, row.completion_tokens) == (FAKE_CHAT, 200, 7)
    assert (row.prompt_tokens, row.total_tokens) == (completion.usage.prompt_tokens, completion.usage.total_tokens)
    # streamed: every chunk from the fallback, under its name
    with hub().chat.completions.with_streaming_response.create(
        model="primary", messages=HELLO, max_tokens=5, stream=True, stream_options={"include_usage": True}
    ) as streamed:
        assert streamed.headers["x-hub-fallback-from"] == "primary"
        chunks = list(streamed.parse())
    assert {c.model for c in chunks} == {FAKE_CHAT}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "w0 w1 w2 w3 w4 "
    [row] = rows(request_id=streamed.headers["x-request-id"])
    assert (row.model, row.streamed, row.completion_tokens) == (FAKE_CHAT, True, chunks[-1].usage.completion_tokens)
    assert fallbacks_counted(hub, "primary", FAKE_CHAT, "unavailable") == before + 2
    # a model answering itself says nothing of fallbacks
    own = hub().chat.completions.with_raw_response.create(model=FAKE_CHAT, messages=HELLO, max_tokens=3)
    assert "x-hub-fallback-from" not in own.headers and own.parse().model == FAKE_CHAT


def test_a_busy_deployment_passes_the_request_on_and_a_busy_model_to_its_fallback(hub, fake, refusing):
    stopping, limited = refusing(503, "engine_stopped"), refusing(429, "rate_limit_exceeded")
    # one model: a stopping deployment, then one that answers; the stopping one is benched for the next requests
    chat_model("half-busy", stopping, [], hub.tenant)
    services.register_model("half-busy", ModelKind.CHAT, max_sequence_length=4096, max_output_length=256,
                            deployment_url=fake.url)  # fmt: skip
    hello = preferring("half-busy", stopping)  # tried first, then benched: the second goes to fake at once
    for _ in range(2):
        assert hub().chat.completions.create(model="half-busy", messages=hello, max_tokens=3).model == "half-busy"
    assert refusing.calls[stopping] == 1 and len(fake.requests) == 2
    # every deployment busy: the next model; nothing was metered for the busy one
    chat_model("busy", limited, [FAKE_CHAT], hub.tenant)
    response = hub().chat.completions.with_raw_response.create(model="busy", messages=HELLO, max_tokens=4)
    assert response.parse().model == FAKE_CHAT and response.headers["x-hub-fallback-from"] == "busy"
    assert refusing.calls[limited] == 1
    [row] = rows(request_id=response.headers["x-request-id"])
    assert row.model == FAKE_CHAT
    assert fallbacks_counted(hub, "busy", FAKE_CHAT, "busy") >= 1
    # a model whose every deployment failed a moment ago (benched: refused, broke, 503) is passed over at once
    chat_model("stopping-primary", stopping, [FAKE_CHAT], hub.tenant)
    stopped = refusing.calls[stopping]
    for _ in range(3):
        assert hub().chat.completions.create(model="stopping-primary", messages=HELLO, max_tokens=2).model == FAKE_CHAT
    assert refusing.calls[stopping] == stopped + 1
    # the last model tried answers as it would without fallbacks: the upstream's 429, its message
    chat_model("busy-alone", limited, [], hub.tenant)
    answer = httpx.post(f"{hub.url}/v1/chat/completions", headers={"authorization": f"Bearer {hub.everything.secret}"},
                        json={"model": "busy-alone", "messages": HELLO}, timeout=30)  # fmt: skip
    assert answer.status_code == 429 and answer.json()["error"]["message"] == "refused with rate_limit_exceeded"
    assert refusing.calls[limited] == 2


def test_a_fallback_the_key_may_not_use_or_of_another_kind_is_never_tried(hub, fake):
    services.register_model("premium", ModelKind.CHAT, max_sequence_length=4096, max_output_length=256,
                            deployment_url=fake.url)  # fmt: skip
    chat_model("turned", fake.url, [], hub.tenant)
    chat_model("guarded", dead(), ["premium", "turned"], hub.tenant)  # premium: not granted to the tenant
    services.register_model("turned", ModelKind.COMPLETION, max_sequence_length=4096, max_output_length=256)
    with pytest.raises(openai.InternalServerError) as refused:
        hub().chat.completions.create(model="guarded", messages=HELLO, max_tokens=3)
    assert refused.value.status_code == 503 and refused.value.body["code"] == "service_unavailable"
    assert "'guarded'" in refused.value.body["message"] and fake.requests == []
    # a key limited to the model asked for reaches none of its fallbacks either
    services.grant_models(hub.tenant, ["premium"])
    narrow = services.issue_key(hub.tenant, model_ids=["guarded"])
    with pytest.raises(openai.InternalServerError):
        hub(narrow).chat.completions.create(model="guarded", messages=HELLO, max_tokens=3)
    assert fake.requests == []


def test_a_request_over_a_models_output_length_or_context_goes_to_its_fallback(hub, fake, refusing):
    # max_tokens over the model's own output length (16): refused by the hub without a fallback, answered with one
    chat_model("short-alone", fake.url, [], hub.tenant, max_output_length=16)
    with pytest.raises(openai.BadRequestError) as refused:
        hub().chat.completions.create(model="short-alone", messages=HELLO, max_tokens=32)
    assert refused.value.body["code"] == "context_length_exceeded"
    chat_model("short", fake.url, [FAKE_CHAT], hub.tenant, max_output_length=16)
    response = hub().chat.completions.with_raw_response.create(model="short", messages=HELLO, max_tokens=32)
    assert response.parse().model == FAKE_CHAT and response.parse().usage.completion_tokens == 32
    assert fake.requests[-1]["max_tokens"] == 32
    # the deployment's own 400 context_length_exceeded (a prompt over its context): the next model takes it
    narrow = refusing(400, "context_length_exceeded")
    chat_model("narrow", narrow, [FAKE_CHAT], hub.tenant)
    response = hub().chat.completions.with_raw_response.create(model="narrow", messages=HELLO, max_tokens=3)
    assert response.parse().model == FAKE_CHAT and refusing.calls[narrow] == 1
    assert fallbacks_counted(hub, "narrow", FAKE_CHAT, "context") >= 1
    [row] = rows(request_id=response.headers["x-request-id"])
    assert row.model == FAKE_CHAT
    # any other 400 is the client's error, whatever the model: relayed, no fallback tried
    picky = refusing(400, "invalid_value")
    chat_model("picky", picky, [FAKE_CHAT], hub.tenant)
    sent = len(fake.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        hub().chat.completions.create(model="picky", messages=HELLO, max_tokens=3)
    assert refused.value.body["code"] == "invalid_value" and len(fake.requests) == sent


def test_a_fallback_only_for_context_or_only_for_availability_takes_only_those(hub, fake, refusing):
    """LiteLLM's ``context_window_fallbacks`` beside its ``fallbacks``: each link says when it takes the request, and
    a model passes a request on only to a later one that takes it for that reason."""
    for name in ("wide", "spare"):  # two more names for the fake's one deployment
        services.register_model(name, ModelKind.CHAT, max_sequence_length=4096, max_output_length=256,
                                deployment_url=fake.url)  # fmt: skip
        services.grant_models(hub.tenant, [name])
    # unreachable: past the context-only fallback to the one for availability
    chat_model("down", dead(), [], hub.tenant, context_only=["wide"], unavailable_only=["spare"])
    answer = hub().chat.completions.with_raw_response.create(model="down", messages=HELLO, max_tokens=3)
    assert answer.parse().model == "spare" and answer.headers["x-hub-fallback-from"] == "down"
    assert fallbacks_counted(hub, "down", "spare", "unavailable") == 1 and len(fake.requests) == 1
    # over its context (the deployment's 400): past the availability-only fallback to the context one
    narrow = refusing(400, "context_length_exceeded")
    chat_model("narrow-only", narrow, [], hub.tenant, context_only=["wide"], unavailable_only=["spare"])
    chat_model("narrow-mixed", narrow, [], hub.tenant, unavailable_only=["spare"], context_only=["wide"])
    for name in ("narrow-only", "narrow-mixed"):
        assert hub().chat.completions.create(model=name, messages=HELLO, max_tokens=3).model == "wide"
        assert fallbacks_counted(hub, name, "wide", "context") == 1
    # over its output length (the hub's own check): to the context fallback; with none, refused as without any
    chat_model("short-spare", fake.url, [], hub.tenant, max_output_length=16, unavailable_only=["spare"])
    with pytest.raises(openai.BadRequestError) as refused:
        hub().chat.completions.create(model="short-spare", messages=HELLO, max_tokens=32)
    assert refused.value.body["code"] == "context_length_exceeded"
    chat_model("short-wide", fake.url, [], hub.tenant, max_output_length=16, unavailable_only=["spare"],
               context_only=["wide"])  # fmt: skip
    assert hub().chat.completions.create(model="short-wide", messages=HELLO, max_tokens=32).model == "wide"
    # busy, with only a fallback for context: the upstream's 429 is the answer, as without fallbacks
    limited = refusing(429, "rate_limit_exceeded")
    chat_model("busy-context", limited, [], hub.tenant, context_only=["wide"])
    with pytest.raises(openai.RateLimitError) as busy:
        hub().chat.completions.create(model="busy-context", messages=HELLO, max_tokens=3)
    assert busy.value.body["message"] == "refused with rate_limit_exceeded"
    # over its context, with only a fallback for availability: the deployment's 400, as without fallbacks
    chat_model("narrow-spare", narrow, [], hub.tenant, unavailable_only=["spare"])
    with pytest.raises(openai.BadRequestError) as refused:
        hub().chat.completions.create(model="narrow-spare", messages=HELLO, max_tokens=3)
    assert refused.value.body["code"] == "context_length_exceeded"


def test_a_disabled_model_is_answered_by_its_fallback_or_not_found(hub, fake):
    """A model the operator disabled, or that no service serves any more, is unavailable: a fallback that takes
    ``unavailable`` (or any) answers, as for a model whose deployments are down; without one it is a 404 as before."""
    services.register_model("retired-spare", ModelKind.CHAT, max_sequence_length=4096, max_output_length=256,
                            deployment_url=fake.url)  # fmt: skip
    services.grant_models(hub.tenant, ["retired-spare"])
    chat_model("retired", fake.url, [], hub.tenant, unavailable_only=["retired-spare"])
    chat_model("retired-alone", fake.url, [], hub.tenant, context_only=["retired-spare"])
    narrow = services.issue_key(hub.tenant, model_ids=["retired"])  # a key that may not use the fallback
    ServedModel.objects.filter(pk__in=["retired", "retired-alone"]).update(enabled=False)
    authcache.bump_generation()  # as the admin's and the catalog sync's changes do
    answer = hub().chat.completions.with_raw_response.create(model="retired", messages=HELLO, max_tokens=3)
    assert answer.parse().model == "retired-spare" and answer.headers["x-hub-fallback-from"] == "retired"
    assert fallbacks_counted(hub, "retired", "retired-spare", "unavailable") == 1
    [row] = rows(request_id=answer.headers["x-request-id"])
    assert row.model == "retired-spare"
    with pytest.raises(openai.NotFoundError) as missing:  # its only fallback takes requests over its context only
        hub().chat.completions.create(model="retired-alone", messages=HELLO, max_tokens=3)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        hub(narrow).chat.completions.create(model="retired", messages=HELLO, max_tokens=3)
    assert len(fake.requests) == 1  # neither disabled model ran
    assert "retired" not in {m.id for m in hub().models.list()}  # nor is listed
    counted = httpx.post(f"{hub.url}/v1/responses/input_tokens", json={"model": "retired", "input": "Hi"},
                         headers={"authorization": f"Bearer {hub.everything.secret}"}, timeout=30)  # fmt: skip
    assert counted.status_code == 404  # a count is the model's own: no fallback counts for it


def test_an_embedding_model_falls_back_to_one_of_its_dimensions(hub, fake):
    services.register_model("embed-primary", ModelKind.EMBEDDING, max_sequence_length=512, hidden_size=8,
                            deployment_url=dead())  # fmt: skip
    services.grant_models(hub.tenant, ["embed-primary"])
    services.set_fallbacks("embed-primary", [FAKE_EMBED])
    response = hub().embeddings.with_raw_response.create(model="embed-primary", input=["one", "two three"])
    answer = response.parse()
    assert answer.model == FAKE_EMBED and [len(d.embedding) for d in answer.data] == [8, 8]
    [row] = rows(request_id=response.headers["x-request-id"])
    assert (row.model, row.route, row.prompt_tokens) == (FAKE_EMBED, "embeddings", 3)


def test_a_fallback_counts_one_request_against_the_limits_and_one_reservation(hub, fake):
    """The model that could not answer settles its reservation to nothing: a key's requests per minute count the
    client's request once, and its tokens per minute hold one reservation, as for the fallback asked directly."""

    def limited_key():
        issued = services.issue_key(hub.tenant)
        services.set_limits(issued.key, Limits(rpm=10, tpm=600))
        return issued

    chat_model("limited-primary", dead(), [FAKE_CHAT], hub.tenant)
    direct = hub(limited_key()).chat.completions.with_raw_response.create(model=FAKE_CHAT, messages=HELLO,
                                                                          max_tokens=5)  # fmt: skip
    moved = hub(limited_key()).chat.completions.with_raw_response.create(model="limited-primary", messages=HELLO,
                                                                         max_tokens=5)  # fmt: skip
    assert moved.parse().model == FAKE_CHAT and moved.headers["x-hub-fallback-from"] == "limited-primary"
    for name in ("x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"):
        assert moved.headers[name] == direct.headers[name], name
    assert direct.headers["x-ratelimit-remaining-requests"] == "9"
    assert int(direct.headers["x-ratelimit-remaining-tokens"]) < 600 - 5


def test_a_response_falls_back_and_is_stored_under_the_model_that_answered(hub, fake):
    chat_model("responses-primary", dead(), [FAKE_CHAT], hub.tenant)
    raw = hub().responses.with_raw_response.create(model="responses-primary", input="Say hello.", max_output_tokens=6)
    response = raw.parse()
    assert raw.headers["x-hub-fallback-from"] == "responses-primary"
    assert response.model == FAKE_CHAT and response.output_text == "".join(f"w{i} " for i in range(6))
    assert hub().responses.retrieve(response.id).model == FAKE_CHAT
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (row.model, row.route, row.completion_tokens) == (FAKE_CHAT, "responses", 6)
