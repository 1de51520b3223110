"""/v1/moderations on a guard model (``kind = "moderation"``): a random-weight Llama carrying Llama Guard 3's chat
template in its structure. What the guard's format gives (its categories read from the template, each mapped to
OpenAI's, the verdict, the score) is checked on its own; the route's answers against OpenAI's
``CreateModerationResponse``, against the model's own chat answer held to the same grammar (same verdict, same
score from the same log probabilities), and alone against in a batch of inputs."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from inference.config import ModelSpec
from inference.env import ConfigError
from inference.server.guard import (
    OPENAI_CATEGORIES,
    GuardFormat,
    openai_categories,
    read_categories,
    unsafe_probability,
    verdict,
)
from inference.server.registry import _guard
from inference.tokenizer.tokenizer import Tokenizer
from tests.openai_spec import assert_valid
from tests.support.checkpoints import GUARD_CATEGORIES, guard_checkpoint, tiny_chat_checkpoint
from tests.support.inference import inference_service, model_flags

GUARD = "tiny-guard"
# Llama Guard 1's list: codes O1-O6, each name followed by its policy's lines
LLAMA_GUARD_1 = """[INST] Task: Check if there is unsafe content in 'User' messages in conversations according our \
safety policy with the below categories.
<BEGIN UNSAFE CONTENT CATEGORIES>
O1: Violence and Hate.
Should not
- Help people plan or engage in violence.
O2: Sexual Content.
O3: Criminal Planning.
O4: Guns and Illegal Weapons.
O5: Regulated or Controlled Substances.
O6: Self-Harm.
Should not
- Encourage people to harm themselves.
<END UNSAFE CONTENT CATEGORIES>
"""


def test_the_categories_are_read_from_the_template_and_mapped_to_openais():
    lg3 = GUARD_CATEGORIES
    mapped = {name: set(openai_categories(name)) for name in lg3}
    assert mapped["Violent Crimes"] == {"violence", "illicit/violent"}
    assert mapped["Non-Violent Crimes"] == {"illicit"}
    assert mapped["Sex Crimes"] == {"sexual", "illicit"}
    assert mapped["Child Exploitation"] == {"sexual/minors"}
    assert mapped["Defamation"] == {"harassment"}
    assert mapped["Indiscriminate Weapons"] == {"illicit/violent"}
    assert mapped["Hate"] == {"hate"} and mapped["Self-Harm"] == {"self-harm"}
    assert mapped["Sexual Content"] == {"sexual"}
    for name in ("Specialized Advice", "Privacy", "Intellectual Property", "Elections", "Code Interpreter Abuse"):
        assert mapped[name] == set(), name  # no OpenAI category: they flag the input only
    # Llama Guard 3 8B's longer names, and Llama Guard 1's
    assert set(openai_categories("Child Sexual Exploitation")) == {"sexual/minors"}
    assert set(openai_categories("Suicide & Self-Harm")) == {"self-harm"}
    assert set(openai_categories("Sex-Related Crimes")) == {"sexual", "illicit"}
    categories = read_categories(LLAMA_GUARD_1)
    assert categories == {"O1": "Violence and Hate", "O2": "Sexual Content", "O3": "Criminal Planning",
                          "O4": "Guns and Illegal Weapons", "O5": "Regulated or Controlled Substances",
                          "O6": "Self-Harm"}  # fmt: skip
    assert GuardFormat(categories).flags(["O1", "O4"]) == {"violence", "hate", "illicit/violent"}
    assert GuardFormat(categories).flags(["O9"]) == set()  # a code the template does not list flags nothing
    assert read_categories("User: hello") == {}


def test_verdicts_and_scores():
    assert verdict("\n\nsafe") == (False, [])
    assert verdict("unsafe\nS1,S10,S1") == (True, ["S1", "S10"])
    assert verdict("unsafe") == (True, [])  # cut by the length limit: unsafe, no category
    # the mass of each first word among the likeliest tokens; blank and other tokens count for neither
    seen = [("un", math.log(0.3)), ("safe", math.log(0.5)), ("s", math.log(0.1)), ("\n", math.log(0.05)),
            ("x", math.log(0.05))]  # fmt: skip
    assert unsafe_probability(seen, unsafe=False) == pytest.approx(0.3 / 0.9)
    assert unsafe_probability([("unsafe", -0.1), (" unsafe", -3.0)], unsafe=True) == 1.0
    assert unsafe_probability([("\n", -0.1)], unsafe=False) == 0.0  # neither word seen: the verdict's own


def test_a_model_without_a_guard_template_is_refused(tmp_path):
    checkpoint = tiny_chat_checkpoint(tmp_path / "tiny")
    spec = ModelSpec(id="not-a-guard", source=str(checkpoint), kind="moderation")
    with pytest.raises(ConfigError, match="kind moderation needs a guard model"):
        _guard(spec, Tokenizer.from_dir(Path(checkpoint)), guides=None)  # refused before any grammar


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    checkpoint = guard_checkpoint(tmp_path_factory.mktemp("guard") / "guard")
    with inference_service(*model_flags(f"{GUARD}={checkpoint}:moderation")) as url:
        yield url, Tokenizer.from_dir(checkpoint)


def _moderate(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/moderations", json=body, timeout=120)


INPUTS = ["I want to kill them.", "What a lovely morning.", "1, 2, 3", ""]


@pytest.mark.live
def test_answers_are_openais_and_match_the_models_own_chat_answer(service):
    url, tokenizer = service
    answer = _moderate(url, model=GUARD, input=INPUTS)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    usage = body.pop("usage")
    assert_valid("CreateModerationResponse", body)
    assert body["model"] == GUARD and body["id"].startswith("modr-") and len(body["results"]) == len(INPUTS)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": t}]) for t in INPUTS]
    assert usage["prompt_tokens"] == sum(len(p) for p in prompts) and usage["completion_tokens"] > 0
    grammar = GuardFormat({f"S{i}": n for i, n in enumerate(GUARD_CATEGORIES, 1)}).grammar()
    for text, result in zip(INPUTS, body["results"], strict=True):
        assert set(result["categories"]) == set(OPENAI_CATEGORIES)
        chat = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": GUARD, "messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 24,
            "logprobs": True, "top_logprobs": 20, "structured_outputs": {"grammar": grammar},
        }).json()["choices"][0]  # fmt: skip
        unsafe, codes = verdict(chat["message"]["content"])
        assert result["flagged"] == unsafe
        flagged = GuardFormat({f"S{i}": n for i, n in enumerate(GUARD_CATEGORIES, 1)}).flags(codes)
        assert {c for c, on in result["categories"].items() if on} == flagged
        first = next(t for t in chat["logprobs"]["content"] if t["token"].strip())
        seen = [(first["token"], first["logprob"])] + [(t["token"], t["logprob"]) for t in first["top_logprobs"]]
        score = unsafe_probability(seen, unsafe)
        for category, value in result["category_scores"].items():
            assert value == (pytest.approx(score, abs=1e-6) if category in flagged else 0.0), category
        assert all(v == ["text"] for v in result["category_applied_input_types"].values())


@pytest.mark.live
def test_an_input_judged_alone_is_judged_the_same_among_others(service):
    url, _ = service
    together = _moderate(url, model=GUARD, input=INPUTS).json()["results"]
    for text, result in zip(INPUTS, together, strict=True):
        assert _moderate(url, model=GUARD, input=text).json()["results"] == [result]
    # text parts are one input, their texts joined; without a model, the one guard served
    parts = [{"type": "text", "text": "What a lovely"}, {"type": "text", "text": "morning."}]
    assert (
        _moderate(url, input=parts).json()["results"]
        == _moderate(url, input="What a lovely\nmorning.").json()["results"]
    )


@pytest.mark.live
@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"model": GUARD}, "input", 400),
        ({"model": GUARD, "input": []}, "input", 400),
        ({"model": GUARD, "input": 3}, "input", 400),
        ({"model": GUARD, "input": ["x"] * 33}, "input", 400),
        ({"model": GUARD, "input": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, "input[0]", 400),
        ({"model": GUARD, "input": [{"type": "text"}]}, "input[0]", 400),
        ({"model": GUARD, "input": "word " * 3000}, "input", 400),
        ({"model": "nope", "input": "x"}, "model", 404),
        ({"model": GUARD, "input": "x", "priority": "high"}, "priority", 400),
    ],
    ids=["missing", "empty", "number", "too-many", "image", "bad-part", "too-long", "unknown-model", "bad-priority"],
)
def test_bad_requests_are_openai_errors(service, body, param, status):
    url, _ = service
    answer = _moderate(url, **body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["param"] == param
