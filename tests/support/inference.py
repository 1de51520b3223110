"""A live ``python -m inference serve`` for the tests that talk to it over HTTP."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.markers import require
from tests.support.processes import Process, free_port


def model_flags(*specs: str) -> list[str]:
    """``--model ID=SOURCE:KIND`` for each spec."""
    return [arg for spec in specs for arg in ("--model", spec)]


@dataclass
class Service:
    process: Process
    url: str

    def output(self) -> str:
        return self.process.output()


def start_service(*args: str, timeout: float = 600, env: dict[str, str] | None = None, port: int = 0) -> Service:
    """Start the service with ``args`` (models...) and ``env`` added to the environment on ``port`` (0: a free
    loopback port) and wait until it answers /health."""
    require("live", "starts an inference service")
    config = args[args.index("--config") + 1] if "--config" in args else None
    if any("packaged:" in arg for arg in args) or (config and "packaged:" in Path(config).read_text()):
        require("real_model", "serves a packaged model")
    port = port or free_port()
    cmd = [sys.executable, "-m", "inference", "serve", "--port", str(port), *args]
    process = Process("inference", cmd, {**os.environ, **(env or {})})
    service = Service(process, f"http://127.0.0.1:{port}")
    process.wait_healthy(f"{service.url}/health", timeout)
    return service


@contextmanager
def inference_service(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the service on a free loopback port with ``args`` (models...) and ``env`` added to the environment,
    yield its root URL, stop it, and fail if it logged a traceback."""
    service = start_service(*args, timeout=timeout, env=env)
    try:
        yield service.url
    finally:
        output = service.process.stop(timeout=60)
    assert "Traceback" not in output, output


@contextmanager
def guard_service(root: Path, model_id: str) -> Iterator[str]:
    """A service serving a tiny random-weight guard (Llama Guard 3's template, ``checkpoints.guard_checkpoint``) as
    ``model_id`` (kind moderation), written under ``root``; yields its ``/v1`` URL."""
    from tests.support.checkpoints import guard_checkpoint

    with inference_service(*model_flags(f"{model_id}={guard_checkpoint(root / 'guard')}:moderation")) as url:
        yield f"{url}/v1"


@contextmanager
def tts_service(root: Path, model_id: str) -> Iterator[str]:
    """A service serving a tiny random-weight VITS voice (``vits.vits_checkpoint``) as ``model_id`` (kind tts),
    written under ``root``; yields its ``/v1`` URL."""
    from tests.support.vits import vits_checkpoint

    with inference_service(*model_flags(f"{model_id}={vits_checkpoint(root / 'voice')}:tts")) as url:
        yield f"{url}/v1"
