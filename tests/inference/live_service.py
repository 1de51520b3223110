"""A live ``python -m inference serve`` for the tests that talk to it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def model_flags(*specs: str) -> list[str]:
    """``--model ID=SOURCE:KIND`` for each spec."""
    return [arg for spec in specs for arg in ("--model", spec)]


@dataclass
class Service:
    process: subprocess.Popen
    url: str
    log_path: str

    def output(self) -> str:
        return Path(self.log_path).read_text()


def start_service(*args: str, timeout: float = 600, env: dict[str, str] | None = None, port: int = 0) -> Service:
    """Start the service with ``args`` (models...) and ``env`` added to the environment on ``port`` (0: a free
    loopback port) and wait until it answers /health."""
    if not port:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    log = tempfile.NamedTemporaryFile("w+", prefix="inference-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "inference", "serve", "--port", str(port), *args]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})  # fmt: skip
    service = Service(process, f"http://127.0.0.1:{port}", log.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, service.output()
        try:
            if httpx.get(f"{service.url}/health", timeout=1).status_code == 200:
                return service
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise AssertionError(f"the inference service did not answer /health within {timeout}s:\n{service.output()}")


@contextmanager
def inference_service(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the service on a free loopback port with ``args`` (models...) and ``env`` added to the environment,
    yield its root URL, stop it, and fail if it logged a traceback."""
    service = start_service(*args, timeout=timeout, env=env)
    try:
        yield service.url
    finally:
        service.process.terminate()
        service.process.wait(timeout=60)
    output = service.output()
    assert "Traceback" not in output, output
