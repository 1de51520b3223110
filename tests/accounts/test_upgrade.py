"""Upgrades: every model change has its migration, and a database the previous release created, with data in
it, migrates forward and serves the same tenants, keys, limits and usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.core.management import call_command

from tests.support import ROOT

# The accounts schema of the last release (what main served before this one's migrations): a database it
# created must migrate forward. Move it on when a release ships new migrations.
PREVIOUS_RELEASE = "0005_limits"


def test_every_model_change_has_its_migration(db):
    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=0)
    except SystemExit as exit_:  # makemigrations --check exits 1 when a migration is missing
        pytest.fail(f"models changed without a migration (makemigrations --check exited {exit_.code})")


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def fresh_database(tmp_path):
    """An empty database of the kind the suite runs on: SQLite in a new data directory, or a new PostgreSQL
    database beside the test one."""
    db = settings.DATABASES["default"]
    env = {"HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_REDIS_URL": ""}
    if db["ENGINE"].endswith("sqlite3"):
        yield env
        return
    import psycopg

    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    server = f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={db['USER']} dbname=postgres"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            **env,
            "HUB_DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}",
        }
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_previous_release_database_migrates_forward_with_its_data(fresh_database):
    env = fresh_database
    _manage(env, "migrate", "accounts", PREVIOUS_RELEASE, "--no-input")  # the old release's schema
    _manage(env, "migrate", "auth", "--no-input")
    _manage(env, "shell", "-c", f"from tests.support.upgrade_steps import populate; populate({PREVIOUS_RELEASE!r})")
    plan = _manage(env, "migrate", "--plan")
    assert "accounts." in plan  # there is something to migrate
    _manage(env, "migrate", "--no-input")
    out = _manage(env, "shell", "-c", "from tests.support.upgrade_steps import check; check()")
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen == {
        "tenant_rpm": 600,
        "key_models": ["chat-small"],  # embed-small: no longer served after today's sync, so not routable
        "key_limits": [5000, 10**6, "day"],
        "usage_rows": 3,
        "reports": 1,
        "members": [["owner", "owner"]],
        "enabled": {"chat-small": True, "embed-small": False},
        "deployments": 1,
    }
