"""Gateway overhead: the hub against LiteLLM's proxy, both in front of the same fast fake upstream.

For non-streaming chat completions at concurrency 1, 8 and 32: requests/s and latency p50 / p99, and
the latency each gateway adds over calling the fake upstream directly; for streams, the time to the
first content byte and what each gateway adds to it. The hub runs as operators run it (``HUB_ENV=prod``,
PostgreSQL and Redis; ``--stack embedded`` for SQLite), with a tenant key, entitlement and limit checks
and a usage row per request. LiteLLM runs with its master key and no database: its virtual keys and
spend logs need Prisma, whose engines are downloaded at first start (impossible offline), so it does
less work per request than the hub. Targets alternate within each round; medians over rounds.

    .venv/bin/python benchmarks/bench_gateway.py [--rounds 3] [--requests 400] \
        [--litellm /root/litellm-venv/bin/litellm] [--stack production|embedded] [--baseline CHECKOUT]

LiteLLM is the optional peer: ``python3 -m venv /root/litellm-venv &&
/root/litellm-venv/bin/pip install "litellm[proxy]"`` (under 2 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.processes import Process, free_port  # noqa: E402

MODEL = "fake-chat"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
LITELLM_MASTER_KEY = "sk-bench-master"


def _manage(env: dict, *args: str, root: Path = ROOT) -> str:
    run = subprocess.run([sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)}: {run.stderr[-2000:]}")
    return run.stdout


def _fresh_postgres_database(name: str) -> str:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def start_upstream() -> tuple[Process, str]:
    """The fast fake upstream on a free port, and its base URL."""
    port = free_port()
    upstream = Process("bench-upstream", [sys.executable, "benchmarks/fake_upstream.py", "--port", str(port)])
    upstream.wait_healthy(f"http://127.0.0.1:{port}/v1/models", 180, ok=lambda status: status < 500)
    return upstream, f"http://127.0.0.1:{port}/v1"


def start_hub(
    upstream: str, stack: str, data_dir: Path, root: Path = ROOT, slot: int = 0, external: bool = True
) -> tuple[Process, str, str, dict]:
    """A hub (the checkout at ``root``) with one tenant, one key and the fake model as an external deployment (else
    as our own service's: the Responses API goes to it as chat completions); its environment last. ``slot``: which
    database and Redis database it gets (a baseline hub beside this one)."""
    port = free_port()
    data_dir = data_dir / f"hub{slot}"
    env = {**os.environ, "HUB_ENV": "prod", "HUB_SECRET_KEY": "bench-" + "x" * 40, "HUB_ALLOWED_HOSTS": "127.0.0.1",
           "HUB_DATA_DIR": str(data_dir), "HUB_HOST": "127.0.0.1", "HUB_PORT": str(port)}  # fmt: skip
    env.pop("HUB_DATABASE_URL", None), env.pop("HUB_REDIS_URL", None)
    if stack == "production":
        env["HUB_DATABASE_URL"] = _fresh_postgres_database(f"hub_bench{slot or ''}")
        env["HUB_REDIS_URL"] = f"redis://127.0.0.1:6379/{5 + slot}"
        subprocess.run(["redis-cli", "-n", str(5 + slot), "flushdb"], capture_output=True)
    _manage(env, "migrate", root=root)
    _manage(env, "register_model", MODEL, "--kind", "chat", "--max-sequence-length", "8192",
            "--max-output-length", "4096", "--deployment", upstream, *(["--external"] if external else []),
            root=root)  # fmt: skip
    _manage(env, "create_tenant", "bench", root=root)
    _manage(env, "grant_models", "bench", MODEL, root=root)
    secret = _manage(env, "create_api_key", "bench", "--name", "bench", root=root).strip().splitlines()[-1]
    hub = Process(f"bench-hub{slot}", [sys.executable, "manage.py", "serve", "--no-bootstrap"], env, cwd=root)
    hub.wait_healthy(f"http://127.0.0.1:{port}/health", 180, ok=lambda status: status < 500)
    return hub, f"http://127.0.0.1:{port}/v1", secret, env


def start_stack(stack: str, prefix: str, worker_concurrency: int = 4) -> tuple[list[Process], str, str]:
    """The fast fake upstream, a hub in front of it (as our own service's deployment) and on the production stack a
    Celery worker: the processes (stop them last first), the hub's API URL and key. Processes started before a
    failure are stopped."""
    processes: list[Process] = []
    try:
        upstream, upstream_url = start_upstream()
        processes.append(upstream)
        data_dir = Path(tempfile.mkdtemp(prefix=prefix))
        hub, hub_url, secret, env = start_hub(upstream_url, stack, data_dir, external=False)
        processes.append(hub)
        if stack == "production":
            worker = [sys.executable, "-m", "celery", "-A", "hub", "worker", "--concurrency",
                      str(worker_concurrency), "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip",
                      "--without-mingle"]  # fmt: skip
            processes.append(Process("bench-worker", worker, env))
    except BaseException:
        for process in reversed(processes):
            process.stop()
        raise
    return processes, hub_url, secret


def start_litellm(litellm: str, upstream: str, data_dir: Path) -> tuple[Process, str, str]:
    port = free_port()
    config = data_dir / "litellm.yaml"
    config.write_text(
        f"model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: openai/{MODEL}\n"
        f"      api_base: {upstream}\n      api_key: fake\n"
        f"general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n"
        "litellm_settings:\n  telemetry: false\n"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    cmd = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = Process("bench-litellm", cmd, env)
    proc.wait_healthy(f"http://127.0.0.1:{port}/health/liveliness", 180, ok=lambda status: status < 500)
    return proc, f"http://127.0.0.1:{port}/v1", LITELLM_MASTER_KEY


@dataclass
class Target:
    name: str
    base_url: str
    key: str


@dataclass
class Result:
    seconds: float
    latencies: list[float]

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class _Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator shares the two cores with the servers, and
    httpx's pool costs more than the gateways themselves at concurrency 32 (measured: 370 req/s against
    the fake upstream where this client reaches 26,000)."""

    def __init__(self, host: str, port: int, path: str, key: str):
        self.host, self.port, self.path, self.key = host, port, path, key
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, stream: bool) -> float:
        """Send one request, read the whole answer; return seconds to the whole answer, or for a stream to
        the first chunk that carries content."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        start = time.perf_counter()
        self.writer.write(
            b"POST %s HTTP/1.1\r\nhost: %s:%d\r\nauthorization: Bearer %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s"
            % (self.path.encode(), self.host.encode(), self.port, self.key.encode(), len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = dict(line.split(b":", 1) for line in head.lower().split(b"\r\n")[1:] if b":" in line)
        first = None
        if b"content-length" in headers:
            payload = await self.reader.readexactly(int(headers[b"content-length"]))
        else:  # chunked
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                part = await self.reader.readexactly(size + 2)
                if first is None and b'"content"' in part:
                    first = time.perf_counter() - start
                parts.append(part[:-2])
            await self.reader.readuntil(b"\r\n")
            payload = b"".join(parts)
        if status != 200:
            raise RuntimeError(f"{status}: {payload[:300]!r}")
        if headers.get(b"connection", b"").strip() == b"close":
            self.writer.close()
            self.writer = None
        if stream:
            assert first is not None, payload[:300]
            return first
        return time.perf_counter() - start


async def _load(target: Target, concurrency: int, total: int, stream: bool, request: dict | None = None) -> Result:
    """``total`` calls by ``concurrency`` workers, each on its own keep-alive connection (``request``: the body,
    ``BODY`` by default)."""
    url = httpx.URL(target.base_url)
    request = request or BODY
    body = json.dumps({**request, "stream": True} if stream else request).encode()
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        connection = _Connection(url.host, url.port, url.path.rstrip("/") + "/chat/completions", target.key)
        while remaining > 0:
            remaining -= 1
            latencies.append(await connection.post(body, stream))
        if connection.writer is not None:
            connection.writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(time.perf_counter() - began, latencies)


def run(target: Target, concurrency: int, total: int, stream: bool = False) -> Result:
    return asyncio.run(_load(target, concurrency, total, stream))


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="calls per target, concurrency and round")
    parser.add_argument("--stream-requests", type=int, default=200)
    parser.add_argument("--litellm", default=shutil.which("litellm") or "/root/litellm-venv/bin/litellm")
    parser.add_argument("--stack", choices=("production", "embedded"), default="production")
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit (git worktree add): its hub "
                        "runs beside this one as target 'baseline', alternating")  # fmt: skip
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    upstream, upstream_url = start_upstream()
    processes = [upstream]
    try:
        hub, hub_url, hub_key, _ = start_hub(upstream_url, args.stack, data_dir)
        processes.append(hub)
        targets = [Target("direct", upstream_url, "fake"), Target("hub", hub_url, hub_key)]
        if args.baseline:
            base, base_url, base_key, _ = start_hub(upstream_url, args.stack, data_dir, args.baseline.resolve(), 1)
            processes.append(base)
            targets.append(Target("baseline", base_url, base_key))
        if Path(args.litellm).exists():
            litellm, litellm_url, litellm_key = start_litellm(args.litellm, upstream_url, data_dir)
            processes.append(litellm)
            targets.append(Target("litellm", litellm_url, litellm_key))
        else:
            print(f"LiteLLM not found at {args.litellm}: measuring the hub alone")
        for target in targets:  # warm up: connections, caches, first-request imports
            run(target, 4, 40)
            run(target, 2, 10, stream=True)

        cases = [(c, False) for c in (1, 8, 32)] + [(1, True), (8, True)]

        def measure(target: Target, case: tuple[int, bool]) -> Result:
            concurrency, stream = case
            return run(target, concurrency, args.stream_requests if stream else args.requests, stream)

        report(alternating(targets, cases, args.rounds, measure), targets, args)
    finally:
        for process in reversed(processes):
            process.stop()


def alternating(targets: list[Target], cases: list[tuple], rounds: int, measure) -> dict[tuple, dict[str, list]]:
    """``measure(target, case)`` for every case and target, ``rounds`` times, the targets' order turning each round
    (a machine slower for a while slows each of them in turn): by case, by target name, one result per round."""
    results: dict[tuple, dict[str, list]] = {case: {t.name: [] for t in targets} for case in cases}
    for round_ in range(rounds):
        for case in cases:
            for target in targets[round_ % len(targets) :] + targets[: round_ % len(targets)]:
                results[case][target.name].append(measure(target, case))
        print(f"round {round_ + 1}/{rounds} done", flush=True)
    return results


def report(results, targets, args) -> None:
    names = [t.name for t in targets if t.name != "direct"]
    print()
    print(f"gateway overhead ({args.stack} stack, {args.rounds} rounds, medians; times in ms)")
    print("fake upstream direct, then each gateway; 'added' = gateway minus direct at the same percentile")
    header = f"{'case':<22}{'target':<9}{'req/s':>8}{'p50':>8}{'p99':>8}{'added p50':>11}{'added p99':>11}"
    print(header)
    print("-" * len(header))
    summary = {}
    for (concurrency, stream), by_target in results.items():
        label = f"{'stream TTFB' if stream else 'non-stream'} c={concurrency}"
        direct = by_target["direct"]
        d50 = median([r.pct(0.5) for r in direct])
        d99 = median([r.pct(0.99) for r in direct])
        for name in ["direct", *names]:
            runs = by_target[name]
            rps = median([r.rps for r in runs])
            p50, p99 = median([r.pct(0.5) for r in runs]), median([r.pct(0.99) for r in runs])
            added = "" if name == "direct" else f"{p50 - d50:>11.2f}{p99 - d99:>11.2f}"
            print(f"{label:<22}{name:<9}{rps:>8.0f}{p50:>8.2f}{p99:>8.2f}{added}")
            summary[(label, name)] = (rps, p50 - d50, p99 - d99)
    if "litellm" in names:
        print()
        print("hub vs LiteLLM: requests/s ratio (hub / LiteLLM), added latency ratio (LiteLLM / hub)")
        for concurrency, stream in results:
            label = f"{'stream TTFB' if stream else 'non-stream'} c={concurrency}"
            hub, lite = summary[(label, "hub")], summary[(label, "litellm")]
            print(f"{label:<22} req/s x{hub[0] / lite[0]:.2f}   added p50 x{lite[1] / hub[1]:.2f}   "
                  f"added p99 x{lite[2] / hub[2]:.2f}")  # fmt: skip
    print()
    print("reproduce: .venv/bin/python benchmarks/bench_gateway.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
