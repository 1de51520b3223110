"""Setting limits: the operator commands (create_api_key / create_tenant / set_limits), the services' rules
(operators set a tenant's limits, admins a key's) and the console pages; the auth cache carries the new limits
to the gateway at once."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import services
from accounts.authn import authenticate_secret
from accounts.limits import Limits
from accounts.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db(transaction=True)  # the auth cache is invalidated on commit


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_api_key_with_limits(acme):
    out = run("create_api_key", "acme", "--rpm", "60", "--tpm", "90000", "--max-streams", "2", "--budget", "1000000")
    secret = out.strip().splitlines()[-1]
    context = authenticate_secret(secret)
    assert context.limits == Limits(rpm=60, tpm=90000, budget=1_000_000, budget_period="month", max_streams=2)
    assert "rpm 60, tpm 90,000, budget 1,000,000 per month, streams 2" in out


def test_set_limits_changes_only_what_is_given_and_none_clears(acme):
    issued = services.issue_key(acme.tenant)
    run("set_limits", issued.key.prefix, "--rpm", "5", "--budget", "100", "--budget-period", "day")
    assert authenticate_secret(issued.secret).limits == Limits(rpm=5, budget=100, budget_period="day")
    run("set_limits", issued.key.prefix, "--tpm", "1000", "--rpm", "none")
    assert authenticate_secret(issued.secret).limits == Limits(tpm=1000, budget=100, budget_period="day")
    out = run("set_limits", "--tenant", "acme", "--rpm", "600")
    assert "tenant acme: rpm 600" in out
    assert authenticate_secret(issued.secret).tenant_limits.rpm == 600  # every key of the tenant sees it


def test_create_tenant_with_limits(catalog):
    run("create_tenant", "initech", "--tpm", "5000", "--budget", "70000")
    assert Limits.of(Tenant.objects.get(slug="initech")) == Limits(tpm=5000, budget=70000)


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "name a key prefix or --tenant"),
        (("sk-hub-nope",), "no API key with prefix"),
        (("--tenant", "acme", "--max-streams", "2"), "applies to keys only"),
        (("--tenant", "acme", "--rpm", "0"), "at least 1"),
        (("--tenant", "acme", "--rpm", "many"), "whole number"),
        # past what the columns hold: refused by Limits, not a DataError from PostgreSQL
        (("--tenant", "acme", "--rpm", "2147483648"), "rpm must be at most 2,147,483,647"),
        (("--tenant", "acme", "--budget", "9223372036854775808"), "budget must be at most"),
        (("--tenant", "acme", "--cost-budget", "1000000000000"), "cost_budget must be at most"),
        (("--tenant", "acme", "--cost-budget", "0.0000001"), "at most 6 decimal places"),
    ],
)
def test_set_limits_errors(acme, args, message):
    with pytest.raises(CommandError, match=message):
        run("set_limits", *args)


def test_a_bad_limit_on_the_command_line_is_a_usage_error_not_a_traceback():
    """Found by hand: ``manage.py set_limits acme --rpm -5`` printed a traceback (the check raised CommandError
    inside argparse); it is argparse's error now, with the usage and exit status 2."""
    done = subprocess.run([sys.executable, "manage.py", "set_limits", "--tenant", "acme", "--rpm", "-5"],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "argument --rpm: a limit must be at least 1" in done.stderr


def test_who_may_set_limits(acme, django_user_model):
    key = services.issue_key(acme.tenant, actor=acme.member).key
    with pytest.raises(PermissionDenied):
        services.set_limits(key, Limits(rpm=1), actor=acme.member)  # members: not even their own key's
    services.set_limits(key, Limits(rpm=1), actor=acme.owner)
    with pytest.raises(PermissionDenied):
        services.set_limits(acme.tenant, Limits(rpm=1), actor=acme.owner)  # owners cannot lift their tenant's
    services.set_limits(acme.tenant, Limits(rpm=1), actor=django_user_model.objects.create_superuser("op", "", "pw"))
    with pytest.raises(ValidationError):
        services.set_limits(acme.tenant, Limits(max_streams=1))
    with pytest.raises(ValueError):
        Limits(rpm=-1)


# --- the console -------------------------------------------------------------------------------------------


def test_limits_page_everyone_reads_only_operators_change_the_tenants(client, acme, django_user_model):
    services.set_limits(acme.tenant, Limits(rpm=100, budget=5000))
    client.force_login(acme.viewer)
    page = client.get("/console/t/acme/limits/").content.decode()
    assert 'id="tenant-limits"' in page and "5,000 tokens per month" in page and "<form" not in page.split("Keys")[0]
    client.force_login(acme.owner)
    assert client.post("/console/t/acme/limits/", {"rpm": "1", "budget_period": "month"}).status_code == 403
    assert Tenant.objects.get(pk=acme.tenant.pk).rpm_limit == 100
    client.force_login(django_user_model.objects.create_superuser("op", "", "pw"))
    response = client.post("/console/t/acme/limits/", {"rpm": "", "tpm": "2000", "budget": "", "budget_period": "day",
                                                       "cost_budget": "25.5"})  # fmt: skip
    assert response.status_code == 302
    assert Limits.of(Tenant.objects.get(pk=acme.tenant.pk)) == Limits(tpm=2000, budget_period="day", cost_budget="25.5")
    page = client.get("/console/t/acme/limits/").content.decode()
    assert "25.5 USD per day: <strong>0</strong> spent" in page


def test_admins_set_a_keys_limits_on_its_page(client, acme, globex, outsider):
    issued = services.issue_key(acme.tenant, name="app")
    url = f"/console/t/acme/keys/{issued.key.pk}/limits/"
    form = {"rpm": "30", "tpm": "", "budget": "1000", "budget_period": "month", "max_streams": "3"}
    for user, status in ((outsider, 404), (globex.owner, 404), (acme.viewer, 403), (acme.member, 403)):
        client.force_login(user)
        assert client.post(url, form).status_code == status, user
    assert Limits.of(ApiKey.objects.get(pk=issued.key.pk)) == Limits()
    client.force_login(acme.owner)
    assert client.post(url, form).status_code == 302
    assert authenticate_secret(issued.secret).limits == Limits(rpm=30, budget=1000, max_streams=3)
    page = client.get(f"/console/t/acme/keys/{issued.key.pk}/").content.decode()
    assert 'id="key-limits"' in page and "1000 tokens per month: <strong>0</strong> used" in page
    bad = client.post(url, {**form, "rpm": "-4"}, follow=True).content.decode()
    assert "Limits not saved" in bad
