"""A model's fallbacks as the operator sets them: ``set_fallbacks`` (the command and the service), ``list_models``
and the Django admin's inline, each refusing what could not answer the model's requests. What the gateway does
with them is tests/e2e/test_fallbacks.py's."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import services
from accounts.models import ModelFallback, ModelKind, ServedModel
from tests.support.forms import forms_of

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def chain(model_id: str, on: bool = False) -> list:
    return list(
        ModelFallback.objects.filter(model_id=model_id).values_list(
            *(("fallback_id", "on") if on else ("fallback_id",)), flat=not on
        )
    )


@pytest.fixture
def chats(catalog):
    for name in ("chat-large", "chat-external"):
        services.register_model(name, ModelKind.CHAT, max_sequence_length=32768, max_output_length=8192)
    return catalog


def test_fallbacks_are_kept_in_the_order_given_replaced_and_cleared(chats):
    assert run("set_fallbacks", "chat-small", "chat-large", "chat-external") == (
        "chat-small: falls back to chat-large, chat-external\n"
    )
    assert chain("chat-small") == ["chat-large", "chat-external"]
    [line] = [line for line in run("list_models").splitlines() if line.startswith("chat-small\t")]
    assert line.split("\t")[-1] == "fallbacks=chat-large,chat-external"
    services.set_fallbacks("chat-small", ["chat-external", "chat-large"])
    assert chain("chat-small") == ["chat-external", "chat-large"]
    assert run("set_fallbacks", "chat-small") == "chat-small: falls back to nothing\n"
    assert chain("chat-small") == [] and "fallbacks=" not in run("list_models")


def test_a_fallback_may_take_only_requests_over_the_context_or_only_when_unavailable(chats):
    said = run("set_fallbacks", "chat-small", "--unavailable-only", "chat-external", "--context-only", "chat-large")
    assert said == "chat-small: falls back to chat-large (context only), chat-external (unavailable only)\n"
    assert chain("chat-small", on=True) == [("chat-large", "context"), ("chat-external", "unavailable")]
    [line] = [line for line in run("list_models").splitlines() if line.startswith("chat-small\t")]
    assert line.split("\t")[-1] == "fallbacks=chat-large(context),chat-external(unavailable)"
    services.set_fallbacks("chat-small", ["chat-external"], context_only=["chat-large"])
    assert chain("chat-small", on=True) == [("chat-external", "any"), ("chat-large", "context")]
    with pytest.raises(ValidationError, match="at most once"):
        services.set_fallbacks("chat-small", ["chat-large"], context_only=["chat-large"])
    assert chain("chat-small") == ["chat-external", "chat-large"]  # nothing changed
    assert ModelFallback.takes("any", "busy") and ModelFallback.takes("unavailable", "busy")
    assert ModelFallback.takes("context", "context") and not ModelFallback.takes("context", "unavailable")
    assert not ModelFallback.takes("unavailable", "context")


@pytest.mark.parametrize(
    ("model", "fallbacks", "message"),
    [
        ("chat-small", ["chat-small"], "'chat-small' cannot be its own fallback"),
        ("chat-small", ["gpt-9"], "unknown model(s): gpt-9"),
        ("gpt-9", ["chat-small"], "unknown model(s): gpt-9"),
        # the request goes on as it was sent: another kind would not read it
        ("chat-small", ["vision-small"], "'vision-small' is a vision model and 'chat-small' a chat model"),
        ("chat-small", ["chat-large", "completion-small"], "'completion-small' is a completion model"),
        # vectors of another length would not compare with the model's own
        ("embed-small", ["embed-wide"], "'embed-wide' gives 768 dimensions and 'embed-small' 384"),
    ],
)
def test_a_fallback_that_could_not_answer_the_models_requests_is_refused(chats, model, fallbacks, message):
    services.register_model("embed-wide", ModelKind.EMBEDDING, max_sequence_length=512, hidden_size=768)
    services.set_fallbacks("chat-small", ["chat-external"])
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("set_fallbacks", model, *fallbacks)
    with pytest.raises(ValidationError):
        services.set_fallbacks(model, fallbacks)
    assert chain("chat-small") == ["chat-external"]  # nothing changed


def test_an_embedding_model_falls_back_to_one_of_its_dimensions(chats):
    services.register_model("embed-other", ModelKind.EMBEDDING, max_sequence_length=8192, hidden_size=384)
    services.set_fallbacks("embed-small", ["embed-other"])
    assert chain("embed-small") == ["embed-other"]


def test_a_fallback_goes_with_either_model(chats):
    services.set_fallbacks("chat-small", ["chat-large"])
    services.set_fallbacks("chat-large", ["chat-small"])  # each the other's: a fallback's own are not followed
    ServedModel.objects.filter(pk="chat-large").delete()
    assert chain("chat-small") == [] and not ModelFallback.objects.exists()


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "", "operator-pw"))
    return client


def test_the_admin_edits_a_models_fallbacks_and_refuses_another_kind(operator, chats):
    page = "/admin/accounts/servedmodel/chat-small/change/"
    form = next(f for f in forms_of(operator.get(page).content.decode()) if "kind" in f.fields)
    assert "fallback_links-TOTAL_FORMS" in form.fields
    one = {"fallback_links-TOTAL_FORMS": "1", "fallback_links-0-position": "0", "fallback_links-0-on": "any"}
    answer = operator.post(page, form.data(**one, **{"fallback_links-0-fallback": "vision-small"}))
    assert answer.status_code == 200 and b"must be of the model&#x27;s kind" in answer.content
    answer = operator.post(page, form.data(**one, **{"fallback_links-0-fallback": "chat-small"}))
    assert answer.status_code == 200 and b"cannot be its own fallback" in answer.content
    assert chain("chat-small") == []
    answer = operator.post(page, form.data(**one, **{"fallback_links-0-fallback": "chat-large"}))
    assert answer.status_code == 302, answer.content[:3000]
    assert chain("chat-small", on=True) == [("chat-large", "any")]
    form = next(f for f in forms_of(operator.get(page).content.decode()) if "kind" in f.fields)
    answer = operator.post(page, form.data(**{"fallback_links-0-on": "context"}))
    assert answer.status_code == 302, answer.content[:3000]
    assert chain("chat-small", on=True) == [("chat-large", "context")]
