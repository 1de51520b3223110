"""The one reader of the environment for the hub.

Every setting comes from a ``HUB_*`` variable through these helpers. A value that
is present but malformed raises ``ImproperlyConfigured`` naming the variable, so a
typo in a deployment fails at start-up instead of silently using a default.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = _raw(name)
    if value is None or value == "":
        if required:
            raise ImproperlyConfigured(f"{name} must be set")
        return default
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_int(name: str, default: int, *, min_value: int | None = None, max_value: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if min_value is not None and number < min_value:
        raise ImproperlyConfigured(f"{name} must be >= {min_value}, got {number}")
    if max_value is not None and number > max_value:
        raise ImproperlyConfigured(f"{name} must be <= {max_value}, got {number}")
    return number


def env_float(name: str, default: float, *, min_value: float | None = None) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if number != number or (min_value is not None and number < min_value):  # NaN compares unequal to itself
        raise ImproperlyConfigured(f"{name} must be >= {min_value}, got {value!r}")
    return number


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    assert value is not None
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_database_url(name: str, url: str) -> dict:
    """``postgres://user:pass@host:5432/db?sslmode=require``, ``sqlite:////abs/path.sqlite3`` (four
    slashes: absolute) or ``sqlite:///relative.sqlite3``."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "sqlite":
        path = unquote(parts.path)[1:]  # drop the separator after the (empty) host
        if not path:
            raise ImproperlyConfigured(f"{name}: sqlite URL needs a file path, e.g. sqlite:////var/lib/hub/db.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": options}
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        db_name = unquote(parts.path.lstrip("/"))
        if not db_name:
            raise ImproperlyConfigured(
                f"{name}: PostgreSQL URL needs a database name, e.g. postgres://127.0.0.1:5432/hub"
            )
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name}: bad port in {url!r}") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"{name} must start with postgres:// or sqlite:///, got scheme {parts.scheme!r}")


def check_redis_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"{name} must start with redis://, rediss:// or unix://, got {url!r}")
    return url
