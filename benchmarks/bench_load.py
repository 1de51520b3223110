"""Load test: N concurrent streaming clients for M minutes against the hub and our inference service.

Starts, on loopback ports, ``python -m inference serve`` with the packaged SmolLM2-135M chat model (CPU)
and a hub (``manage.py serve``) as operators run it: ``HUB_ENV=prod`` on PostgreSQL and Redis
(``--stack production``: database ``bench_load``, created if missing and migrated, and Redis db 5,
flushed at the start; ``--stack embedded``: SQLite and the file cache in a throw-away data dir). This
process sets Django up on the same database to register the model from the service's catalog, create the
tenant ``bench-load`` (once) and a fresh key per run, and afterwards read the usage rows of that key.

Then ``--clients`` workers, each with its own ``AsyncOpenAI`` client (no retries: every error counts),
send streamed chat completions back to back for ``--minutes``: short varied prompts, ``max_tokens``
16-64, and their own ``x-request-id`` so each request is matched with its usage row. Streams ask for
``stream_options={"include_usage": True}`` and take their counts from the final usage chunk. A fraction
(``--abort-fraction``) of the streams is closed by the client after a few content chunks; those cannot
see a final usage chunk, so they ask for running usage (``continuous_usage_stats``, through
``extra_body``) and take their counts from the last chunk read.

Reported: requests done, errors by kind (aim: none), time to first content token and total time
(p50 / p99), output tokens/s over the run, and the metering check. After a settle wait for the rows
written just after each answer, per category (completed vs aborted): the prompt and completion tokens
the clients saw against those in ``UsageRecord`` for the key, request by request, and the count of usage
rows against requests made. Completed streams must match exactly. An aborted stream's row (status 499)
holds the tokens up to the last chunk the hub relayed; chunks the hub sent after the last one the client
read (in flight, or unread in the client's socket buffer when it closed) are metered but not seen, so
there the check is metered >= seen, and the excess is reported. A stream the client meant to abort but
that ended before it read the chosen number of chunks counts as completed. The process exits 1 on an
error, a metering mismatch or a missing / extra row (a CI-like gate) unless ``--no-fail``.

The 1-minute load average as the clients start and stop is printed: the speed figures mean something
only on an otherwise idle machine. The service's default of one torch thread per core collapses when
other work takes a core (the OpenMP threads wait on each other: on 2 cores, 8.6 against 53.5 output
tokens/s with ``--threads 1`` next to other test runs); ``--threads`` sets it.

    .venv/bin/python benchmarks/bench_load.py [--clients 8] [--minutes 2] [--abort-fraction 0.1] \
        [--stack production|embedded] [--threads T] [--seed 0] [--no-fail]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from openai import APIConnectionError, APIError, APIStatusError, APITimeoutError, AsyncOpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.django_env import setup_django  # noqa: E402
from tests.support.processes import Process, free_port  # noqa: E402

MODEL = "smollm2-135m-instruct"
DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_load"
REDIS_URL = "redis://127.0.0.1:6379/5"
TENANT = "bench-load"
SUBJECTS = [
    "the moon", "bread", "a lighthouse", "rain", "chess", "bicycles", "coffee", "volcanoes", "owls", "the sea",
    "trains", "autumn", "a library", "honey", "snow", "clocks", "bridges", "tea", "a garden", "maps",
]  # fmt: skip
TASKS = [
    "Write one sentence about {}.",
    "Give me three words that describe {}.",
    "Tell a very short story about {}.",
    "What is interesting about {}?",
    "Explain {} to a child in two sentences.",
    "Write a haiku about {}.",
    "List two facts about {}.",
    "Describe {} in a few words.",
]


# --- processes -------------------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database if missing, through the server's ``postgres`` database."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            print(f"creating database {name}", flush=True)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def hub_environment(stack: str, data_dir: Path) -> dict[str, str]:
    """The hub's settings (``HUB_*``), shared by the served hub and this process's Django."""
    env = {
        "HUB_ENV": "prod",
        "HUB_SECRET_KEY": "bench-load-" + "x" * 40,
        "HUB_ALLOWED_HOSTS": "127.0.0.1",
        "HUB_DATA_DIR": str(data_dir),
        "HUB_HOST": "127.0.0.1",
    }
    if stack == "production":
        env["HUB_DATABASE_URL"] = DATABASE_URL
        env["HUB_REDIS_URL"] = REDIS_URL
    return env


def prepare_hub_data(inference_v1: str) -> tuple[str, int, str]:
    """Migrate, register the service's models, the tenant (once) and two fresh keys: (secret, key id,
    warm-up secret). The measured key sees only the measured requests."""
    from django.core.cache import cache
    from django.core.management import call_command

    from accounts import services
    from accounts.models import Tenant
    from hub.inference_client import model_cards

    call_command("migrate", interactive=False, verbosity=0)
    cache.clear()  # the benchmark's own Redis db (or file cache): no auth entries of earlier runs
    services.sync_deployment(inference_v1, model_cards(inference_v1))
    tenant = Tenant.objects.filter(slug=TENANT).first() or services.create_tenant(TENANT, "Load test")
    services.grant_models(tenant, [MODEL])
    stamp = time.strftime("%Y%m%dT%H%M%S")
    key = services.issue_key(tenant, name=f"load {stamp}", model_ids=[MODEL])
    warm = services.issue_key(tenant, name=f"warm-up {stamp}", model_ids=[MODEL])
    return key.secret, key.key.id, warm.secret


# --- the clients -----------------------------------------------------------------------------------------


@dataclass
class Call:
    """One streamed request as its client saw it."""

    request_id: str
    max_tokens: int
    planned_abort: int | None  # close after this many content chunks; None: read to the end
    aborted: bool = False  # closed by the client before the stream's end
    error: str | None = None
    ttft: float | None = None  # seconds to the first chunk with content
    total: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    content_chunks: int = 0


@dataclass
class Run:
    calls: list[Call] = field(default_factory=list)
    seconds: float = 0.0
    load_before: float = 0.0  # the machine's 1-minute load average as the clients start and stop:
    load_after: float = 0.0  # well above the service's threads + 1, other work shares the cores


def _prompt(rng: random.Random) -> str:
    return rng.choice(TASKS).format(rng.choice(SUBJECTS))


async def one_call(client: AsyncOpenAI, call: Call, prompt: str) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": call.max_tokens,
        "stream": True,
        "extra_headers": {"x-request-id": call.request_id},
    }
    if call.planned_abort is None:
        kwargs["stream_options"] = {"include_usage": True}
    else:  # running usage in every chunk: the counts up to the last chunk read
        kwargs["extra_body"] = {"stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    start = time.perf_counter()
    stream = None
    try:
        stream = await client.chat.completions.create(**kwargs)
        ended = False
        async for chunk in stream:
            if chunk.usage is not None:
                call.prompt_tokens = chunk.usage.prompt_tokens
                call.completion_tokens = chunk.usage.completion_tokens
            for choice in chunk.choices:
                if choice.delta.content:
                    call.content_chunks += 1
                    if call.ttft is None:
                        call.ttft = time.perf_counter() - start
                if choice.finish_reason:
                    call.finish_reason = choice.finish_reason
            if call.planned_abort is not None and call.content_chunks >= call.planned_abort:
                if call.finish_reason is None:
                    call.aborted = True
                    break
        else:
            ended = True
        call.total = time.perf_counter() - start
        if ended:
            _check_ended(call)
    except APITimeoutError:
        call.error = "timeout"
    except APIConnectionError as exc:
        call.error = f"connection: {type(exc.__cause__ or exc).__name__}"
    except APIStatusError as exc:
        call.error = f"HTTP {exc.status_code}: {getattr(exc, 'code', None) or exc.message[:60]}"
    except APIError as exc:  # an error event in the stream
        call.error = f"stream error event: {exc.message[:60]}"
    except Exception as exc:  # noqa: BLE001 - every failure is a counted error
        call.error = f"{type(exc).__name__}: {str(exc)[:60]}"
    finally:
        if stream is not None:
            await stream.close()


def _check_ended(call: Call) -> None:
    """A stream read to its end must carry a finish reason and usage consistent with it."""
    if call.finish_reason is None:
        call.error = "stream ended without finish_reason"
    elif call.completion_tokens is None or call.prompt_tokens is None:
        call.error = "stream ended without a usage chunk"
    elif call.completion_tokens > call.max_tokens:
        call.error = "completion_tokens > max_tokens"
    elif call.finish_reason == "length" and call.completion_tokens != call.max_tokens:
        call.error = "finish_reason length but completion_tokens != max_tokens"
    elif call.ttft is None and call.completion_tokens > 1:
        call.error = "no content in a stream of several tokens"


async def load(base_url: str, key: str, clients: int, seconds: float, abort_fraction: float, seed: int) -> Run:
    run = Run()
    tag = secrets.token_hex(4)
    counter = 0
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        nonlocal counter
        rng = random.Random(seed * 1000 + index)
        async with AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300) as client:
            while time.monotonic() < deadline:
                counter += 1
                abort = rng.randint(2, 6) if rng.random() < abort_fraction else None
                call = Call(f"load-{tag}-{counter:06d}", rng.randint(16, 64), abort)
                run.calls.append(call)
                await one_call(client, call, _prompt(rng))

    began, run.load_before = time.perf_counter(), os.getloadavg()[0]
    await asyncio.gather(*(worker(i) for i in range(clients)))
    run.seconds, run.load_after = time.perf_counter() - began, os.getloadavg()[0]
    return run


async def warm_up(base_url: str, key: str) -> None:
    async with AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300) as client:
        for abort in (None, 2):
            call = Call(f"warm-{secrets.token_hex(6)}", 16, abort)
            await one_call(client, call, "Say hello.")
            if call.error:
                raise RuntimeError(f"warm-up request failed: {call.error}")


# --- the metering check ----------------------------------------------------------------------------------


@dataclass
class Rows:
    """The usage rows of the measured key."""

    by_request: dict[str, Any]  # request id -> UsageRecord (the last one, should there be several)
    count: int
    duplicates: int  # rows beyond the first for one request id


def usage_rows(key_id: int, expected: int, quiet: float = 1.0, limit: float = 30.0) -> Rows:
    """The key's usage rows by request id, once at least ``expected`` are there and none came for
    ``quiet`` seconds (a row is written just after its answer), or after ``limit`` seconds."""
    from django.db import close_old_connections

    from accounts.models import UsageRecord

    rows = UsageRecord.objects.filter(api_key_id=key_id)
    deadline = time.monotonic() + limit
    count, since = rows.count(), time.monotonic()
    while time.monotonic() < deadline and (count < expected or time.monotonic() - since < quiet):
        time.sleep(0.1)
        now = rows.count()
        if now != count:
            count, since = now, time.monotonic()
    found: dict[str, Any] = {}
    duplicates = 0
    for row in rows.order_by("id"):
        duplicates += row.request_id in found
        found[row.request_id] = row
    close_old_connections()
    return Rows(found, len(found) + duplicates, duplicates)


@dataclass
class Check:
    requests: int = 0
    rows: int = 0
    seen_prompt: int = 0
    metered_prompt: int = 0
    seen_completion: int = 0
    metered_completion: int = 0
    mismatched: int = 0  # requests whose row disagrees (completed: any difference; aborted: metered < seen)
    over: list[int] = field(default_factory=list)  # aborted: metered - seen completion tokens, per request
    statuses: Counter = field(default_factory=Counter)


def metering(calls: list[Call], rows: Rows) -> tuple[dict[str, Check], list[str]]:
    """Each request's counts against its row, summed per category; the problems found."""
    checks = {"completed": Check(), "aborted": Check()}
    problems: list[str] = []
    ours = {call.request_id for call in calls}
    for call in calls:
        if call.error:
            continue
        check = checks["aborted" if call.aborted else "completed"]
        check.requests += 1
        row = rows.by_request.get(call.request_id)
        if row is None:
            problems.append(f"{call.request_id}: no usage row")
            continue
        check.rows += 1
        check.statuses[(row.status_code, row.aborted)] += 1
        seen_prompt, seen_completion = call.prompt_tokens or 0, call.completion_tokens or 0
        check.seen_prompt += seen_prompt
        check.metered_prompt += row.prompt_tokens
        check.seen_completion += seen_completion
        check.metered_completion += row.completion_tokens
        if call.aborted:
            check.over.append(row.completion_tokens - seen_completion)
            if row.prompt_tokens != seen_prompt or row.completion_tokens < seen_completion:
                check.mismatched += 1
                problems.append(f"{call.request_id} (aborted): seen {seen_prompt}+{seen_completion}, "
                                f"metered {row.prompt_tokens}+{row.completion_tokens}")  # fmt: skip
        elif (row.prompt_tokens, row.completion_tokens, row.status_code) != (seen_prompt, seen_completion, 200):
            check.mismatched += 1
            metered = f"{row.prompt_tokens}+{row.completion_tokens} (status {row.status_code})"
            problems.append(f"{call.request_id}: seen {seen_prompt}+{seen_completion}, metered {metered}")
    extra = [rid for rid in rows.by_request if rid not in ours]
    if extra:
        problems.append(f"{len(extra)} usage rows for request ids no client sent, e.g. {extra[:3]}")
    if rows.duplicates:
        problems.append(f"{rows.duplicates} duplicate usage rows (same request id)")
    return checks, problems


# --- report ----------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    args: argparse.Namespace,
    run: Run,
    checks: dict[str, Check],
    problems: list[str],
    rows: Rows,
    hub_log: list[str],
) -> bool:
    """Print the figures and the reproduce command; whether the run passed."""
    calls = run.calls
    count = rows.count
    hub_ttft = [
        row.time_to_first_token_ms for row in rows.by_request.values() if row.time_to_first_token_ms is not None
    ]
    errored_with_rows = sum(1 for call in calls if call.error and call.request_id in rows.by_request)
    ok = [c for c in calls if not c.error]
    completed = [c for c in ok if not c.aborted]
    aborted = [c for c in ok if c.aborted]
    errors = Counter(c.error for c in calls if c.error)
    ttft = [c.ttft * 1000 for c in ok if c.ttft is not None]
    total = [c.total * 1000 for c in completed if c.total is not None]
    seen_tokens = sum(c.completion_tokens or 0 for c in ok)
    print()
    print(f"load test: {args.clients} streaming clients for {args.minutes:g} min, {args.stack} stack, "
          f"model {MODEL} (CPU), abort fraction {args.abort_fraction:g}, {os.cpu_count()} cores")  # fmt: skip
    threads = args.threads or "default"
    print(f"  run time                      {run.seconds:10.1f} s     (inference threads: {threads}; load average "
          f"{run.load_before:.1f} at the start, {run.load_after:.1f} at the end)")  # fmt: skip
    print(f"  requests done                 {len(calls):10d}   ({len(completed)} completed, {len(aborted)} aborted "
          f"by the client, {len(calls) - len(ok)} errors)")  # fmt: skip
    print(f"  errors                        {sum(errors.values()):10d}")
    for kind, times in errors.most_common():
        print(f"      {times:6d}  {kind}")
    print(f"  time to first token p50 / p99 {pct(ttft, 0.5):10.0f} / {pct(ttft, 0.99):.0f} ms   (all streams)")
    print(f"    as the hub saw it p50 / p99 {pct(hub_ttft, 0.5):10.0f} / {pct(hub_ttft, 0.99):.0f} ms   (the rows' "
          "time_to_first_token_ms)")  # fmt: skip
    print(f"  total time p50 / p99          {pct(total, 0.5):10.0f} / {pct(total, 0.99):.0f} ms   (completed streams)")
    if completed:
        mean_tokens = statistics.mean(c.completion_tokens or 0 for c in completed)
        print(f"  completion tokens / request   {mean_tokens:10.1f}     (completed streams, max_tokens 16-64)")
    print(f"  output tokens/s overall       {seen_tokens / run.seconds:10.1f}     (completion tokens the clients saw "
          f"/ run time)")  # fmt: skip
    print()
    print("metering: tokens the clients saw vs UsageRecord rows of the key (prompt / completion)")
    header = f"  {'':<10}{'requests':>9}{'rows':>7}{'seen':>17}{'metered':>17}{'mismatched':>12}  row status"
    print(header)
    for name, check in checks.items():
        seen = f"{check.seen_prompt} / {check.seen_completion}"
        metered = f"{check.metered_prompt} / {check.metered_completion}"
        statuses = ", ".join(f"{n}x {status}{' aborted' if flag else ''}" for (status, flag), n in
                             sorted(check.statuses.items()))  # fmt: skip
        print(
            f"  {name:<10}{check.requests:>9}{check.rows:>7}{seen:>17}{metered:>17}{check.mismatched:>12}  {statuses}"
        )
    over = checks["aborted"].over
    if over:
        extra = Counter(over)
        spread = ", ".join(f"+{k}: {v}" for k, v in sorted(extra.items()))
        print(f"  aborted: metered - seen completion tokens per request: {spread} (chunks relayed after the last "
              f"one the client read)")  # fmt: skip
    print(f"  usage rows for the key: {count}; requests made: {len(calls)} ({len(ok)} without error)")
    if errors:
        print(
            f"  of the {sum(errors.values())} errored requests, {errored_with_rows} have a usage row (not in the sums)"
        )
    if hub_log:
        print(f"  the hub logged {len(hub_log)} warnings / errors, e.g.:")
        for line in hub_log[:5]:
            print(f"      {line[:150]}")
    for problem in problems[:20]:
        print(f"  PROBLEM {problem}")
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more problems")
    passed = not errors and not problems and count == len(calls)
    print()
    print(f"result: {'PASS' if passed else 'FAIL'} (errors: {sum(errors.values())}, metering problems: "
          f"{len(problems)}, rows {count} / requests {len(calls)})")  # fmt: skip
    print()
    print("reproduce: .venv/bin/python benchmarks/bench_load.py " + " ".join(sys.argv[1:]))
    return passed


# --- main ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent streaming clients")
    parser.add_argument("--minutes", type=float, default=2.0, help="how long the clients keep sending")
    parser.add_argument("--abort-fraction", type=float, default=0.1, help="share of streams the client closes early")
    parser.add_argument("--stack", choices=("production", "embedded"), default="production")
    parser.add_argument("--threads", type=int, default=None, help="the inference service's torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even on errors or a metering mismatch")
    args = parser.parse_args()
    if args.clients < 1 or args.minutes <= 0 or not 0 <= args.abort_fraction <= 1:
        parser.error("--clients >= 1, --minutes > 0, --abort-fraction in [0, 1]")

    data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    (data_dir / "static").mkdir()  # prod serves collected static files from here
    hub_env = hub_environment(args.stack, data_dir)
    if args.stack == "production":
        ensure_database(DATABASE_URL)
    base_env = {k: v for k, v in os.environ.items() if k not in ("HUB_DATABASE_URL", "HUB_REDIS_URL")}
    processes: list[Process] = []
    hub_log: list[str] = []
    try:
        port = free_port()
        cmd = [sys.executable, "-m", "inference", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", f"{MODEL}=packaged:smollm2:chat"]  # fmt: skip
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        print("starting the inference service...", flush=True)
        processes.append(Process("inference", cmd, base_env))
        processes[-1].wait_healthy(f"http://127.0.0.1:{port}/health", 900)
        inference_v1 = f"http://127.0.0.1:{port}/v1"

        setup_django({**hub_env, "HUB_LOG_LEVEL": "WARNING"})
        secret, key_id, warm_secret = prepare_hub_data(inference_v1)
        hub_port = free_port()
        env = {**base_env, **hub_env, "HUB_PORT": str(hub_port)}
        print("starting the hub...", flush=True)
        hub_cmd = [sys.executable, "manage.py", "serve", "--no-bootstrap"]
        processes.append(Process("hub", hub_cmd, env))
        processes[-1].wait_healthy(f"http://127.0.0.1:{hub_port}/health", 120)
        base_url = f"http://127.0.0.1:{hub_port}/v1"

        asyncio.run(warm_up(base_url, warm_secret))
        print(f"running {args.clients} clients for {args.minutes:g} min...", flush=True)
        run = asyncio.run(load(base_url, secret, args.clients, args.minutes * 60, args.abort_fraction, args.seed))
        rows = usage_rows(key_id, expected=len(run.calls))
        checks, problems = metering(run.calls, rows)
    finally:
        for process in reversed(processes):
            output = process.stop(keep_log=True)
            if process.name == "hub":
                hub_log = [line for line in output.splitlines() if " WARNING " in line or " ERROR " in line]
            if "Traceback" in output:
                print(f"WARNING: the {process.name} logged a traceback (log kept: {process.log_path}):")
                print(output[output.index("Traceback") :][:3000])
            else:
                Path(process.log_path).unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    passed = report(args, run, checks, problems, rows, hub_log)
    return 0 if passed or args.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())
