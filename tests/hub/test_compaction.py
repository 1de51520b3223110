"""Compaction items (``hub/api/compaction_items.py``): sealed for one tenant, opened only by it, shown to the model as
an assistant turn holding the summary (and to an external deployment as that message); the compact route's own
fields checked. The route end to end: tests/e2e/test_responses_compact.py."""

from __future__ import annotations

import pytest

from hub.api import compaction, compaction_items, errors
from hub.api.responses_chat import messages
from hub.api.responses_input import read_items
from hub.api.responses_relay import ResponsePlan
from hub.api.upstream import Target

SUMMARY = "Ada keeps bees in Lyon; she asked about the weather."


def _item(content: str) -> dict:
    return read_items([{"type": "compaction", "encrypted_content": content}], [], "input")[0]


def test_a_sealed_summary_opens_for_its_tenant_only():
    sealed = compaction_items.seal(7, SUMMARY)
    assert "Lyon" not in sealed
    item = _item(sealed)
    assert item["id"].startswith("cmp_") and item["type"] == "compaction"
    assert compaction_items.summaries(7, [], [item]) == {sealed: SUMMARY}
    forged = sealed[:-2] + ("yy" if sealed.endswith("xx") else "xx")
    for tenant, content in [(8, sealed), (7, forged), (7, "not-ours")]:  # another tenant's, forged, garbage
        with pytest.raises(errors.InvalidRequest) as caught:
            compaction_items.summaries(tenant, [], [_item(content)])
        assert (caught.value.code, caught.value.param) == ("invalid_encrypted_content", "input[0].encrypted_content")
    with pytest.raises(errors.InvalidRequest) as caught:  # one in the stored context
        compaction_items.summaries(8, [item], [])
    assert caught.value.param == "previous_response_id"
    with pytest.raises(errors.InvalidRequest) as caught:
        read_items([{"type": "compaction", "encrypted_content": ""}], [], "input")
    assert caught.value.param == "input[0].encrypted_content"


def test_the_model_reads_a_compaction_as_an_assistant_turn_with_its_summary():
    sealed = compaction_items.seal(7, SUMMARY)
    raw = [{"role": "user", "content": "Hi, I am Ada."}, {"type": "compaction", "encrypted_content": sealed},
           {"role": "user", "content": "What is my name?"}]  # fmt: skip
    items = read_items(raw, [], "input")
    summaries = compaction_items.summaries(7, [], items)
    shown = messages("Be brief.", items, summaries)
    assert [m["role"] for m in shown] == ["system", "user", "assistant", "user"]
    assert shown[2]["content"].endswith(SUMMARY) and "summary" in shown[2]["content"]
    plan = ResponsePlan({"model": "m", "input": []}, "m", [], items, {}, summaries=summaries)
    external = Target(1, "https://api.example/v1", "gpt-x", "sk", external=True)
    route, native = plan.upstream(external, stream=False)
    assert route == "responses" and native["input"][1] == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": shown[2]["content"]}],
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [({"model": "m", "input": 5}, "input"), ({"model": "m", "input": 0}, "input"),
     ({"model": "m", "input": "x", "stream": True}, "stream")],
)  # fmt: skip
def test_the_compact_routes_fields_are_checked(body, param):
    with pytest.raises(errors.InvalidRequest) as caught:
        compaction._check(body)
    assert caught.value.param == param
