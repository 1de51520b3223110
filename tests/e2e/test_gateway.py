"""Generation through the hub: a live hub in front of a live inference service (the three packaged
models and two tiny LLaVAs), the OpenAI SDK as the client, and the usage rows the hub wrote checked against
what the client received: answers of real models, aborts that stop a real generation, entitlements and the
deployment's own checks, tool calls and vision. The gateway's behaviour that needs no model is test_relay.py's."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import openai
import pytest

from accounts import services
from accounts.models import ModelKind, UsageRecord
from tests.support.images import data_url
from tests.support.live import CHAT, COMPLETION, EMBED, VISION_15, VISION_NEXT, barrier, read_then_hang_up, rows
from tests.support.processes import free_port
from tests.support.samples import WEATHER

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def test_an_aborted_stream_is_metered_with_the_tokens_it_produced(hub):
    """The client reads a few chunks of a real model's stream and hangs up: the hub aborts upstream and meters
    what was generated up to the last chunk it relayed: the prompt exactly, and at least the tokens the client
    read (chunks relayed after its last read, in flight or unread in its socket when it closed, count too; the
    exact equality is checked against an upstream that stops where the client does, below)."""
    body = {"prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "logit_bias": {"1": -100}}
    request_id, seen = read_then_hang_up(hub, COMPLETION, "completions", body, chunks=5)
    [row] = rows(request_id=request_id)
    assert row.aborted and row.streamed and row.status_code == 499
    assert row.prompt_tokens == seen["prompt_tokens"] and 5 <= seen["completion_tokens"] <= row.completion_tokens
    assert row.completion_tokens < 400  # stopped: the service aborted the generation
    assert _running_settles_to_zero(hub, COMPLETION)  # the service freed the sequence


def test_a_client_leaving_a_whole_answer_is_metered_with_what_ran(hub):
    """A client that stops waiting for a non-streamed answer (its timeout) while the model generates: the hub
    stops the request and meters it (499, aborted) with what our service counted for it until then: the whole
    prompt, the tokens generated so far."""
    ask = dict(model=CHAT, messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=400,
               extra_body={"ignore_eos": True})  # fmt: skip
    prompt = hub().chat.completions.create(**{**ask, "max_tokens": 1}).usage.prompt_tokens
    request_id = f"req_leaves_{secrets.token_hex(6)}"
    with pytest.raises(openai.APITimeoutError):
        hub().with_options(timeout=2.0).chat.completions.create(**ask, extra_headers={"x-request-id": request_id})
    [row] = rows(request_id=request_id)
    assert (row.status_code, row.aborted, row.streamed, row.prompt_tokens) == (499, True, False, prompt)
    assert row.completion_tokens < 400  # stopped: the service aborted the generation
    assert _running_settles_to_zero(hub, CHAT)


def _running_settles_to_zero(hub, model: str) -> bool:
    """Whether the service's health shows nothing of ``model`` running within 10 s (an aborted request freed)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(hub.inference_health(), timeout=5).json()["models"][model]["running"] == 0:
            return True
        time.sleep(0.1)
    return False


def test_completions_and_embeddings_through_every_base_url(hub):
    for base in ("v1", "v2"):
        completion = hub(base=base).completions.create(model=COMPLETION, prompt="The capital of France is",
                                                       max_tokens=5, temperature=0)  # fmt: skip
        assert completion.model == COMPLETION and completion.usage.completion_tokens == 5
        embedding = hub(base=base).embeddings.create(model=EMBED, input=["hello", "world"])  # base64 by default
        assert len(embedding.data) == 2 and len(embedding.data[0].embedding) == 384
        assert embedding.usage.prompt_tokens > 0
    floats = hub().embeddings.create(model=EMBED, input="hello", encoding_format="float")
    assert abs(sum(x * x for x in floats.data[0].embedding) - 1) < 1e-4
    # token ids ([CLS] hello world [SEP] in MiniLM's vocabulary), alone or as a batch, and the model's own dimensions
    text = hub().embeddings.create(model=EMBED, input="hello world", encoding_format="float", dimensions=384)
    ids = hub().embeddings.create(model=EMBED, input=[101, 7592, 2088, 102], encoding_format="float")
    batch = hub().embeddings.create(model=EMBED, input=[[101, 7592, 2088, 102], [101, 2088, 102]])
    assert max(abs(a - b) for a, b in zip(text.data[0].embedding, ids.data[0].embedding, strict=True)) < 1e-5
    assert len(batch.data) == 2 and (ids.usage.prompt_tokens, batch.usage.prompt_tokens) == (4, 7)
    metered = rows(6, model=EMBED)
    assert len(metered) == 6 and all(r.route == "embeddings" and r.completion_tokens == 0 for r in metered)
    assert [r.prompt_tokens for r in metered[-2:]] == [4, 7]


def test_best_of_through_the_hub_is_metered_with_every_candidate(hub):
    """The hub reserves for every candidate (not only the ``n`` returned) and meters what the service counted."""
    completion = hub().completions.create(model=COMPLETION, prompt="The capital of France is", max_tokens=6, n=2,
                                          best_of=3, seed=5, extra_body={"ignore_eos": True})  # fmt: skip
    assert len(completion.choices) == 2 and completion.usage.completion_tokens == 3 * 6
    [row] = rows(1, model=COMPLETION)
    assert (row.prompt_tokens, row.completion_tokens) == (completion.usage.prompt_tokens, 18)
    with pytest.raises(openai.BadRequestError) as refused:
        hub().completions.create(model=COMPLETION, prompt="x", max_tokens=2, best_of=3, stream=True)
    assert refused.value.body["param"] == "best_of"


def test_entitlements_limits_and_kinds(hub):
    embed_only = hub(hub.embed_only)
    with pytest.raises(openai.NotFoundError) as exc:
        embed_only.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # /vision serves vision models only
        hub(base="vision").chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as exc:
        hub().chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=10**6)
    assert exc.value.body["code"] == "context_length_exceeded" and "1000000" in exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:  # prompt + max_tokens: checked by the deployment
        hub().completions.create(model=COMPLETION, prompt="word " * 40000, max_tokens=10)
    assert exc.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as exc:
        hub().embeddings.create(model=EMBED, input="hi", dimensions=64)
    assert exc.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError):
        hub().embeddings.create(model=CHAT, input="hi")
    barrier(hub)
    assert not UsageRecord.objects.exclude(request_id__startswith="req_barrier_").exists()  # nothing reached a model


def test_a_provider_unreachable_falls_back_to_our_model_with_the_request_unchanged(hub):
    """An operator's external model (OpenAI's name, its provider unreachable here) falls back to the packaged chat
    model (``set_fallbacks``): the stream is the packaged model's own greedy answer to the same request, named and
    metered as the packaged model's."""
    services.register_model("gpt-4o-mini", ModelKind.CHAT, max_sequence_length=128000, max_output_length=16384,
                            deployment_url=f"http://127.0.0.1:{free_port()}/v1", upstream_api_key="sk-provider",
                            external=True)  # fmt: skip
    services.grant_models(hub.tenant, ["gpt-4o-mini"])
    services.set_fallbacks("gpt-4o-mini", [CHAT])
    ask = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8, "temperature": 0}
    direct = hub().chat.completions.create(model=CHAT, **ask).choices[0].message.content
    with hub().chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True}, **ask
    ) as response:
        assert response.headers["x-hub-fallback-from"] == "gpt-4o-mini"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == direct
    assert {c.model for c in chunks} == {CHAT}
    [row] = rows(request_id=response.headers["x-request-id"])
    assert (row.model, row.status_code, row.completion_tokens) == (CHAT, 200, chunks[-1].usage.completion_tokens)


def test_tool_calls_and_structured_outputs_pass_through_unchanged_and_are_metered(hub, inference_url):
    """The hub relays tools, tool_choice and response_format as they are: its answers equal the service's own,
    streamed tool calls assemble to them, and every request is metered."""
    kwargs = dict(
        model=CHAT, messages=[{"role": "user", "content": "Weather in Hamburg?"}], tools=[WEATHER],
        tool_choice="required", max_tokens=80, temperature=0.7, seed=9,
    )  # fmt: skip
    through_hub = hub().chat.completions.create(**kwargs)
    direct = openai.OpenAI(base_url=inference_url, api_key="x", max_retries=0).chat.completions.create(**kwargs)
    [mine], [theirs] = through_hub.choices, direct.choices
    assert mine.finish_reason == theirs.finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in mine.message.tool_calls] == [
        (c.function.name, c.function.arguments) for c in theirs.message.tool_calls
    ]
    assert json.loads(mine.message.tool_calls[0].function.arguments)["format"] in ("celsius", "fahrenheit")

    with hub().chat.completions.stream(**kwargs) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert [(c.function.name, c.function.arguments) for c in final.choices[0].message.tool_calls] == [
        (c.function.name, c.function.arguments) for c in mine.message.tool_calls
    ]
    assert final.choices[0].finish_reason == "tool_calls"

    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    answer = hub().chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Name a city."}], max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert answer.choices[0].finish_reason == "stop" and "city" in json.loads(answer.choices[0].message.content)

    with pytest.raises(openai.BadRequestError) as raised:
        hub().chat.completions.create(model=CHAT, messages=kwargs["messages"], tools=[], max_tokens=5)
    assert raised.value.body["param"] == "tools"

    # each row found by its request's id: rows are written as answers end, in an order nothing promises
    metered = {r.request_id: r for r in rows(3, tenant_id=hub.tenant.id, model=CHAT)}
    assert len(metered) == 3 and all(r.status_code == 200 and r.completion_tokens > 0 for r in metered.values())
    assert metered[through_hub._request_id].completion_tokens == through_hub.usage.completion_tokens
    assert not metered[through_hub._request_id].streamed and not metered[answer._request_id].streamed
    assert sum(r.streamed for r in metered.values()) == 1


def test_deprecated_functions_are_answered_as_functions(hub, inference_url):
    """OpenAI's legacy ``functions`` / ``function_call``, as older clients send them: the hub asks the model with
    tools (one call at most) and answers as OpenAI did, ``message.function_call`` and ``finish_reason:
    function_call``, streamed as ``delta.function_call``; a ``function`` message answers the call. Each answer is
    the one the same request in tools gets from the service; stored as the client read it; metered."""
    question = [{"role": "user", "content": "Weather in Hamburg?"}]
    legacy = dict(model=CHAT, functions=[WEATHER["function"]], max_tokens=80, temperature=0)
    today = dict(model=CHAT, tools=[WEATHER], parallel_tool_calls=False, max_tokens=80, temperature=0)
    direct = openai.OpenAI(base_url=inference_url, api_key="x", max_retries=0).chat.completions

    answer = hub().chat.completions.create(messages=question, function_call={"name": WEATHER["function"]["name"]},
                                           store=True, **legacy)  # fmt: skip
    expected = direct.create(messages=question, tool_choice={"type": "function", "function": WEATHER["function"]},
                             **today).choices[0]  # fmt: skip
    [choice] = answer.choices
    call = choice.message.function_call
    assert (choice.finish_reason, choice.message.tool_calls) == ("function_call", None)
    assert (call.name, call.arguments) == (expected.message.tool_calls[0].function.name,
                                           expected.message.tool_calls[0].function.arguments)  # fmt: skip
    assert json.loads(call.arguments)["format"] in ("celsius", "fahrenheit")
    stored = hub().chat.completions.retrieve(answer.id).choices[0].message.function_call
    assert (stored.name, stored.arguments) == (call.name, call.arguments)

    chunks = list(hub().chat.completions.create(messages=question, function_call={"name": call.name}, stream=True,
                                                **legacy))  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert all(d.tool_calls is None for d in deltas)
    names = [d.function_call.name for d in deltas if d.function_call and d.function_call.name]
    arguments = "".join(d.function_call.arguments for d in deltas if d.function_call)
    assert (names, arguments) == ([call.name], call.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "function_call"

    # the result given back as a function message: the answer the service gives the same turn as a tool message
    result = "22 degrees celsius and sunny"
    function = {"name": call.name, "arguments": call.arguments}
    turn = [{"role": "assistant", "content": None, "function_call": function},
            {"role": "function", "name": call.name, "content": result}]  # fmt: skip
    then = hub().chat.completions.create(messages=question + turn, **legacy).choices[0]
    tool_call = {"id": "c1", "type": "function", "function": function}
    as_tools = [{"role": "assistant", "content": None, "tool_calls": [tool_call]},
                {"role": "tool", "tool_call_id": "c1", "content": result}]  # fmt: skip
    expected = direct.create(messages=question + as_tools, **today).choices[0]
    assert then.message.content == expected.message.content
    assert then.finish_reason == {"tool_calls": "function_call"}.get(expected.finish_reason, expected.finish_reason)

    with pytest.raises(openai.BadRequestError) as raised:  # named as sent, not as the tools it became
        hub().chat.completions.create(messages=question, functions=[{"name": "f", "parameters": "x"}], max_tokens=5,
                                      model=CHAT)  # fmt: skip
    assert raised.value.body["param"] == "functions[0].parameters"
    metered = rows(3, tenant_id=hub.tenant.id, model=CHAT)  # the refusal reached no model
    assert len(metered) == 3 and all(r.status_code == 200 and r.completion_tokens > 0 for r in metered)


def test_a_prefilled_answer_is_continued(hub, inference_url):
    """vLLM's ``continue_final_message``: the final (assistant) message is left open and the model continues it;
    the answer equals the service's completion of the prompt transformers renders for it (its own
    ``continue_final_message``). Asking for a new turn as well is the client's 400."""
    from transformers import AutoTokenizer

    from tests.support.models import model_dir

    messages = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "My favourite is"}]
    extra = {"continue_final_message": True}
    answer = hub().chat.completions.create(model=CHAT, messages=messages, max_tokens=12, temperature=0,
                                           extra_body=extra)  # fmt: skip
    hf = AutoTokenizer.from_pretrained(model_dir("smollm2"))
    ids = hf.apply_chat_template(messages, continue_final_message=True, return_dict=True)["input_ids"]
    direct = openai.OpenAI(base_url=inference_url, api_key="x", max_retries=0)
    expected = direct.completions.create(model=CHAT, prompt=ids, max_tokens=12, temperature=0).choices[0].text
    assert answer.choices[0].message.content == expected and expected.strip()
    assert answer.usage.prompt_tokens == len(ids)
    with pytest.raises(openai.BadRequestError) as raised:
        hub().chat.completions.create(model=CHAT, messages=messages, max_tokens=4,
                                      extra_body={**extra, "add_generation_prompt": True})  # fmt: skip
    assert raised.value.body["param"] == "continue_final_message"


def test_vllms_token_controls_pass_through_and_the_prompt_read_is_metered(hub):
    """vLLM's ``truncate_prompt_tokens`` (a prompt past the context answered from its last tokens, metered as
    those), ``bad_words``, ``allowed_token_ids``, ``return_token_ids``, ``prompt_logprobs`` and beam search reach the
    service and come back, metered as the service counted; a bad value is the hub's 400, not metered."""
    long_chat = [{"role": "user", "content": "word " * 9000 + "What is the capital of France?"}]
    cut = hub().chat.completions.create(model=CHAT, messages=long_chat, max_tokens=8, temperature=0,
                                        extra_body={"truncate_prompt_tokens": 40, "bad_words": ["Paris"]})  # fmt: skip
    assert cut.usage.prompt_tokens == 40 and "Paris" not in cut.choices[0].message.content
    only = hub().completions.create(model=COMPLETION, prompt="The sea is", max_tokens=4, logprobs=0,
                                    extra_body={"allowed_token_ids": [600, 700], "return_token_ids": True,
                                                "prompt_logprobs": 1})  # fmt: skip
    choice = only.choices[0]
    assert len(choice.logprobs.tokens) == 4 and set(choice.token_ids) <= {600, 700}
    assert len(choice.prompt_logprobs) == len(choice.prompt_token_ids) == only.usage.prompt_tokens
    beams = hub().completions.create(model=COMPLETION, prompt="Red, yellow", max_tokens=3, n=2,
                                     extra_body={"use_beam_search": True})  # fmt: skip
    assert len({c.text for c in beams.choices}) == 2
    [chat_row, completion_row, beam_row] = rows(3)
    assert (chat_row.model, chat_row.prompt_tokens) == (CHAT, 40)
    assert chat_row.completion_tokens == cut.usage.completion_tokens
    assert (completion_row.model, completion_row.completion_tokens) == (COMPLETION, 4)
    assert (beam_row.prompt_tokens, beam_row.completion_tokens) == (beams.usage.prompt_tokens, 6)
    with pytest.raises(openai.BadRequestError) as refused:
        hub().chat.completions.create(model=CHAT, messages=long_chat, extra_body={"truncate_prompt_tokens": 0})
    assert refused.value.body["param"] == "truncate_prompt_tokens"
    assert UsageRecord.objects.count() == 3


def _look(url: str, text: str = "What's in this image?") -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}
    ]


def test_vision_models_under_vision_are_served_and_metered(hub, images):
    vision = hub(base="vision")
    assert sorted(m.id for m in vision.models.list().data) == sorted([VISION_NEXT, VISION_15])
    response = vision.chat.completions.with_raw_response.create(
        model=VISION_NEXT, messages=_look(f"{images.url}/photo.jpg"), max_tokens=6, temperature=0.01
    )
    completion = response.parse()
    [row] = rows(request_id=response.headers["x-request-id"])
    # the image's 70 tokens are in the prompt count the hub meters
    assert completion.usage.prompt_tokens > 70 and row.prompt_tokens == completion.usage.prompt_tokens
    assert (row.model, row.status_code, row.completion_tokens) == (VISION_NEXT, 200, completion.usage.completion_tokens)
    # a random-weight model samples its end token now and then: ignore_eos, so that it always writes 5 tokens
    stream = vision.chat.completions.create(
        model=VISION_15, messages=_look(data_url()), max_tokens=5, stream=True, extra_body={"ignore_eos": True}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [row] = rows(model=VISION_15)
    assert row.streamed and row.prompt_tokens > 16 and row.completion_tokens == 5


def test_images_refused_through_the_hub_are_400s_and_not_metered(hub):
    with pytest.raises(openai.BadRequestError) as exc:
        hub().chat.completions.create(model=CHAT, messages=_look(data_url()), max_tokens=5)
    assert "does not accept images" in exc.value.body["message"] and "vision model" in exc.value.body["message"]
    with pytest.raises(openai.BadRequestError) as exc:
        hub(base="vision").chat.completions.create(model=VISION_NEXT, messages=_look("http://10.0.0.1/x.jpg"))
    assert exc.value.body["param"] == "messages[0].content[1].image_url"
    assert "private address" in exc.value.body["message"]
    barrier(hub)
    assert not UsageRecord.objects.exclude(request_id__startswith="req_barrier_").exists()  # refused before a model


def test_tenants_share_no_cached_prompt_and_a_clients_salt_splits_its_own(hub):
    """Each tenant its own prompt cache on our deployments (hub/api/prompt_cache.py), as OpenAI's are per
    organization: a prompt acme sent is cached for acme's next request, not for globex's first one, which caches it
    for globex's next; vLLM's cache_salt sent by a client splits its tenant's cache further."""
    globex = services.create_tenant("globex", "Globex")
    services.grant_models(globex, [CHAT])
    other = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=services.issue_key(globex, name="k").secret, max_retries=0)
    system = f"You are concierge {secrets.token_hex(6)} of a hotel; answer in one short sentence. " * 8
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Is breakfast included?"}]

    def cached(client: openai.OpenAI, **extra) -> int:
        answer = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=1, extra_body=extra)
        return answer.usage.prompt_tokens_details.cached_tokens

    counts = [cached(hub()), cached(hub()), cached(other), cached(other)]
    hit = counts[1]
    assert hit > 100 and counts == [0, hit, 0, hit]
    assert [cached(hub(), cache_salt="user-1"), cached(hub(), cache_salt="user-1"), cached(hub())] == [0, hit, hit]
    with pytest.raises(openai.BadRequestError) as refused:
        hub().chat.completions.create(model=CHAT, messages=messages, extra_body={"cache_salt": ""})
    assert refused.value.body["param"] == "cache_salt"


def test_cached_tokens_reach_the_client_and_the_usage_row_with_its_cost(hub):
    """A long system prompt sent twice through the hub with the OpenAI SDK: the second answer reports the cached
    prefix in usage.prompt_tokens_details, streamed and not, and each usage row holds the tokens the client saw
    and the cost the price table gives (cached tokens at their own price)."""
    from decimal import Decimal

    from accounts import pricing

    pricing.set_price(CHAT, input_per_million=Decimal("0.2"), cached_input_per_million=Decimal("0.05"),
                      output_per_million=Decimal("0.8"))  # fmt: skip
    system = "You are the concierge of a hotel in Lisbon; answer in one short sentence. " * 10
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Is breakfast included?"}]
    client = hub()
    first = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=3, temperature=0)
    second = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=3, temperature=0)
    stream = list(client.chat.completions.create(model=CHAT, messages=messages, max_tokens=3, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))  # fmt: skip
    prompt = second.usage.prompt_tokens
    cached = (prompt - 1) // 16 * 16  # whole blocks of 16, the last token always computed
    assert cached > 100 and second.usage.prompt_tokens_details.cached_tokens == cached
    assert stream[-1].usage.prompt_tokens_details.cached_tokens == cached
    metered = {r.request_id: r for r in rows(3, model=CHAT)}  # this test's three requests
    assert len(metered) == 3
    streamed = next(r for r in metered.values() if r.streamed)
    for answer, row in ((second, metered[second._request_id]), (stream[-1], streamed)):
        expected = ((prompt - cached) * Decimal("0.2") + cached * Decimal("0.05") +
                    answer.usage.completion_tokens * Decimal("0.8")) / 1_000_000  # fmt: skip
        assert (row.prompt_tokens, row.cached_tokens) == (prompt, cached)
        assert row.completion_tokens == answer.usage.completion_tokens
        assert row.cost == expected.quantize(Decimal("1e-10")) > 0
    assert first.usage.prompt_tokens_details.cached_tokens in (0, cached)  # another test may have sent it before
