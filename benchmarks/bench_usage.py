"""Usage at scale: dashboards and reports read the roll-ups, so their cost does not grow with the raw rows.

Fills a dedicated PostgreSQL database with ``--rows`` raw usage rows (default 10 million) spread over the
last 90 days: 50 tenants with 4 keys each, 8 models, one tenant ("bench-00") holding ``--big-share`` of
the rows, a few percent of errors (4xx/5xx) and aborted streams (499). Then it times:

* the fill itself (server-side ``INSERT ... SELECT ... FROM generate_series``, 1M rows a statement), and
  the ``VACUUM ANALYZE`` that autovacuum would do after it;
* the full roll-up build (``metering.refresh_rollups()`` over all history) and the incremental run the
  beat schedules every few minutes (``accounts.tasks.rollup_usage``: ``refresh_rollups`` since now - 3 h);
* with the watermark set and a few thousand raw rows written after it (the dashboard's raw tail):
  ``accounts.usage.summary`` of the big tenant over the last 30 days, the current month and 90 days, the
  operator-wide 30 days, and ``accounts.reports.build_report`` for the previous full month (when that
  module exists);
* for comparison, the query the roll-ups avoid: the same 30-day per-day / key / model aggregation
  straight over the raw rows (one run each, the big tenant and operator-wide).

Timings are the median and max of ``--repeat`` runs. The filled data is kept: a re-run with the same
``--rows`` reuses it (the "last 30 days" then end at the original fill); ``--fresh`` drops and refills.

    .venv/bin/python benchmarks/bench_usage.py                      # 10M rows, ~10 minutes on 2 cores
    .venv/bin/python benchmarks/bench_usage.py --rows 200000 --fresh  # a quick try
    .venv/bin/python benchmarks/bench_usage.py --database-url postgres://postgres@127.0.0.1:5432/bench_usage

The database (``bench_usage`` by default; ``HUB_DATABASE_URL`` or ``--database-url`` to change it) is
created if missing (through the server's ``postgres`` database) and migrated; no other database is written.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.django_env import setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_usage"
TENANTS = 50
KEYS_PER_TENANT = 4
# (id, kind); the last one is an embedding model (no completion tokens, never streamed).
MODELS = [
    ("llama-3.1-8b-instruct", "chat"),
    ("llama-3.1-70b-instruct", "chat"),
    ("qwen2.5-7b-instruct", "chat"),
    ("qwen2.5-coder-32b-instruct", "chat"),
    ("mistral-small-24b-instruct", "chat"),
    ("gemma-3-12b-it", "vision"),
    ("phi-4-mini-instruct", "chat"),
    ("bge-m3", "embedding"),
]
DAYS = 90
BATCH = 1_000_000
TAIL_ROWS = 3_000
META_TABLE = "bench_usage_fill"  # one row: how many rows the fill wrote, and when; not a hub table


@dataclass
class Figure:
    name: str
    times: list[float]
    detail: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="raw usage rows to fill (default 10M)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timed read (median and max)")
    parser.add_argument("--big-share", type=float, default=0.15, help="share of the rows of the timed tenant")
    parser.add_argument("--fresh", action="store_true", help="drop and recreate the database, then refill")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("HUB_DATABASE_URL") or DEFAULT_URL,
        help=f"the benchmark's own PostgreSQL database (default $HUB_DATABASE_URL or {DEFAULT_URL})",
    )
    args = parser.parse_args()
    if args.rows < 10_000 or not 0 < args.big_share < 1 or args.repeat < 1:
        parser.error("--rows must be >= 10000, --big-share in (0, 1), --repeat >= 1")
    return args


def ensure_database(url: str, fresh: bool) -> None:
    """Create the benchmark database if missing (drop it first with ``fresh``), through the server's
    ``postgres`` maintenance database."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql") or not name or name in ("postgres", "template0", "template1"):
        sys.exit(f"need a dedicated PostgreSQL database URL, got {url!r}")
    admin = urlunsplit(("postgresql", parts.netloc, "/postgres", "", ""))
    with psycopg.connect(admin, autocommit=True) as conn:
        if fresh:
            print(f"dropping database {name}", flush=True)
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            print(f"creating database {name}", flush=True)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def repeat(name: str, fn: Callable[[], Any], times: int, describe: Callable[[Any], str]) -> Figure:
    runs, result = [], None
    for _ in range(times):
        elapsed, result = timed(fn)
        runs.append(elapsed)
    figure = Figure(name, runs, describe(result))
    print(f"  {name}: median {figure.median:.3f} s, max {figure.max:.3f} s  ({figure.detail})", flush=True)
    return figure


# --- the fill ------------------------------------------------------------------------------------


def catalog() -> tuple[list[int], list[int], list[str]]:
    """The tenants (big one first), their keys (``KEYS_PER_TENANT`` each, in tenant order) and the models,
    created through ``accounts.services`` when missing."""
    from accounts import services
    from accounts.models import ApiKey, ServedModel, Tenant

    for model_id, kind in MODELS:
        if not ServedModel.objects.filter(pk=model_id).exists():
            services.register_model(
                model_id,
                kind,
                max_sequence_length=8192 if kind != "embedding" else 8192,
                hidden_size=1024 if kind == "embedding" else 0,
                max_output_length=0 if kind == "embedding" else 4096,
                deployment_url=f"http://10.0.0.{len(model_id)}:8100/v1",
            )
    model_ids = [m for m, _ in MODELS]
    tenant_ids, key_ids = [], []
    for i in range(TENANTS):
        slug = f"bench-{i:02d}"
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = services.create_tenant(slug, "Big tenant" if i == 0 else f"Tenant {i}")
            services.grant_models(tenant, model_ids)
            for k in range(KEYS_PER_TENANT):
                services.issue_key(tenant, name=f"key-{k}")
        keys = list(ApiKey.objects.filter(tenant=tenant).order_by("id").values_list("id", flat=True))
        if len(keys) < KEYS_PER_TENANT:
            sys.exit(f"tenant {slug} has {len(keys)} keys, expected {KEYS_PER_TENANT}: re-run with --fresh")
        tenant_ids.append(tenant.id)
        key_ids.extend(keys[:KEYS_PER_TENANT])
    return tenant_ids, key_ids, model_ids


def insert_sql() -> str:
    """One ``INSERT ... SELECT`` of rows ``g`` in [%(lo)s, %(hi)s], row ``g`` stamped at
    ``t0 + (g - 1 + u) * step`` seconds (u uniform in [0, 1)): the rows arrive in time order, as they do.

    The inner ``OFFSET 0`` keeps each row's random draws in one place, so the columns derived from the same
    draw agree (an aborted row is a 499 and streamed, an error has no completion, ...).
    """
    from accounts.models import UsageRecord

    col = {f.name: f.column for f in UsageRecord._meta.concrete_fields}
    columns = ", ".join(
        col[name]
        for name in (
            "request_id", "tenant", "api_key", "model", "route", "prompt_tokens", "completion_tokens",
            "total_tokens", "status_code", "streamed", "aborted", "time_to_first_token_ms", "duration_ms",
            "created_at",
        )
    )  # fmt: skip
    n_models = len(MODELS)
    embedding = n_models  # 1-based index of the embedding model (the last one)
    return f"""
INSERT INTO {UsageRecord._meta.db_table} ({columns})
SELECT 'chatcmpl-' || substr(md5(g::text || %(salt)s), 1, 24),
       (%(tenants)s::bigint[])[tenant + 1],
       CASE WHEN r_nokey < 0.01 THEN NULL  -- the console playground, or a deleted key
            ELSE (%(keys)s::bigint[])[tenant * {KEYS_PER_TENANT} + key + 1] END,
       (%(models)s::text[])[model],
       CASE WHEN model = {embedding} THEN '/v1/embeddings'
            WHEN r_route < 0.9 THEN '/v1/chat/completions' ELSE '/v1/completions' END,
       prompt, completion, prompt + completion, status,
       streamed, status = 499,
       CASE WHEN streamed THEN 40 + floor(760 * r_ttft)::int END,
       (60 + completion * (12 + 30 * r_dur) + prompt * 0.2)::int,
       created_at
FROM (
    SELECT *,
           status = 499 OR (model <> {embedding} AND status < 400 AND r_stream < 0.6) AS streamed,
           CASE WHEN status IN (400, 429) THEN 0 ELSE 20 + floor(1980 * r_prompt ^ 2)::int END AS prompt,
           CASE WHEN model = {embedding} OR status NOT IN (200, 499) THEN 0
                WHEN status = 499 THEN floor(400 * r_completion)::int
                ELSE floor(800 * r_completion ^ 1.5)::int END AS completion
    FROM (
        SELECT *,
               -- 1-based; the big tenant uses every model, each other one a window of three from its own
               CASE WHEN tenant = 0 THEN 1 + floor({n_models} * r_model ^ 1.5)::int
                    ELSE 1 + (tenant + floor(3 * r_model ^ 2)::int) %% {n_models} END AS model
        FROM (
            SELECT *,
                   %(t0)s::timestamptz + make_interval(secs => (g - 1 + r_time) * %(step)s) AS created_at,
                   -- the big tenant takes big_share of the rows; the others a skewed share of the rest
                   CASE WHEN r_tenant < %(big)s THEN 0
                        ELSE 1 + floor({TENANTS - 1} * ((r_tenant - %(big)s) / (1 - %(big)s)) ^ 1.5)::int
                        END AS tenant,
                   CASE WHEN r_key < 0.5 THEN 0 WHEN r_key < 0.75 THEN 1 WHEN r_key < 0.9 THEN 2 ELSE 3
                        END AS key,
                   CASE WHEN r_status < 0.94 THEN 200 WHEN r_status < 0.96 THEN 499
                        WHEN r_status < 0.975 THEN 429 WHEN r_status < 0.985 THEN 400
                        WHEN r_status < 0.995 THEN 500 ELSE 503 END AS status
            FROM (
                SELECT g, random() AS r_time, random() AS r_tenant, random() AS r_key, random() AS r_model,
                       random() AS r_status, random() AS r_nokey, random() AS r_route, random() AS r_stream,
                       random() AS r_prompt, random() AS r_completion, random() AS r_ttft, random() AS r_dur
                FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
                OFFSET 0
            ) AS draws
        ) AS drawn
    ) AS with_model
) AS shaped
"""


def insert_rows(
    cursor: Any, lo: int, hi: int, t0: datetime, step: float, ids: tuple[list, list, list], big: float, salt: str
) -> None:
    tenants, keys, models = ids
    cursor.execute(
        insert_sql(),
        {"lo": lo, "hi": hi, "t0": t0, "step": step, "tenants": tenants, "keys": keys, "models": models,
         "big": big, "salt": salt},
    )  # fmt: skip


def fill(rows: int, big: float, ids: tuple[list, list, list]) -> tuple[float, float]:
    """The raw rows over the last ``DAYS`` days, in ``BATCH``-row statements; then VACUUM ANALYZE.
    Returns (fill seconds, vacuum seconds)."""
    from django.db import connection

    from accounts.models import UsageRecord

    end = datetime.now(UTC)
    t0, step = end - timedelta(days=DAYS), DAYS * 86400 / rows
    start = time.perf_counter()
    with connection.cursor() as cursor:
        # Bulk-load settings for this session only: the rows reference the tenants and keys just created, so
        # the per-row foreign-key triggers are skipped (session_replication_role), and commits need not wait
        # for the WAL flush.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT setseed(0.42)")
        for lo in range(1, rows + 1, BATCH):
            hi = min(lo + BATCH - 1, rows)
            insert_rows(cursor, lo, hi, t0, step, ids, big, "")
            elapsed = time.perf_counter() - start
            print(f"  filled {hi:>11,} / {rows:,} rows  {elapsed:7.1f} s  ({hi / elapsed:,.0f} rows/s)", flush=True)
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (rows bigint NOT NULL, filled_at timestamptz)")
        cursor.execute(f"DELETE FROM {META_TABLE}")
        cursor.execute(f"INSERT INTO {META_TABLE} VALUES (%s, %s)", [rows, end])
    fill_s = time.perf_counter() - start
    vacuum_s, _ = timed(lambda: vacuum_analyze(UsageRecord._meta.db_table))
    return fill_s, vacuum_s


def vacuum_analyze(table: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {table}")


def filled_rows() -> int | None:
    """How many rows an earlier fill wrote (None: no complete fill in this database)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [META_TABLE])
        if cursor.fetchone()[0] is None:
            return None
        cursor.execute(f"SELECT rows FROM {META_TABLE}")
        row = cursor.fetchone()
    return row[0] if row else None


def add_tail(ids: tuple[list, list, list], big: float) -> int:
    """``TAIL_ROWS`` raw rows stamped between the watermark and now: the rows a dashboard sums from the raw
    table because no roll-up holds them yet."""
    from django.db import connection

    from accounts import usage

    mark = usage.watermark()
    assert mark is not None
    time.sleep(0.2)
    now = datetime.now(UTC)
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        insert_rows(cursor, 1, TAIL_ROWS, mark, (now - mark).total_seconds() / TAIL_ROWS, ids, big, now.isoformat())
    return TAIL_ROWS


# --- reads ---------------------------------------------------------------------------------------


def naive_aggregation(start: date, end: date, tenant_id: int | None) -> int:
    """What the dashboard would cost without roll-ups: the per-day / key / model sums over raw rows."""
    from accounts.models import UsageRecord
    from accounts.usage import day_start, raw_day_sums

    raw = UsageRecord.objects.filter(created_at__gte=day_start(start), created_at__lt=day_start(end + timedelta(1)))
    if tenant_id is not None:
        raw = raw.filter(tenant_id=tenant_id)
    return len(list(raw_day_sums(raw)))


def describe_summary(result: Any) -> str:
    return f"{len(result.buckets):,} buckets, {result.total.requests:,} requests"


def describe_report(result: Any) -> str:
    csv, png = bytes(result.csv or b""), bytes(result.chart_png or b"")
    return f"{result.requests:,} requests, CSV {len(csv) / 1024:.0f} KiB, PNG {len(png) / 1024:.0f} KiB"


def counts() -> dict[str, int]:
    from django.db import connection

    from accounts.models import RollupPeriod, UsageRecord, UsageRollup

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        db_size = cursor.fetchone()[0]
        sizes = {}
        for model in (UsageRecord, UsageRollup):
            cursor.execute("SELECT pg_total_relation_size(%s)", [model._meta.db_table])
            sizes[model._meta.db_table] = cursor.fetchone()[0]
    return {
        "raw rows": UsageRecord.objects.count(),
        "hour buckets": UsageRollup.objects.filter(period=RollupPeriod.HOUR).count(),
        "day buckets": UsageRollup.objects.filter(period=RollupPeriod.DAY).count(),
        "database bytes": db_size,
        **{f"{table} bytes (with indexes)": size for table, size in sizes.items()},
    }


def server_settings() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute(
            "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'work_mem', 'max_parallel_workers_per_gather', 'jit')"
        )
        settings = cursor.fetchone()[0]
    return f"PostgreSQL {version} ({settings}); {os.cpu_count()} CPUs"


def load_build_report() -> Callable[..., Any] | None:
    try:
        from accounts.reports import build_report
    except ImportError as exc:
        print(f"  accounts.reports.build_report not importable ({exc}): report not timed", flush=True)
        return None
    return build_report


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    raise AssertionError


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url, args.fresh)
    # PostgreSQL, no Redis (the file cache, eager Celery), a throw-away data dir for the file cache
    setup_django({"HUB_DATABASE_URL": args.database_url, "HUB_ENV": "dev",
                  "HUB_DATA_DIR": tempfile.mkdtemp(prefix="bench-usage-")})  # fmt: skip

    from django.core.management import call_command
    from django.utils import timezone

    from accounts import metering, usage
    from accounts.models import Tenant, UsageRecord, UsageRollup
    from accounts.tasks import ROLLUP_LOOKBACK

    call_command("migrate", verbosity=0)
    print(server_settings(), flush=True)
    figures: list[Figure] = []

    previous = filled_rows()
    if previous is not None and previous != args.rows:
        sys.exit(f"this database holds a fill of {previous:,} rows, not {args.rows:,}: add --fresh to refill")
    if previous is None and UsageRecord.objects.exists():
        sys.exit("this database holds an incomplete fill: add --fresh to refill")
    ids = catalog()
    big_tenant = Tenant.objects.get(id=ids[0][0])
    if previous is None:
        print(f"filling {args.rows:,} raw usage rows over {DAYS} days ({args.big_share:.0%} for {big_tenant})")
        fill_s, vacuum_s = fill(args.rows, args.big_share, ids)
        figures.append(
            Figure("fill (INSERT ... SELECT generate_series)", [fill_s], f"{args.rows / fill_s:,.0f} rows/s")
        )
        figures.append(Figure("VACUUM ANALYZE of the raw table", [vacuum_s]))
    else:
        print(f"reusing the {previous:,} rows filled earlier (--fresh refills)", flush=True)

    print("roll-ups", flush=True)
    elapsed, built = timed(metering.refresh_rollups)
    detail = f"{built['hour']:,} hour + {built['day']:,} day buckets"
    figures.append(Figure("full roll-up build (refresh_rollups())", [elapsed], detail))
    print(f"  full build: {elapsed:.1f} s  {built}", flush=True)
    vacuum_analyze(UsageRollup._meta.db_table)  # what autovacuum does after the rebuild's delete + insert

    def incremental() -> dict[str, int]:
        return metering.refresh_rollups(since=timezone.now() - ROLLUP_LOOKBACK)

    figures.append(repeat("incremental roll-up (beat run, last 3 h)", incremental, args.repeat, str))
    add_tail(ids, args.big_share)
    mark = usage.watermark()
    tail = UsageRecord.objects.filter(created_at__gte=mark)
    print(
        f"  {tail.count():,} raw rows after the watermark ({tail.filter(tenant=big_tenant).count():,} of {big_tenant})"
    )

    today = timezone.now().date()
    month_first, month_last = usage.month_range(today)
    last_30 = (today - timedelta(days=29), today)
    print("reads", flush=True)
    reads = [
        (f"summary {big_tenant}, last 30 days", last_30, big_tenant.id),
        (f"summary {big_tenant}, current month", (month_first, month_last), big_tenant.id),
        (f"summary {big_tenant}, last 90 days", (today - timedelta(days=89), today), big_tenant.id),
        ("summary all tenants, last 30 days", last_30, None),
    ]
    for name, (start, end), tenant_id in reads:
        figures.append(
            repeat(name, lambda s=start, e=end, t=tenant_id: usage.summary(s, e, t), args.repeat, describe_summary)
        )

    build_report = load_build_report()
    if build_report is not None:
        report_month = (month_first - timedelta(days=1)).replace(day=1)
        figures.append(
            repeat(
                f"build_report {big_tenant}, {report_month:%Y-%m}",
                lambda: build_report(big_tenant, report_month),
                args.repeat,
                describe_report,
            )
        )

    print("without roll-ups (one run each)", flush=True)
    for name, tenant_id in ((f"raw aggregation {big_tenant}, last 30 days", big_tenant.id),
                            ("raw aggregation all tenants, last 30 days", None)):  # fmt: skip
        elapsed, groups = timed(lambda t=tenant_id: naive_aggregation(*last_30, t))
        figures.append(Figure(name, [elapsed], f"{groups:,} groups"))
        print(f"  {name}: {elapsed:.3f} s ({groups:,} groups)", flush=True)

    sizes = counts()
    print()
    print(f"usage at scale: {args.rows:,} raw rows, {TENANTS} tenants x {KEYS_PER_TENANT} keys, {len(MODELS)} models,")
    print(f"{DAYS} days, {big_tenant} holds ~{args.big_share:.0%}; {server_settings()}")
    print(f"reads: median / max of {args.repeat} runs; one-off steps: one run")
    header = f"{'step':<46}{'median s':>10}{'max s':>10}  detail"
    print(header)
    print("-" * len(header))
    for figure in figures:
        print(f"{figure.name:<46}{figure.median:>10.3f}{figure.max:>10.3f}  {figure.detail}")
    print()
    for name, value in sizes.items():
        print(f"{name:<46}{human_bytes(value) if 'bytes' in name else f'{value:,}'}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    print(f"{'benchmark process peak RSS':<46}{human_bytes(peak)}  (the full build sums a window of rows at a time)")
    over = [f.name for f in figures if f.name.startswith(("summary", "build_report")) and f.median >= 1.0]
    print(f"dashboard/report reads over 1 s (median): {', '.join(over) if over else 'none'}")
    print()
    extra = f" --repeat {args.repeat}" if args.repeat != 5 else ""
    extra += f" --big-share {args.big_share}" if args.big_share != 0.15 else ""
    command = f".venv/bin/python benchmarks/bench_usage.py --rows {args.rows}{extra}"
    print(f"reproduce: HUB_DATABASE_URL={args.database_url} {command}  (add --fresh to refill)")
    shutil.rmtree(os.environ["HUB_DATA_DIR"], ignore_errors=True)


if __name__ == "__main__":
    main()
