"""Run inside ``manage.py shell`` by ``test_upgrade.py``: fill a database at the previous release's schema
with the models of that schema (``populate``), and after ``migrate`` read it back with today's code (``check``).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

SECRET = "sk-hub-UPGRADE1" + "s" * 40  # a key issued by the previous release (only its hash is stored)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def populate(release: str) -> None:
    from accounts.keys import hash_secret

    apps = MigrationExecutor(connection).loader.project_state(("accounts", release)).apps
    model = apps.get_model("accounts", "ServedModel")
    tenant = apps.get_model("accounts", "Tenant").objects.create(slug="acme", name="Acme", rpm_limit=600)
    for model_id, kind in (("chat-small", "chat"), ("embed-small", "embedding")):
        served = model.objects.create(id=model_id, kind=kind, max_sequence_length=512)
        apps.get_model("accounts", "Deployment").objects.create(model=served, base_url="http://127.0.0.1:8100/v1")
        apps.get_model("accounts", "TenantEntitlement").objects.create(tenant=tenant, model=served)
    user = apps.get_model("auth", "User").objects.create(username="owner", password="!")
    apps.get_model("accounts", "Membership").objects.create(user=user, tenant=tenant, role="owner")
    key = apps.get_model("accounts", "ApiKey").objects.create(
        tenant=tenant, name="old", prefix=SECRET[:15], secret_hash=hash_secret(SECRET), all_models=True,
        tpm_limit=5000, token_budget=10**6, budget_period="day",
    )  # fmt: skip
    record = apps.get_model("accounts", "UsageRecord")
    for i in range(3):
        record.objects.create(
            request_id=f"r{i}", tenant=tenant, api_key=key, model="embed-small", route="embeddings",
            prompt_tokens=10, total_tokens=10, status_code=200, duration_ms=5, created_at=NOW,
        )  # fmt: skip
    apps.get_model("accounts", "UsageReport").objects.create(
        tenant=tenant, month=NOW.date().replace(day=1), csv=b"day,requests\n", chart_png=b"\x89PNG"
    )


def check() -> None:
    """What today's code sees in the migrated database, as JSON on the last line of stdout."""
    from accounts import services
    from accounts.authn import authenticate_secret
    from accounts.models import ApiKey, Deployment, ServedModel, Tenant, UsageRecord, UsageReport

    # today's start-up sync on the old data: the embedding model is no longer served
    services.sync_deployment("http://127.0.0.1:8100/v1", [{"id": "chat-small", "kind": "chat"}])
    ctx = authenticate_secret(SECRET)  # the old key, by its old hash
    key = ApiKey.objects.get(prefix=SECRET[:15])
    json.dump({
        "tenant_rpm": Tenant.objects.get(slug="acme").rpm_limit,
        "key_models": sorted(ctx.model_ids),
        "key_limits": [key.tpm_limit, key.token_budget, key.budget_period],
        "usage_rows": UsageRecord.objects.filter(model="embed-small").count(),
        "reports": UsageReport.objects.count(),
        "members": list(Tenant.objects.get(slug="acme").memberships.values_list("user__username", "role")),
        "enabled": dict(ServedModel.objects.values_list("id", "enabled")),
        "deployments": Deployment.objects.filter(enabled=True).count(),
    }, sys.stdout)  # fmt: skip
    print()
