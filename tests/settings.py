"""Test settings: defaults for the test environment, then the one real settings module.

Only defaults are set here (``setdefault``): CI's HUB_DATABASE_URL / HUB_REDIS_URL win, so the
same suite runs on SQLite + file cache locally and on PostgreSQL + Redis in CI. The live-server
fixtures hand these same variables to the server subprocess.
"""

import os
import secrets
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
os.environ.setdefault("HUB_ENV", "test")
os.environ.setdefault("HUB_DATA_DIR", str(_root / ".hub" / "test"))
# A fresh namespace per run: a shared Redis or a dev server's cache never leaks in.
os.environ.setdefault("HUB_CACHE_PREFIX", "test-" + secrets.token_hex(4))
os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")

from hub.settings import *  # noqa: E402,F403

# Fixtures create many users; the production hasher's 1M PBKDF2 rounds would dominate the run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
