"""Shared fixtures: the model catalog, tenants with owner / member / outsider, keys, a live hub.

The live hub is a real ``manage.py serve`` subprocess on a free loopback port, using the test
database and the same cache as the test process, so keys created here authenticate there and a
revocation made here reaches it through the shared cache (Redis in CI).
"""

from __future__ import annotations

import os

# Triton kernels run on the CPU only under its interpreter, which must be chosen before any kernel module
# is imported. On a GPU machine, INFERENCE_TEST_DEVICE=cuda runs them compiled.
if os.environ.get("INFERENCE_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache

from accounts import services
from accounts.models import ModelKind, Role

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config):
    # CI must run on the real services: a missing variable is an error, never a skip.
    if IN_CI:
        missing = [name for name in ("HUB_DATABASE_URL", "HUB_REDIS_URL") if not os.environ.get(name)]
        if missing:
            raise pytest.UsageError(f"CI=true but {', '.join(missing)} not set: refusing to run without them")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, and before it is dropped, every other session on it ended: connections
    opened by this process's other threads (asgiref's executor, in-process servers) are never closed by
    Django, and PostgreSQL refuses to drop a database in use ("being accessed by other users")."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


def clear_run_cache() -> None:
    """Empty this run's cache. On Redis only this run's keys (``HUB_CACHE_PREFIX``: the cache, the limit counters,
    the channel layer), never the whole database, which a live hub or another run may be using."""
    if not settings.REDIS_URL:
        cache.clear()  # the file cache under this run's HUB_DATA_DIR
        return
    client = cache._cache.get_client(write=True)
    keys = list(client.scan_iter(match=f"{settings.HUB_CACHE_PREFIX}:*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_run_cache()
    yield


@pytest.fixture(scope="session", autouse=True)
def _run_keys_removed():
    """The run leaves nothing in a shared Redis: its keys and its Celery queue go when it ends."""
    yield
    if settings.REDIS_URL:
        clear_run_cache()
        cache._cache.get_client(write=True).delete(settings.CELERY_TASK_DEFAULT_QUEUE)


def redis_server(port: int) -> subprocess.Popen:
    """A private redis-server on ``port`` (nothing kept on disk), started and answering."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: these machines have it (Debian's redis-server)")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if ping.stdout.strip() == "PONG":
            return process
        time.sleep(0.1)
    process.kill()
    pytest.fail("redis-server did not start")


@pytest.fixture(scope="session")
def redis_url():
    """The suite's Redis (``HUB_REDIS_URL``, as ``make test`` and CI set it), else a private one for this run."""
    if settings.REDIS_URL:
        yield settings.REDIS_URL
        return
    process = redis_server(port := free_port())
    yield f"redis://127.0.0.1:{port}/0"
    process.kill()
    process.wait()


# --- catalog and tenants --------------------------------------------------------------------


@pytest.fixture
def catalog(db):
    """Four models: a chat, a completion, an embedding and a vision model."""
    return {
        "chat": services.register_model("chat-small", ModelKind.CHAT, max_sequence_length=8192, max_output_length=4096),
        "completion": services.register_model(
            "completion-small", ModelKind.COMPLETION, max_sequence_length=32768, max_output_length=8192
        ),
        "embedding": services.register_model(
            "embed-small", ModelKind.EMBEDDING, max_sequence_length=512, hidden_size=384
        ),
        "vision": services.register_model(
            "vision-small", ModelKind.VISION, max_sequence_length=4096, max_output_length=1024
        ),
    }


@dataclass
class TenantSetup:
    tenant: object
    owner: object
    member: object
    viewer: object


def _user(username: str):
    return get_user_model().objects.create_user(username, password="pw-" + username)


@pytest.fixture
def acme(catalog):
    """Tenant A: entitled to chat, completion, embedding and vision; owner, member, viewer."""
    tenant = services.create_tenant("acme", "Acme")
    services.grant_models(tenant, ["chat-small", "completion-small", "embed-small", "vision-small"])
    setup = TenantSetup(tenant, _user("acme-owner"), _user("acme-member"), _user("acme-viewer"))
    services.add_member(tenant, setup.owner, Role.OWNER)
    services.add_member(tenant, setup.member, Role.MEMBER)
    services.add_member(tenant, setup.viewer, Role.VIEWER)
    return setup


@pytest.fixture
def globex(catalog):
    """Tenant B: entitled to the completion model only."""
    tenant = services.create_tenant("globex", "Globex")
    services.grant_models(tenant, ["completion-small"])
    setup = TenantSetup(tenant, _user("globex-owner"), _user("globex-member"), _user("globex-viewer"))
    services.add_member(tenant, setup.owner, Role.OWNER)
    services.add_member(tenant, setup.member, Role.MEMBER)
    services.add_member(tenant, setup.viewer, Role.VIEWER)
    return setup


@pytest.fixture
def outsider(db):
    """A user with no membership anywhere."""
    return _user("outsider")


# --- the live hub ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url_for_subprocess() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def manage(*args: str) -> subprocess.CompletedProcess:
    """Run a management command in its own process, on the test database."""
    env = {**os.environ, "HUB_DATABASE_URL": database_url_for_subprocess()}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def run_on_worker(send: Callable[[], object], done: Callable[[], bool], timeout: float = 60) -> str:
    """Start a Celery worker on the configured broker (Redis) and the test database, ``send`` a task and wait
    (up to ``timeout``) until ``done()``; returns the worker's output, for the failure message."""
    env = {**os.environ, "HUB_DATABASE_URL": database_url_for_subprocess()}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hub", "worker", "--pool", "solo", "--concurrency", "1",
         "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        send()
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            time.sleep(0.25)
    finally:
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
    return output


@dataclass
class LiveHub:
    url: str
    process: subprocess.Popen

    def api(self, base: str = "v1") -> str:
        return f"{self.url}/{base}"


def start_hub(
    env_overrides: dict[str, str],
    *args: str,
    timeout: float = 60,
    command: list[str] | None = None,
    port: int | None = None,
) -> tuple[subprocess.Popen, str]:
    """Start ``manage.py serve`` (or ``command``, e.g. ``make run``, in its own process group as a terminal
    would start it); its output goes to a file (a full pipe would stall the server)."""
    port = port or free_port()
    env = {**os.environ, "HUB_PORT": str(port), "HUB_HOST": "127.0.0.1", **env_overrides}
    log = tempfile.NamedTemporaryFile("w+", prefix=f"hub-{port}-", suffix=".log", delete=False)
    process = subprocess.Popen(
        command or [sys.executable, "manage.py", "serve", *args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=command is not None,
    )  # fmt: skip
    process.log_path = log.name
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hub exited with {process.returncode}:\n{hub_output(process)}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"hub did not answer /health within {timeout}s:\n{hub_output(process)}")


def hub_output(process: subprocess.Popen) -> str:
    return Path(process.log_path).read_text()


def stop_hub(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    output = hub_output(process)
    Path(process.log_path).unlink(missing_ok=True)
    return output


@pytest.fixture(scope="session")
def live_hub(django_db_setup, django_db_blocker):
    """One hub server for the session, on the test database (data must be committed: use
    ``transactional_db`` in tests that call it)."""
    process, url = start_hub({"HUB_DATABASE_URL": database_url_for_subprocess()}, "--no-bootstrap")
    yield LiveHub(url=url, process=process)
    output = stop_hub(process)
    assert "Traceback" not in output, f"the live hub logged a traceback:\n{output}"
