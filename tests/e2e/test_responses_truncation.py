"""``truncation: "auto"`` on the packaged chat model, served under a name whose catalog entry gives it a short
context (320 tokens): a conversation longer than that leaves out its first turns, cut before a user's message, until
it fits with ``max_output_tokens``; the instructions stay, the stored response keeps every item, and a context that
fits goes whole. Checked against the counts of ``client.responses.input_tokens.count``."""

from __future__ import annotations

import openai
import pytest

from accounts import services
from accounts.models import ModelKind, ServedModel
from tests.support.live import CHAT, CHAT_MAX_OUTPUT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

SHORT = "smollm2-short"
LENGTH = 320
OUT = 8
INSTRUCTIONS = "Answer in a few words."


def _turns() -> list[dict]:
    """Five turns about different things, then the question."""
    topics = ["bees and their hives", "the river Seine", "old clocks", "green tea", "mountain trains"]
    items: list[dict] = []
    for topic in topics:
        items.append({"role": "user", "content": f"Tell me about {topic}. " + "Please be thorough. " * 8})
        items.append({"role": "assistant", "content": f"Here is what I know about {topic}. " + "It is nice. " * 10})
    return [*items, {"role": "user", "content": "What did we talk about last?"}]


def test_a_long_context_leaves_out_its_first_turns_until_it_fits(hub, inference_url):
    services.register_model(SHORT, ModelKind.CHAT, max_sequence_length=LENGTH, max_output_length=CHAT_MAX_OUTPUT,
                            deployment_url=inference_url, upstream_model=CHAT)  # fmt: skip
    services.grant_models(hub.tenant, [SHORT])
    client = hub()
    items = _turns()

    def count(start: int) -> int:
        return client.responses.input_tokens.count(model=SHORT, input=items[start:],
                                                   instructions=INSTRUCTIONS).input_tokens  # fmt: skip

    assert count(0) > LENGTH  # too long whole
    # the first cut before a user's message that fits, the instructions kept
    expected = next(count(i) for i in range(0, len(items), 2) if count(i) <= LENGTH - OUT)
    response = client.responses.create(model=SHORT, input=items, instructions=INSTRUCTIONS, truncation="auto",
                                       max_output_tokens=OUT, temperature=0)  # fmt: skip
    assert response.truncation == "auto" and response.output_text
    assert response.usage.input_tokens == expected < count(0)
    assert len(client.responses.input_items.list(response.id, limit=100).data) == len(items)  # all kept

    short = items[-3:]  # fits: goes whole
    whole = client.responses.input_tokens.count(model=SHORT, input=short, instructions=INSTRUCTIONS).input_tokens
    answer = client.responses.create(model=SHORT, input=short, instructions=INSTRUCTIONS, truncation="auto",
                                     max_output_tokens=OUT, temperature=0)  # fmt: skip
    assert answer.usage.input_tokens == whole


def test_a_context_longer_than_the_models_whole_length_is_counted_and_cut(hub):
    """The case ``truncation: "auto"`` is for: a context longer than the model's whole length, not only than what
    ``max_output_tokens`` leaves (the test above serves a shorter catalog length than the service's). Its count
    used to be the service's 400, which failed the request ('messages' named)."""
    length = ServedModel.objects.get(id=CHAT).max_sequence_length
    client = hub()
    items = [
        {"role": "user", "content": "Tell me about bees. " + "bees " * length},  # alone longer than the model's length
        {"role": "assistant", "content": "Bees live in hives."},
        {"role": "user", "content": "What did we talk about?"},
    ]

    def count(start: int) -> int:
        return client.responses.input_tokens.count(model=CHAT, input=items[start:]).input_tokens

    assert count(0) > length  # counted, as OpenAI counts it
    response = client.responses.create(model=CHAT, input=items, truncation="auto", max_output_tokens=OUT,
                                       temperature=0)  # fmt: skip
    assert response.usage.input_tokens == count(2) and response.output_text  # cut before the last user's message
    for truncation in ("auto", "disabled"):  # nothing to cut: the one message is too long either way
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=CHAT, input=items[:1], truncation=truncation, max_output_tokens=OUT)
        assert refused.value.code == "context_length_exceeded" and refused.value.param == "input", truncation
