"""Test settings: defaults for the test environment, then the one real settings module.

Only defaults are set here (``setdefault``): ``make test`` (tests/services.sh) sets HUB_DATABASE_URL and
HUB_REDIS_URL to the machine's PostgreSQL and Redis, as CI does; without them (a bare ``pytest``) the suite runs
on SQLite and the file cache, and the tests that cut PostgreSQL fail with that reason. The live-server
fixtures hand these same variables to the server subprocess.
"""

import os
import secrets
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
os.environ.setdefault("HUB_ENV", "test")
os.environ.setdefault("HUB_DATA_DIR", str(_root / ".hub" / "test"))
# A fresh namespace per run, in the cache, the limit counters, the channel layer and the Celery queue: neither a
# hub running on the same Redis nor an earlier or concurrent run leaks in (tests/conftest.py clears only it).
os.environ.setdefault("HUB_CACHE_PREFIX", "test-" + secrets.token_hex(4))
os.environ.setdefault("HUB_CELERY_QUEUE", os.environ["HUB_CACHE_PREFIX"] + "-celery")
os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")

from hub.settings import *  # noqa: E402,F403

# Fixtures create many users; the production hasher's 1M PBKDF2 rounds would dominate the run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
