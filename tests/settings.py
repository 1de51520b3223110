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
# Webhooks' retries come after a fifth of a second (their receivers: tests/support/webhooks.py).
os.environ.setdefault("HUB_WEBHOOK_RETRY_SECONDS", "0.2")
# A pytest-xdist worker inherits the controller's environment (set above, before the workers start) and is a run of
# its own: its own data directory (the spool, the file cache), key prefix and Celery queue. HUB_TEST_WORKER marks
# them done, so a subprocess that loads these settings again (a live hub) keeps its worker's.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker and os.environ.get("HUB_TEST_WORKER") != _worker:
    os.environ["HUB_TEST_WORKER"] = _worker
    os.environ["HUB_DATA_DIR"] = str(Path(os.environ["HUB_DATA_DIR"]) / _worker)
    os.environ["HUB_CACHE_PREFIX"] += "-" + _worker
    os.environ["HUB_CELERY_QUEUE"] = os.environ["HUB_CACHE_PREFIX"] + "-celery"

from hub.settings import *  # noqa: E402,F403

# Fixtures create many users; the production hasher's 1M PBKDF2 rounds would dominate the run.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
