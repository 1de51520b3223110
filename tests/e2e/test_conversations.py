"""OpenAI's Conversations API through a live hub, with the OpenAI SDK: a conversation created with items, read,
given new metadata, extended, its items listed in pages either way, read and deleted one by one, and deleted whole;
a response created with ``conversation`` continues it (the deployment gets its items before the input) and adds its
input and output to it, streamed or not, stored or not; tenancy and bad input. Against the fake service (the
gateway's behaviour); the OpenAI Agents SDK's ``OpenAIConversationsSession`` on a real model is test_frameworks'."""

from __future__ import annotations

import httpx
import openai
import pytest

from accounts import services
from tests.openai_spec import assert_valid
from tests.support.live import FAKE_CHAT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

TURN = [{"role": "user", "content": "My name is Ann."}, {"type": "message", "role": "assistant", "content": "Hi Ann."}]


def _raw(hub, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{hub.url}/v1/{path}", headers={"authorization": f"Bearer {hub.everything.secret}"},
                         **kw)  # fmt: skip


def _texts(items) -> list[tuple[str, str]]:
    return [(i.role, "".join(part.text for part in i.content)) for i in items]


def test_a_conversation_is_created_read_extended_and_deleted(fake_hub):
    client = fake_hub()
    conversation = client.conversations.create(items=TURN, metadata={"topic": "names"})
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "names"}
    assert_valid("ConversationResource", _raw(fake_hub, "GET", f"conversations/{conversation.id}").json())
    assert client.conversations.retrieve(conversation.id) == conversation

    listed = _raw(fake_hub, "GET", f"conversations/{conversation.id}/items").json()
    assert_valid("ConversationItemList", listed)
    items = client.conversations.items.list(conversation.id)  # newest first by default
    assert _texts(items.data) == [("assistant", "Hi Ann."), ("user", "My name is Ann.")] and not items.has_more
    first = items.data[1]
    assert first.id.startswith("msg_") and first.content[0].type == "input_text"
    assert items.data[0].content[0].type == "output_text"
    assert client.conversations.items.retrieve(first.id, conversation_id=conversation.id) == first
    assert_valid("ConversationItem", _raw(fake_hub, "GET", f"conversations/{conversation.id}/items/{first.id}").json())

    added = client.conversations.items.create(conversation.id, items=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Bye."}], "id": "msg_mine"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
    ])  # fmt: skip
    assert [i.id for i in added.data][0] == "msg_mine" and [i.type for i in added.data] == [
        "message", "function_call", "function_call_output",
    ]  # fmt: skip
    ordered = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [i.id for i in ordered] == [first.id, items.data[0].id, *[i.id for i in added.data]]

    updated = client.conversations.update(conversation.id, metadata={"topic": "farewells"})
    assert updated.metadata == {"topic": "farewells"} and updated.created_at == conversation.created_at
    after_delete = client.conversations.items.delete("msg_mine", conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    with pytest.raises(openai.NotFoundError) as exc:
        client.conversations.items.retrieve("msg_mine", conversation_id=conversation.id)
    assert exc.value.body["param"] == "item_id"
    assert len(list(client.conversations.items.list(conversation.id))) == 4

    deleted = _raw(fake_hub, "DELETE", f"conversations/{conversation.id}").json()
    assert_valid("DeletedConversationResource", deleted)
    assert deleted == {"id": conversation.id, "object": "conversation.deleted", "deleted": True}
    for call in (client.conversations.retrieve, client.conversations.delete, client.conversations.items.list):
        with pytest.raises(openai.NotFoundError):
            call(conversation.id)


def test_a_response_continues_and_extends_its_conversation(fake_hub, fake):
    client = fake_hub()
    conversation = client.conversations.create(items=TURN)
    first = client.responses.create(model=FAKE_CHAT, conversation=conversation.id, input="What is my name?",
                                    max_output_tokens=3)  # fmt: skip
    sent = fake.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"] and "conversation" not in fake.requests[-1]
    assert first.conversation.id == conversation.id and first.output_text == "w0 w1 w2 "
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert _texts(items) == [("user", "My name is Ann."), ("assistant", "Hi Ann."), ("user", "What is my name?"),
                             ("assistant", "w0 w1 w2 ")]  # fmt: skip
    assert items[3].id == first.output[0].id

    # streamed, not stored, the conversation given as an object: it still grows
    fake.default_tokens = 2  # a whole answer (response.completed), not one cut at max_output_tokens
    with client.responses.stream(model=FAKE_CHAT, conversation={"id": conversation.id}, store=False,
                                 input=[{"type": "item_reference", "id": items[0].id},
                                        {"role": "user", "content": "Again?"}]) as stream:  # fmt: skip
        final = stream.get_final_response()
    assert final.conversation.id == conversation.id
    assert [m["role"] for m in fake.requests[-1]["messages"]] == ["user", "assistant", "user", "assistant", "user",
                                                                  "user"]  # fmt: skip
    grown = list(client.conversations.items.list(conversation.id, order="asc"))
    # the referenced item is not added again: the new message and the output are
    assert [i.id for i in grown[:4]] == [i.id for i in items] and len(grown) == 6
    assert _texts(grown[4:]) == [("user", "Again?"), ("assistant", "w0 w1 ")]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final.id)


def test_pages_either_way(fake_hub):
    client = fake_hub()
    conversation = client.conversations.create(items=[{"role": "user", "content": f"m{i}"} for i in range(20)])
    client.conversations.items.create(conversation.id, items=[{"role": "user", "content": f"m{i}"}
                                                              for i in range(20, 25)])  # fmt: skip
    forward = list(client.conversations.items.list(conversation.id, order="asc", limit=7))  # the SDK pages on
    assert [t for _, t in _texts(forward)] == [f"m{i}" for i in range(25)]
    backward = client.conversations.items.list(conversation.id, limit=10)
    assert [t for _, t in _texts(backward.data)] == [f"m{i}" for i in range(24, 14, -1)] and backward.has_more
    rest = client.conversations.items.list(conversation.id, after=backward.data[-1].id, limit=100)
    assert [t for _, t in _texts(rest.data)] == [f"m{i}" for i in range(14, -1, -1)] and not rest.has_more
    for params, param in (({"limit": 0}, "limit"), ({"order": "up"}, "order"), ({"after": "msg_nope"}, "after")):
        with pytest.raises(openai.BadRequestError) as exc:
            client.conversations.items.list(conversation.id, **params)
        assert exc.value.body["param"] == param


def test_another_tenants_key_sees_nothing(fake_hub):
    conversation = fake_hub().conversations.create(items=TURN)
    item = next(iter(fake_hub().conversations.items.list(conversation.id)))
    other = services.create_tenant("initech", "Initech")
    services.grant_models(other, [FAKE_CHAT])
    outsider = openai.OpenAI(base_url=f"{fake_hub.url}/v1", max_retries=0,
                             api_key=services.issue_key(other, name="other").secret)  # fmt: skip
    for call in (outsider.conversations.retrieve, outsider.conversations.delete, outsider.conversations.items.list):
        with pytest.raises(openai.NotFoundError) as exc:
            call(conversation.id)
        assert exc.value.body["message"] == f"Conversation with id '{conversation.id}' not found."
    with pytest.raises(openai.NotFoundError):
        outsider.conversations.items.retrieve(item.id, conversation_id=conversation.id)
    with pytest.raises(openai.NotFoundError):
        outsider.conversations.items.create(conversation.id, items=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError) as exc:
        outsider.responses.create(model=FAKE_CHAT, conversation=conversation.id, input="Hi")
    assert exc.value.body["param"] == "conversation"
    assert len(list(fake_hub().conversations.items.list(conversation.id))) == 2


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("conversations", {"items": [{"type": "bogus"}]}, "items[0].type"),
        ("conversations", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ("conversations", {"items": "hello"}, "items"),
        ("conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ("conversations", {"items": [{"role": "user", "content": "x", "id": "m"}] * 2}, "items[1].id"),
        ("conversations", {"items": [{"role": "user", "content": "x", "id": "m" * 201}]}, "items[0].id"),
        ("conversations", {"items": [{"type": "function_call_output", "call_id": "c", "output": "o"}]}, "items"),
        ("CONV/items", {}, "items"),
        ("CONV/items", {"items": []}, "items"),
        ("CONV/items", {"items": [{"role": "user", "content": "x", "id": "msg_held"}]}, "items[0].id"),
        ("CONV", {}, "metadata"),
        ("responses", {"model": FAKE_CHAT, "input": "x", "conversation": 5}, "conversation"),
        ("responses", {"model": FAKE_CHAT, "input": "x", "conversation": {}}, "conversation.id"),
        (
            "responses",
            {"model": FAKE_CHAT, "input": "x", "conversation": "CONV", "previous_response_id": "resp_1"},
            "conversation",
        ),  # fmt: skip
    ],
)
def test_bad_input_gets_openais_error(fake_hub, fake, path, body, param):
    conversation = fake_hub().conversations.create(items=[{"role": "user", "content": "x", "id": "msg_held"}])
    path = path.replace("CONV", f"conversations/{conversation.id}")
    if body.get("conversation") == "CONV":
        body = {**body, "conversation": conversation.id}
    response = _raw(fake_hub, "POST", path, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param and fake.requests == []
    assert len(list(fake_hub().conversations.items.list(conversation.id))) == 1


def test_an_unknown_conversation_is_a_404(fake_hub, fake):
    with pytest.raises(openai.NotFoundError) as exc:
        fake_hub().responses.create(model=FAKE_CHAT, conversation="conv_nope", input="Hi")
    assert exc.value.body["param"] == "conversation" and fake.requests == []
    with pytest.raises(openai.NotFoundError):
        fake_hub().conversations.items.delete("msg_x", conversation_id="conv_nope")
