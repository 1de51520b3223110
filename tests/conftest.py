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
# Under pytest-xdist the cores are shared out between the workers, and the servers they start inherit their share:
# torch's OpenMP threads spin while they wait, so two processes with a thread for every core each run far slower
# than one (a batch-invariance test took 134 s instead of 18 s).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache

from accounts import services
from accounts.models import ModelKind, Role
from tests.support import IN_CI, flush, interpreter_checks, markers, parallel
from tests.support.fake_service import fake_service
from tests.support.hub import LiveHub, clear_run_cache, database_url_for_subprocess, start_hub, stop_hub
from tests.support.live import FAKE_CHAT, FAKE_EMBED, STORE_RERANKER, STORE_REWRITER, hub_clients, settle
from tests.support.parallel import pytest_configure_node, pytest_xdist_make_scheduler  # noqa: F401 (hooks)
from tests.support.processes import free_port, redis_server


def pytest_configure(config):
    parallel.configure(config)
    flush.install()  # a transactional test's tables emptied by DELETE: ~1 ms, not flush's ~170 ms
    for name, description in markers.MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    if os.environ.get("TRITON_INTERPRET") == "1":
        _interpreter_needs_its_marker()
        interpreter_checks.install()  # interpreted loads and stores: in bounds, no races (the engine's too)
    # CI must run on the real services: a missing variable is an error, never a skip.
    if IN_CI:
        missing = [name for name in ("HUB_DATABASE_URL", "HUB_REDIS_URL") if not os.environ.get(name)]
        if missing:
            raise pytest.UsageError(f"CI=true but {', '.join(missing)} not set: refusing to run without them")


def pytest_unconfigure(config):
    parallel.unconfigure(config)


KERNEL_TESTS = Path(__file__).parent / "kernels"


def _interpreter_needs_its_marker() -> None:
    """A kernel launched under Triton's interpreter fails a test not marked ``interpreter`` (the benchmarks and a
    GPU run, which compile, are untouched)."""
    from triton.runtime.interpreter import InterpretedFunction

    run = InterpretedFunction.run

    def checked(self, *args, grid, warmup, **kwargs):
        markers.require("interpreter", f"runs the Triton kernel {self.fn.__name__} under the interpreter")
        return run(self, *args, grid=grid, warmup=warmup, **kwargs)

    InterpretedFunction.run = checked


def pytest_collection_modifyitems(config, items):
    """The markers that follow from a test's fixtures or place (the others are the modules' ``pytestmark``)."""
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & {"live_hub", "inference_url"}:
            item.add_marker(pytest.mark.live)
        if "inference_url" in fixtures:  # the session's service with the packaged models
            item.add_marker(pytest.mark.real_model)
        if interpreted and KERNEL_TESTS in item.path.parents:
            item.add_marker(pytest.mark.interpreter)
    parallel.publish(config, items)  # under pytest-xdist: the groups these markers make (tests/support/parallel.py)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before the test's fixtures: its markers, which the helpers that start servers or load models check."""
    markers.set_current({mark.name for mark in item.iter_markers()})


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


@pytest.fixture(scope="session")
def live_hub(django_db_setup, django_db_blocker):
    """One hub server for the session, on the test database (data must be committed: use
    ``transactional_db`` in tests that call it)."""
    # compactions' summaries kept short: the packaged chat model writes ~30 tokens a second on this CPU
    # webhooks go to receivers on loopback (tests/support/webhooks.py), the mcp tool to servers there too
    env = {"HUB_DATABASE_URL": database_url_for_subprocess(), "HUB_COMPACTION_MAX_TOKENS": "48",
           "HUB_WEBHOOK_ALLOW_PRIVATE_URLS": "true", "HUB_MCP_ALLOW_PRIVATE_URLS": "true",
           "HUB_FILE_URL_ALLOW_PRIVATE_URLS": "true", "HUB_METRICS_TENANTS": "true",
           "HUB_VECTOR_STORE_RERANK_MODEL": STORE_RERANKER,
           "HUB_VECTOR_STORE_REWRITE_MODEL": STORE_REWRITER}  # fmt: skip
    process, url = start_hub(env, "--no-bootstrap")
    yield LiveHub(url=url, process=process)
    output = stop_hub(process)
    assert "Traceback" not in output, f"the live hub logged a traceback:\n{output}"


# --- the live hub in front of a fake of our service -------------------------------------------------


@pytest.fixture(scope="session")
def fake():
    """A fake of our inference service (``tests/support/fake_service.py``): the gateway's behaviour, no model."""
    with fake_service() as service:
        yield service


@pytest.fixture
def fake_hub(live_hub, fake):
    """The live hub with two models served by ``fake``: ``fake-chat`` (up to 256 tokens out) and ``fake-embed``;
    tenant acme entitled to both, a key for both (``everything``) and one for ``fake-embed`` only."""
    services.register_model(FAKE_CHAT, ModelKind.CHAT, max_sequence_length=4096, max_output_length=256,
                            deployment_url=fake.url)  # fmt: skip
    services.register_model(FAKE_EMBED, ModelKind.EMBEDDING, max_sequence_length=512, hidden_size=8,
                            deployment_url=fake.url)  # fmt: skip
    client = hub_clients(live_hub, services.create_tenant("acme", "Acme"), [FAKE_CHAT, FAKE_EMBED], FAKE_EMBED)
    fake.requests.clear()
    fake.scripts.clear()
    fake.chunk_delay, fake.answer_delay, fake.default_tokens = 0.0, 0.0, 64
    yield client
    settle()
