"""``POST /v1/responses/compact`` (``client.responses.compact``) on the packaged chat model through the hub: the
context (a stored response, or input items) becomes its user messages and one compaction item; the compacted output
sent back as input carries the summary to the model; a forged or another tenant's compaction is refused; metered
as ``responses/compact``. The Agents SDK's compaction session is in tests/e2e/test_frameworks.py."""

from __future__ import annotations

import openai
import pytest

from accounts import services
from tests.openai_spec import assert_valid
from tests.support.live import CHAT, rows

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

NAME = "My name is Ada Lovelace and I keep bees in Lyon. Reply with one short sentence."
TOOL_CALL = [
    {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Lyon"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 degrees."},
]


def test_a_stored_response_is_compacted_and_the_conversation_goes_on_from_its_summary(hub):
    client = hub()
    first = client.responses.create(model=CHAT, input=NAME, max_output_tokens=12, temperature=0)
    raw = client.responses.with_raw_response.compact(model=CHAT, previous_response_id=first.id)
    body = raw.http_response.json()
    assert_valid("CompactResource", body)
    assert body["object"] == "response.compaction" and body["id"].startswith("resp_")
    user, compaction = body["output"]
    assert user["role"] == "user" and user["content"] == [{"type": "input_text", "text": NAME}]
    assert compaction["type"] == "compaction" and compaction["id"].startswith("cmp_")
    assert "Lyon" not in compaction["encrypted_content"]  # opaque
    usage = body["usage"]
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 48  # HUB_COMPACTION_MAX_TOKENS
    [row] = rows(request_id=raw.headers["x-request-id"])
    assert (row.route, row.prompt_tokens, row.completion_tokens) == (
        "responses/compact", usage["input_tokens"], usage["output_tokens"])  # fmt: skip

    # the SDK's typed object, sent back as the next input with a new question
    compacted = client.responses.compact(model=CHAT, previous_response_id=first.id)
    question = {"role": "user", "content": "What is my name?"}
    then = client.responses.create(model=CHAT, input=[*compacted.output, question], max_output_tokens=12,
                                   temperature=0)  # fmt: skip
    assert then.output_text and then.status in ("completed", "incomplete")
    # the model read the summary: the same input without the compaction item is shorter by it
    counted = client.responses.input_tokens.count(model=CHAT, input=[*compacted.output, question]).input_tokens
    without = client.responses.input_tokens.count(model=CHAT, input=[compacted.output[0], question]).input_tokens
    assert counted > without + 10
    # and it stays in the stored context of what follows
    again = client.responses.create(model=CHAT, previous_response_id=then.id, input="And where do I live?",
                                    max_output_tokens=8, temperature=0)  # fmt: skip
    assert again.output_text


def test_input_items_are_compacted_to_their_user_messages_and_a_summary(hub):
    client = hub()
    items = [{"role": "user", "content": NAME}, {"role": "assistant", "content": "Hello Ada!"}, *TOOL_CALL,
             {"role": "user", "content": "Is it a good day for the bees?"}]  # fmt: skip
    compacted = client.responses.compact(model=CHAT, input=items, instructions="You are a beekeeper's assistant.")
    kinds = [(item.type, getattr(item, "role", None)) for item in compacted.output]
    assert kinds == [("message", "user"), ("message", "user"), ("compaction", None)]
    # compacting again: the earlier compaction is summarized with the rest, and replaced
    again = client.responses.compact(model=CHAT, input=[*compacted.output, {"role": "user", "content": "Thanks."}])
    assert [item.type for item in again.output] == ["message", "message", "message", "compaction"]
    # a new item (its content may equal the first's: a greedy summary of the same facts, sealed in the same second)
    assert again.output[-1].id != compacted.output[-1].id


def test_compactions_not_made_here_for_this_tenant_are_refused(hub):
    client = hub()
    sealed = client.responses.compact(model=CHAT, input=NAME).output[-1]
    forged = sealed.encrypted_content[:-3] + ("abc" if not sealed.encrypted_content.endswith("abc") else "xyz")
    globex = services.create_tenant("globex", "Globex")
    services.grant_models(globex, [CHAT])
    other = hub(services.issue_key(globex, name="g"))
    for who, content in [(client, forged), (other, sealed.encrypted_content)]:
        with pytest.raises(openai.BadRequestError) as caught:
            who.responses.create(model=CHAT, input=[{"type": "compaction", "encrypted_content": content},
                                                    {"role": "user", "content": "Hi"}])  # fmt: skip
        error = caught.value.response.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_encrypted_content", "input[0].encrypted_content"), error

    for kwargs, param in [({"input": []}, "input"), ({"input": 5}, "input"), ({"input": "x", "stream": True}, "stream"),
                          ({"input": "x", "instructions": 3}, "instructions"),
                          ({"previous_response_id": "resp_nope"}, "previous_response_id")]:  # fmt: skip
        with pytest.raises(openai.APIStatusError) as caught:
            client.post("/responses/compact", body={"model": CHAT, **kwargs}, cast_to=object)
        error = caught.value.response.json()["error"]
        assert caught.value.status_code in (400, 404) and error["param"] == param, error
