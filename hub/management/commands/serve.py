"""``python manage.py serve``: migrate, set up the demo on first start, print how to call it, serve."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from urllib.parse import urlsplit

import uvicorn
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from accounts.models import ModelKind, ServedModel
from accounts.services import sync_deployment
from hub import logs
from hub.bootstrap import ADMIN_USERNAME, DEMO_TENANT, bootstrap
from hub.env import env_int, env_str
from hub.inference_client import InferenceUnavailable, load_times, model_cards, wait_ready
from hub.metrics import MULTIPROC_ENV


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the hub dies, however the hub dies (uvicorn
    re-raises SIGTERM after its shutdown, so no ``finally`` of ours runs then)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _port_taken(host: str, port: int) -> bool:
    """Whether binding host:port fails because something listens there (checked before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


log = logging.getLogger(__name__)

SNIPPET = """\
from openai import OpenAI
client = OpenAI(base_url="{base_url}", api_key="{key}")
for model in client.models.list().data:
    print(model.id, model.meta_data)
print(client.models.retrieve("smollm2-135m-instruct"))"""

SPEECH_SNIPPET = """\
with open("speech.mp3", "rb") as audio:  # wav, mp3, m4a, ogg, webm or flac, up to 25 MB
    print(client.audio.transcriptions.create(model="{model}", file=audio).text)"""
VOICE_SNIPPET = """\
client.audio.speech.create(model="{model}", voice="alloy", input="Hello from LLM Hub.").write_to_file("hello.mp3")"""


class Command(BaseCommand):
    help = "Start the hub (embedded default: SQLite, in-process fallbacks) on HUB_HOST:HUB_PORT."

    def add_arguments(self, parser):
        parser.add_argument("--no-bootstrap", action="store_true", help="skip migrations and demo set-up")
        parser.add_argument(
            "--workers",
            type=int,
            default=env_int("HUB_WORKERS", 1, min_value=1),
            help="hub processes on this host (uvicorn's workers; default HUB_WORKERS or 1). Each holds its own "
            "database pool of up to HUB_DB_POOL_MAX_SIZE connections: hosts x workers x pool size must stay "
            "under PostgreSQL's max_connections",
        )
        parser.add_argument(
            "--with-inference",
            action="store_true",
            help="start the inference service (python -m inference serve) beside the hub and sync its models",
        )

    def start_inference(self, inference_url: str) -> subprocess.Popen:
        """The embedded default's inference service: a child process on HUB_INFERENCE_URL's port."""
        port = urlsplit(inference_url).port or 8100
        # its tally kept beside the database: calls running when both processes were killed are metered on restart
        args = [sys.executable, "-m", "inference", "serve", "--port", str(port),
                "--tally-path", str(settings.DATA_DIR / "inference-tally.sqlite3")]  # fmt: skip
        args += shlex.split(env_str("HUB_INFERENCE_ARGS", ""))
        log_path = settings.DATA_DIR / "inference.log"
        self.stdout.write(f"starting the inference service on :{port} (log: {log_path}); the first start converts")
        self.stdout.write(
            "and quantizes the packaged models into the cache (a minute or two), later starts take seconds..."
        )
        self.stdout.flush()
        log = open(log_path, "a")  # noqa: SIM115 - handed to the child for its whole life
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        child = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)
        try:
            wait_ready(
                inference_url, env_int("HUB_INFERENCE_START_TIMEOUT", 900, min_value=1), lambda: child.poll() is None
            )
        except InferenceUnavailable as exc:
            child.kill()
            raise CommandError(f"{exc}; see {log_path}") from None
        return child

    def check_ports(self, inference_url: str, with_inference: bool) -> None:
        """One line naming the port and the variable that moves it, instead of a traceback from deep inside."""
        if _port_taken(settings.HUB_HOST, settings.HUB_PORT):
            raise CommandError(
                f"port {settings.HUB_PORT} on {settings.HUB_HOST} is already in use (another hub?): "
                f"set HUB_PORT to a free one, e.g. HUB_PORT={settings.HUB_PORT + 1} make run"
            )
        parts = urlsplit(inference_url)
        if with_inference and _port_taken(parts.hostname or "127.0.0.1", parts.port or 8100):
            moved = parts._replace(netloc=f"{parts.hostname}:{(parts.port or 8100) + 1}").geturl()
            raise CommandError(
                f"port {parts.port or 8100} (the inference service) is already in use: "
                f"set HUB_INFERENCE_URL to a free one, e.g. HUB_INFERENCE_URL={moved} make run"
            )

    def handle(self, no_bootstrap, with_inference, workers, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if workers > 1 and not settings.REDIS_URL:  # limits and the auth cache's invalidation live in Redis
            raise CommandError("--workers > 1 needs HUB_REDIS_URL: the hub processes share limits through Redis")
        base_url = settings.HUB_PUBLIC_URL.rstrip("/") + "/v1"
        inference_url = env_str("HUB_INFERENCE_URL", "http://127.0.0.1:8100/v1").rstrip("/")
        self.check_ports(inference_url, with_inference)
        first = None
        child = None
        if not no_bootstrap:
            call_command("migrate", interactive=False, verbosity=0)
        if with_inference:
            started = time.monotonic()
            child = self.start_inference(inference_url)
            api_key = env_str("INFERENCE_API_KEY", "")  # the child reads the same variable
            synced = sync_deployment(inference_url, model_cards(inference_url, api_key), api_key)
            loads = load_times(inference_url)
            shown = ", ".join(f"{m.id} ({loads[m.id]:.1f} s)" if m.id in loads else m.id for m in synced)
            ready = f"inference service ready in {time.monotonic() - started:.1f} s: {shown}"
            if settings.HUB_LOG_FORMAT == "json":
                log.info(ready)
            else:
                self.stdout.write(ready)
        if not no_bootstrap:
            first = bootstrap(inference_url)
        banner: list[str] = []  # HUB_LOG_FORMAT=json: the banner is one record of the log's, not lines of text
        out = banner.append if settings.HUB_LOG_FORMAT == "json" else self.stdout.write
        out("")
        out(f"LLM Hub: {settings.HUB_PUBLIC_URL}")
        out(f"  base_url     {base_url}")
        if first:
            out(f"  api_key      {first.api_key}")
            out("               (shown once: only its hash is stored; save it now)")
            password = first.admin_password or "(from HUB_ADMIN_PASSWORD)"
            out(f"  admin        {settings.HUB_PUBLIC_URL}/admin/  user {ADMIN_USERNAME}  password {password}")
            key = first.api_key
        else:
            out("  api_key      the demo key was printed on first start; issue another with")
            out(f"               .venv/bin/python manage.py create_api_key {DEMO_TENANT}")
            out(f"  admin        {settings.HUB_PUBLIC_URL}/admin/")
            key = "YOUR_KEY"
        out("")
        out("Call it with the OpenAI SDK (pip install openai):")
        out("")
        out(SNIPPET.format(base_url=base_url, key=key))
        out("")
        for kind, intro, snippet in ((ModelKind.AUDIO, "Transcribe speech", SPEECH_SNIPPET),
                                     (ModelKind.TTS, "Speak text", VOICE_SNIPPET)):  # fmt: skip
            model = None
            with suppress(DatabaseError):  # --no-bootstrap on a database not migrated yet: no example, no crash
                model = ServedModel.objects.filter(kind=kind, enabled=True).order_by("id").first()
            if model is not None:
                out(f"{intro} with the same client:")
                out("")
                out(snippet.format(model=model.id))
                out("")
        self.stdout.flush()
        if child is not None:
            out(f"Inference service (direct, no keys): {inference_url}")
            out("")
        if banner:
            log.info("\n".join(banner).strip())
        beat, stopped_by, previous = None, [], None
        if settings.CELERY_TASK_ALWAYS_EAGER:  # no broker: the beat schedule (and batches) run in this process
            from hub.beat import InProcessBeat

            beat = InProcessBeat()
            beat.start()
            # uvicorn raises the signal that stopped it again once it has stopped: SIGTERM's default would end this
            # process before the batches are handed back below, so it is noted here and raised after that (SIGINT's
            # KeyboardInterrupt uvicorn.run swallows itself)
            previous = signal.signal(signal.SIGTERM, lambda signum, _: stopped_by.append(signum))
        metrics_dir = None
        if workers > 1 and not os.environ.get(MULTIPROC_ENV):  # each worker's metrics in files, summed by /metrics
            metrics_dir = tempfile.mkdtemp(prefix="hub-metrics-")
            os.environ[MULTIPROC_ENV] = metrics_dir  # read by the workers uvicorn spawns, as they import it
        try:
            uvicorn.run(
                "hub.asgi:application",
                host=settings.HUB_HOST,
                port=settings.HUB_PORT,
                lifespan="off",
                log_level=settings.LOG_LEVEL.lower(),
                **({"log_config": config} if (config := logs.uvicorn_config(settings.HUB_LOG_FORMAT)) else {}),
                proxy_headers=True,
                workers=workers,  # > 1: uvicorn's supervisor forks them (each imports hub.asgi itself)
                # streams in flight end with an error event at the grace period's end (hub/shutdown.py): then close
                timeout_graceful_shutdown=settings.HUB_SHUTDOWN_GRACE_SECONDS + 5,
            )
        finally:
            if beat is not None:
                beat.stop()
                from hub.batches import runs

                # the batches and background responses run here: handed back, in one grace
                runs.leave_all(timeout=settings.HUB_SHUTDOWN_GRACE_SECONDS)
            if child is not None:
                child.terminate()
                child.wait(timeout=30)
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            if stopped_by:
                signal.raise_signal(signal.SIGTERM)
