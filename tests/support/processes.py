"""Child processes on loopback ports, as the tests and benchmarks start them: output to a log file (a full pipe
would stall the child), a health URL polled until it answers, a stop that returns the log. Imports nothing of ours
and no Django, so the benchmarks use it as they are."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process(subprocess.Popen):
    """``cmd`` in ``cwd`` with ``env`` (the whole environment), its output in a log file named after ``name``.
    ``new_session``: in its own process group, as a terminal starts a command (Ctrl-C reaches all of it)."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str] | None = None,
        *,
        cwd: Path = ROOT,
        new_session: bool = False,
    ):
        self.name = name
        log = tempfile.NamedTemporaryFile("w+", prefix=f"{name}-", suffix=".log", delete=False)
        self.log_path = log.name
        super().__init__(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session)
        log.close()  # the child holds its own descriptor

    def output(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def wait_healthy(self, url: str, timeout: float, ok: Callable[[int], bool] = lambda status: status == 200) -> None:
        """Poll ``url`` until its status is ``ok``; the log in the error if the process exits or time runs out
        (the process is then killed)."""
        deadline = time.monotonic() + timeout
        # one client for all the polls: a client of its own each (``httpx.get``) loads the certificate authorities
        # again, ~22 ms of CPU a poll, a tenth of a core while a service starts
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.returncode}:\n{self.output()[-6000:]}")
                try:
                    if ok(client.get(url).status_code):
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.kill()
        self.wait()
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout:.0f} s:\n{self.output()[-6000:]}")

    def stop(self, timeout: float = 30, keep_log: bool = False) -> str:
        """Terminate it (kill after ``timeout``), and return its log, which is then removed unless ``keep_log``."""
        if self.poll() is None:
            self.terminate()
            try:
                self.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.wait()
        output = self.output()
        if not keep_log:
            Path(self.log_path).unlink(missing_ok=True)
        return output


def redis_server(port: int) -> subprocess.Popen:
    """A private redis-server on ``port`` (nothing kept on disk), started and answering."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: these machines have it (Debian's redis-server)")
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
    raise RuntimeError("redis-server did not start")
