"""The start-up sync (``sync_deployment``, ``sync_models``, ``register_model``) on a catalog that already has
data: a restart updates rows in place, and a model a service stops serving is disabled, never deleted."""

import pytest
from django.core.management import call_command

from accounts import services
from accounts.authn import effective_model_ids
from accounts.metering import Usage, record_usage
from accounts.models import Deployment, ServedModel, UsageRecord

URL = "http://127.0.0.1:8100/v1"
OTHER = "http://10.0.0.7:8100/v1"


def card(model_id: str, kind: str = "chat", seq: int = 8192) -> dict:
    return {"id": model_id, "kind": kind, "meta_data": {"max_sequence_length": seq, "max_output_length": 512}}


@pytest.fixture
def served(acme):
    """acme's catalog, with chat-small and embed-small served by the service at URL."""
    services.sync_deployment(URL, [card("chat-small"), card("embed-small", "embedding", 512)])
    return acme


def test_sync_twice_is_idempotent(served):
    before = list(Deployment.objects.values_list("id", "model_id", "base_url", "enabled").order_by("id"))
    for _ in range(3):  # a second, third, fourth start
        services.sync_deployment(URL, [card("chat-small"), card("embed-small", "embedding", 512)])
    assert list(Deployment.objects.values_list("id", "model_id", "base_url", "enabled").order_by("id")) == before
    assert ServedModel.objects.get(pk="chat-small").enabled


def test_register_model_twice_with_the_same_deployment_updates_it(db):
    services.register_model("m", "chat", deployment_url=URL, upstream_model="a")
    services.register_model("m", "chat", deployment_url=URL, upstream_model="b", max_sequence_length=64)
    (deployment,) = Deployment.objects.filter(model_id="m")
    assert deployment.upstream_model == "b"
    assert ServedModel.objects.get(pk="m").max_sequence_length == 64


def test_a_model_no_longer_served_is_disabled_with_its_history_kept(served):
    issued = services.issue_key(served.tenant)
    record_usage(Usage(
        request_id="r1", tenant_id=served.tenant.id, api_key_id=issued.key.id, model="embed-small",
        route="embeddings", prompt_tokens=5, completion_tokens=0, status_code=200, streamed=False, aborted=False,
        time_to_first_token_ms=None, duration_ms=3,
    ))  # fmt: skip
    assert "embed-small" in effective_model_ids(issued.key)

    services.sync_deployment(URL, [card("chat-small")])  # restarted without the embedding model

    model = ServedModel.objects.get(pk="embed-small")
    assert not model.enabled and model.unserved_since is not None
    assert not Deployment.objects.get(model_id="embed-small", base_url=URL).enabled
    assert "embed-small" not in effective_model_ids(issued.key)  # not routable
    assert UsageRecord.objects.filter(model="embed-small").count() == 1  # history intact
    assert served.tenant.entitlements.filter(model_id="embed-small").exists()

    services.sync_deployment(URL, [card("chat-small"), card("embed-small", "embedding", 512)])  # back again
    model.refresh_from_db()
    assert model.enabled and model.unserved_since is None
    assert "embed-small" in effective_model_ids(issued.key)


def test_a_model_still_served_elsewhere_stays_enabled(served):
    services.sync_deployment(OTHER, [card("chat-small")])
    services.sync_deployment(URL, [card("embed-small", "embedding", 512)])
    assert ServedModel.objects.get(pk="chat-small").enabled
    assert list(Deployment.objects.filter(model_id="chat-small", enabled=True).values_list("base_url", flat=True)) == [
        OTHER
    ]


def test_an_operators_disable_survives_a_restart(served):
    services.set_model_enabled(ServedModel.objects.get(pk="chat-small"), False)
    services.sync_deployment(URL, [card("chat-small"), card("embed-small", "embedding", 512)])
    assert not ServedModel.objects.get(pk="chat-small").enabled


def test_sync_models_command_runs_twice(served, monkeypatch):
    cards = [card("chat-small"), card("embed-small", "embedding", 512)]
    monkeypatch.setattr("hub.management.commands.sync_models.model_cards", lambda url, key="": cards)
    call_command("sync_models", URL)
    call_command("sync_models", URL + "/")
    assert Deployment.objects.filter(base_url=URL).count() == 2
