"""A transactional test's teardown (``tests/support/flush.py``): every table emptied in one transaction whatever
the order of its foreign keys, the content types and permissions kept as ``migrate`` wrote them."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from accounts import files, services
from tests.support import flush

pytestmark = pytest.mark.django_db(transaction=True)


def counts() -> dict[str, int]:
    return {model._meta.db_table: model.objects.count() for model in apps.get_models() if model._meta.managed}


def test_the_tables_are_emptied_and_migrates_rows_kept(acme, catalog):
    if connection.vendor != "postgresql":
        pytest.fail("the teardown by DELETE is PostgreSQL's: run on HUB_DATABASE_URL (make test sets it)")
    issued = services.issue_key(acme.tenant, name="ci")
    files.create(tenant_id=acme.tenant.pk, api_key_id=issued.key.pk, purpose="user_data", filename="a.txt",
                 content=b"a")  # fmt: skip
    kept = (ContentType.objects.count(), Permission.objects.count())
    filled = {table for table, count in counts().items() if count}
    assert {"accounts_tenant", "accounts_apikey", "auth_user"} <= filled  # rows referencing each other
    flush.empty("default")
    assert {table for table, count in counts().items() if count} == set(flush.KEPT)
    assert (ContentType.objects.count(), Permission.objects.count()) == kept and kept[0] > 0
