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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def model_flags(*specs: str) -> list[str]:
    """``--model ID=SOURCE:KIND`` for each spec."""
    return [arg for spec in specs for arg in ("--model", spec)]


@contextmanager
def inference_service(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the service on a free loopback port with ``args`` (models...) and ``env`` added to the environment,
    yield its root URL, stop it, and fail if it logged a traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tempfile.NamedTemporaryFile("w+", prefix="inference-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "inference", "serve", "--port", str(port), *args]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, Path(log.name).read_text()
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
    output = Path(log.name).read_text()
    assert "Traceback" not in output, output
