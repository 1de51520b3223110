"""Settings come from the environment through helpers that fail loudly; the real services are used."""

import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from hub import env
from tests.support import IN_CI, ROOT


@pytest.mark.parametrize(
    "helper, value",
    [
        (lambda: env.env_int("X_INT", 1), "twelve"),
        (lambda: env.env_int("X_INT", 1, min_value=5), "3"),
        (lambda: env.env_bool("X_BOOL"), "maybe"),
        (lambda: env.env_choice("X_CHOICE", "a", ("a", "b")), "c"),
    ],
)
def test_bad_values_raise(monkeypatch, helper, value):
    for name in ("X_INT", "X_BOOL", "X_CHOICE"):
        monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured):
        helper()


def test_good_values_parse(monkeypatch):
    monkeypatch.setenv("X_INT", " 42 ")
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_LIST", "a, b,,c")
    assert env.env_int("X_INT", 0) == 42
    assert env.env_bool("X_BOOL") is True
    assert env.env_list("X_LIST", []) == ["a", "b", "c"]
    assert env.env_str("X_MISSING", "d") == "d"


def test_database_urls():
    pg = env.parse_database_url("U", "postgres://u:p%40ss@db.internal:6543/hub?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "db.internal",
        "6543",
        "hub",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert env.parse_database_url("U", "sqlite:////var/lib/hub.sqlite3")["NAME"] == "/var/lib/hub.sqlite3"
    for bad in ["mysql://x/y", "postgres://host:5432/", "sqlite://", "postgres://h:notaport/db"]:
        with pytest.raises(ImproperlyConfigured):
            env.parse_database_url("U", bad)
    with pytest.raises(ImproperlyConfigured):
        env.check_redis_url("R", "http://127.0.0.1:6379")


def _load_settings(extra_env: dict) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-c", "import hub.settings"],
        cwd=ROOT,
        env={**environ, **extra_env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_requires_a_secret_key_and_hosts(tmp_path):
    result = _load_settings({"HUB_ENV": "prod", "HUB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "HUB_SECRET_KEY must be set" in result.stderr
    result = _load_settings({"HUB_ENV": "prod", "HUB_SECRET_KEY": "x" * 40, "HUB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "HUB_ALLOWED_HOSTS" in result.stderr
    ok = _load_settings(
        {
            "HUB_ENV": "prod",
            "HUB_SECRET_KEY": "x" * 40,
            "HUB_ALLOWED_HOSTS": "hub.example",
            "HUB_DATA_DIR": str(tmp_path),
        }
    )
    assert ok.returncode == 0, ok.stderr


def test_a_typo_fails_at_start(tmp_path):
    result = _load_settings({"HUB_PORT": "80a", "HUB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "HUB_PORT must be an integer" in result.stderr
    result = _load_settings({"HUB_VECTOR_STORE_KEYWORD_LANGUAGE": "klingon", "HUB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "HUB_VECTOR_STORE_KEYWORD_LANGUAGE must be one of none, arabic" in result.stderr
    result = _load_settings({"HUB_OCR_LANGUAGES": "eng+klingon", "HUB_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "HUB_OCR_LANGUAGES: this machine's Tesseract lacks klingon" in result.stderr


def test_debug_is_off_unless_asked():
    assert settings.DEBUG is False


def test_embedded_default_is_sqlite_and_in_process(tmp_path):
    code = (
        "import hub.settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CACHES['default']['BACKEND'], "
        "s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_TASK_ALWAYS_EAGER)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**environ, "HUB_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [
        "django.db.backends.sqlite3",
        "django.core.cache.backends.filebased.FileBasedCache",
        "channels.layers.InMemoryChannelLayer",
        "True",
    ]


@pytest.mark.django_db
def test_the_configured_database_is_the_one_used():
    from django.db import connection

    expected = "postgresql" if os.environ.get("HUB_DATABASE_URL", "").startswith("postgres") else "sqlite"
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()" if expected == "postgresql" else "SELECT sqlite_version()")
        version = cursor.fetchone()[0]
    assert ("PostgreSQL" in version) if expected == "postgresql" else version[0].isdigit()


def test_the_configured_cache_channel_layer_and_broker_are_the_ones_used():
    import asyncio

    from channels.layers import get_channel_layer
    from django.core.cache import cache

    redis_url = os.environ.get("HUB_REDIS_URL")
    layer = get_channel_layer()
    if redis_url:
        assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
        assert type(layer).__name__ == "RedisChannelLayer"
        assert settings.CELERY_BROKER_URL == redis_url and settings.CELERY_TASK_ALWAYS_EAGER is False
        import redis

        client = redis.Redis.from_url(redis_url)
        cache.set("probe", "through-redis", timeout=30)
        # The value is really in Redis, under the hub's prefix, not in some local fallback.
        assert any(b"probe" in k for k in client.keys(f"{settings.CACHES['default']['KEY_PREFIX']}*"))
    else:
        assert type(layer).__name__ == "InMemoryChannelLayer"
        assert settings.CELERY_TASK_ALWAYS_EAGER is True
        cache.set("probe", "through-file-cache", timeout=30)
    assert cache.get("probe", "").startswith("through-")

    async def round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "probe", "n": 7})
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    assert asyncio.run(round_trip())["n"] == 7


def test_ci_runs_on_postgres_and_redis():
    """In CI the suite must have run on the real services (conftest refuses to start otherwise)."""
    if IN_CI:
        assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
        assert settings.REDIS_URL
    else:
        assert settings.DATABASES["default"]["ENGINE"] in (
            "django.db.backends.postgresql",
            "django.db.backends.sqlite3",
        )


def test_production_sets_hsts_secure_cookies_and_proxy_headers(tmp_path):
    """Django's own deployment check finds nothing to warn about in a production configuration."""
    env = {"HUB_ENV": "prod", "HUB_SECRET_KEY": secrets.token_urlsafe(50), "HUB_ALLOWED_HOSTS": "hub.example",
           "HUB_DATA_DIR": str(tmp_path), "HUB_SSL_REDIRECT": "true", "HUB_HSTS_INCLUDE_SUBDOMAINS": "true",
           "HUB_HSTS_PRELOAD": "true", "DJANGO_SETTINGS_MODULE": "hub.settings"}  # fmt: skip
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    code = (
        "import hub.settings as s; print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_PROXY_SSL_HEADER[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**environ, **env}, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.stdout.split() == ["31536000", "True", "True", "HTTP_X_FORWARDED_PROTO"], out.stderr
    check = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                           env={**environ, **env}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("currency, ok", [("EUR", "eur"), ("dollars", None), ("€", None)])
def test_the_currency_is_a_three_letter_code(tmp_path, currency, ok):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    done = subprocess.run(
        [sys.executable, "-c", "import hub.settings as s; print(s.HUB_CURRENCY)"], cwd=ROOT,
        env={**environ, "HUB_DATA_DIR": str(tmp_path), "HUB_CURRENCY": currency}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    if ok:
        assert done.returncode == 0 and done.stdout.strip() == ok
    else:
        assert done.returncode != 0 and "HUB_CURRENCY must be a three-letter currency code" in done.stderr
