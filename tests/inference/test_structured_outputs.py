"""vLLM's structured outputs (``structured_outputs`` and the older ``guided_*``) on chat completions and
completions, sent as the OpenAI SDK's ``extra_body``: sampled answers (temperature 1, several seeds) always match."""

from __future__ import annotations

import json
import re

import jsonschema
import openai
import pytest
from openai import OpenAI

from tests.support.inference import inference_service

pytestmark = [pytest.mark.real_model, pytest.mark.live]

CHAT = "smollm2"
ASK = [{"role": "user", "content": "Name a colour, then describe the sea."}]
SEEDS = (1, 2, 3)
SCHEMA = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}, "depth_m": {"type": "integer"}},
    "required": ["colour", "depth_m"],
}
# the tricky kinds of choice: quotes, a backslash, a newline, a slash and letters outside ASCII
CHOICES = ['say "yes"', "back\\slash", "two\nlines", "a/b", "grün"]


@pytest.fixture(scope="module")
def client():
    with inference_service("--model", f"{CHAT}=packaged:smollm2:chat") as url:
        yield OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def _chat(client, extra: dict, seed: int, **kwargs) -> str:
    kwargs.setdefault("max_completion_tokens", 40)
    answer = client.chat.completions.create(model=CHAT, messages=ASK, temperature=1.0, seed=seed, extra_body=extra,
                                            **kwargs)  # fmt: skip
    return answer.choices[0].message.content


def _completion(client, extra: dict, seed: int, **kwargs) -> list[str]:
    kwargs.setdefault("max_tokens", 40)
    answer = client.completions.create(model=CHAT, prompt="The sea is", temperature=1.0, seed=seed, extra_body=extra,
                                       **kwargs)  # fmt: skip
    return [c.text for c in answer.choices]


@pytest.mark.parametrize("extra", [{"structured_outputs": {"choice": CHOICES}}, {"guided_choice": CHOICES}],
                         ids=["structured_outputs", "guided"])  # fmt: skip
def test_choice_answers_are_one_of_the_strings(client, extra):
    for seed in SEEDS:
        assert _chat(client, extra, seed) in CHOICES
    assert all(text in CHOICES for text in _completion(client, extra, 4, n=3))


@pytest.mark.parametrize("regex", [r"[0-9]{3}-[a-z]{2}", r"(sun|rain)/[A-Z][a-z]+ [0-9]+"])
def test_regex_answers_match_and_stream_the_same(client, regex):
    extra = {"structured_outputs": {"regex": regex}}
    for seed in SEEDS:
        text = _chat(client, extra, seed)
        assert re.fullmatch(regex, text), text
        streamed = client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=40, temperature=1.0,
                                                  seed=seed, extra_body=extra, stream=True)  # fmt: skip
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == text
    (text,) = _completion(client, {"guided_regex": regex}, 9)
    assert re.fullmatch(regex, text), text


@pytest.mark.parametrize("schema", [SCHEMA, json.dumps(SCHEMA)], ids=["object", "text"])
def test_json_answers_validate(client, schema):
    for seed in SEEDS:
        value = json.loads(_chat(client, {"structured_outputs": {"json": schema}}, seed, max_completion_tokens=60))
        jsonschema.validate(value, SCHEMA)
        assert set(value) == {"colour", "depth_m"}  # closed, as with response_format
    (text,) = _completion(client, {"guided_json": schema}, 5, max_tokens=60)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object_answers_are_objects(client):
    """Greedy: an object's keys and strings are the model's to choose, and a sampled one may run past any length
    (then cut, and no JSON), as it did under some seeds once the prefix cache changed the prompt's numbers."""
    answer = client.chat.completions.create(model=CHAT, messages=ASK, temperature=0, max_completion_tokens=120,
                                            extra_body={"structured_outputs": {"json_object": True}})  # fmt: skip
    assert answer.choices[0].finish_reason == "stop", answer.choices[0].message.content
    assert isinstance(json.loads(answer.choices[0].message.content), dict)


@pytest.mark.parametrize(
    "grammar",
    [
        'start: answer "," answer\nanswer: "cat" | "dog" | NUMBER\nNUMBER: /[0-9]{1,3}/\n',  # Lark, llguidance's
        'root ::= answer "," answer\nanswer ::= "cat" | "dog" | [0-9] [0-9]?\n',  # GBNF, llama.cpp's
    ],
    ids=["lark", "gbnf"],
)
def test_grammar_answers_are_in_its_language(client, grammar):
    sentence = r"(cat|dog|[0-9]{1,3}),(cat|dog|[0-9]{1,3})"
    for seed in SEEDS:
        text = _chat(client, {"structured_outputs": {"grammar": grammar}}, seed, max_completion_tokens=20)
        assert re.fullmatch(sentence, text), text
    (text,) = _completion(client, {"guided_grammar": grammar}, 3, max_tokens=20)
    assert re.fullmatch(sentence, text), text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"structured_outputs": {}}, "structured_outputs"),
        ({"structured_outputs": "regex"}, "structured_outputs"),
        ({"structured_outputs": {"regex": "a+", "choice": ["a"]}}, "structured_outputs.choice"),
        ({"structured_outputs": {"regex": "a+"}, "guided_choice": ["a"]}, "guided_choice"),
        ({"structured_outputs": {"regex": "(unclosed"}}, "structured_outputs.regex"),
        ({"structured_outputs": {"regex": ""}}, "structured_outputs.regex"),
        ({"structured_outputs": {"choice": []}}, "structured_outputs.choice"),
        ({"guided_choice": ["a", 3]}, "guided_choice"),
        ({"guided_json": {"type": "nonsense"}}, "guided_json"),
        ({"guided_json": "{not json"}, "guided_json"),
        ({"structured_outputs": {"grammar": "start: undefined_rule"}}, "structured_outputs.grammar"),
        ({"structured_outputs": {"json_object": "yes"}}, "structured_outputs.json_object"),
        ({"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs.structural_tag"),
        ({"structured_outputs": {"regexp": "a"}}, "structured_outputs.regexp"),
    ],
)
def test_bad_structured_outputs_are_openai_errors(client, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=5, extra_body=extra)
    error = caught.value.body
    assert error["param"] == param and error["type"] == "invalid_request_error", error
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=CHAT, prompt="x", max_tokens=5, extra_body=extra)
    assert caught.value.body["param"] == param


def test_structured_outputs_with_tools_or_response_format_are_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=5, response_format={"type": "json_object"},
                                       extra_body={"guided_regex": "a+"})  # fmt: skip
    assert caught.value.body["param"] == "guided_regex"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=CHAT, messages=ASK, max_tokens=5, tools=[tool],
                                       extra_body={"guided_choice": ["a"]})  # fmt: skip
    assert caught.value.body["param"] == "guided_choice"
    # with tool_choice none the tools shape nothing: allowed
    text = _chat(client, {"guided_choice": ["a", "b"]}, 1, tools=[tool], tool_choice="none")
    assert text in ("a", "b")
