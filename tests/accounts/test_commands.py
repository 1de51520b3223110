"""The operator commands, with the exact interface scripts rely on."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.authn import AuthFailed, Failure, authenticate_secret
from accounts.models import ApiKey, Tenant, TenantEntitlement

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_tenant_and_grant_models(catalog):
    assert "created tenant initech" in run("create_tenant", "initech", "--name", "Initech Inc")
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech Inc"
    run("grant_models", "initech", "chat-small", "embed-small")
    assert set(TenantEntitlement.objects.filter(tenant=tenant).values_list("model_id", flat=True)) == {
        "chat-small",
        "embed-small",
    }
    run("grant_models", "initech", "embed-small", "--revoke")
    assert list(TenantEntitlement.objects.filter(tenant=tenant).values_list("model_id", flat=True)) == ["chat-small"]


def test_create_api_key_prints_the_secret_alone_on_the_last_line(acme):
    out = run("create_api_key", "acme", "--models", "chat-small,embed-small", "--name", "ci", "--expires-in-days", "7")
    secret = out.rstrip("\n").splitlines()[-1]
    ctx = authenticate_secret(secret)
    assert ctx.model_ids == {"chat-small", "embed-small"}
    key = ApiKey.objects.get(pk=ctx.key_id)
    assert key.name == "ci" and key.expires_at is not None
    assert secret.count(" ") == 0 and secret.startswith("sk-hub-")


def test_create_api_key_without_models_gets_all_of_the_tenants(acme):
    secret = run("create_api_key", "acme").splitlines()[-1]
    assert authenticate_secret(secret).model_ids == {"chat-small", "completion-small", "embed-small", "vision-small"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["create_api_key", "nope"], "no tenant"),
        (["create_api_key", "globex", "--models", "chat-small"], "not entitled"),
        (["create_api_key", "globex", "--models", "ghost"], "unknown model"),
        (["create_api_key", "globex", "--expires-in-days", "0"], "positive"),
        (["create_api_key", "globex", "--expires-in-days", "3000000"], "past the last date"),
        (["create_api_key", "globex", "--name", "x" * 201], "at most 200"),
        (["create_api_key", "globex", "--max-streams", "2147483648"], "max_streams must be at most"),
        (["create_tenant", "initech", "--name", "x" * 201], "at most 200"),
        (["create_tenant", "Bad Slug"], "lowercase"),
        (["grant_models", "globex", "ghost"], "unknown model"),
        (["revoke_api_key", "sk-hub-nothere"], "no API key"),
        (["list_api_keys", "nope"], "no tenant"),
    ],
)
def test_errors_are_clean(globex, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_revoke_and_list(acme):
    secret = run("create_api_key", "acme", "--name", "to-revoke").splitlines()[-1]
    prefix = ApiKey.objects.get().prefix
    listing = run("list_api_keys", "acme")
    assert prefix in listing and "active" in listing and secret not in listing
    assert "revoked " + prefix in run("revoke_api_key", prefix)
    with pytest.raises(AuthFailed) as failure:
        authenticate_secret(secret)
    assert failure.value.reason is Failure.REVOKED
    assert "revoked" in run("list_api_keys", "acme").splitlines()[1].split("\t")


def test_rotate_prints_new_secret_last(acme):
    old = run("create_api_key", "acme").splitlines()[-1]
    prefix = ApiKey.objects.get().prefix
    new = run("rotate_api_key", prefix, "--grace-seconds", "120").splitlines()[-1]
    assert new != old
    assert authenticate_secret(new).key_id == authenticate_secret(old).key_id


def test_list_models_first_column_is_the_id(catalog):
    lines = run("list_models").splitlines()
    assert [line.split()[0] for line in lines] == ["chat-small", "completion-small", "embed-small", "vision-small"]


def test_register_model_with_deployment(db):
    run(
        "register_model", "ext-gpt", "--kind", "chat", "--max-sequence-length", "128000",
        "--max-output-length", "4096", "--deployment", "https://upstream.example/v1", "--upstream-model", "gpt-4o",
    )  # fmt: skip
    line = run("list_models").splitlines()[0]
    assert line.split("\t")[0] == "ext-gpt" and "https://upstream.example/v1" in line


def test_add_member(acme, outsider):
    assert "outsider is admin of acme" in run("add_member", "acme", "outsider", "--role", "admin")
    with pytest.raises(CommandError, match="no user"):
        run("add_member", "acme", "ghost")
