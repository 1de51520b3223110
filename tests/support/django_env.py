"""Django in a benchmark's own process, on the hub's settings (the tests get theirs from pytest-django)."""

from __future__ import annotations

import os
import sys

from tests.support import ROOT


def setup_django(env: dict[str, str]) -> None:
    """Set up Django with the hub's settings from ``env`` (``HUB_*``, read by ``hub/env.py``) over this process's
    environment. A database or Redis URL of the calling shell that ``env`` does not set is dropped (SQLite, the
    file cache), and the database is one plain connection rather than a pool."""
    for name in ("HUB_DATABASE_URL", "HUB_REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.update(env)
    os.environ["HUB_DB_POOL"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
