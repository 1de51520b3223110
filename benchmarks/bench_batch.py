"""The Batch API's own cost: the same chat requests as one batch, and sent directly through the hub 8 at a time
(the batch runner's ``HUB_BATCH_CONCURRENCY``), in front of the fast fake upstream, so that what is measured is the
hub's work per request (the gateway, the usage row) and the batch's own (reading the file, one row per answer,
writing the output file). Requests/s of each, alternating within each round; medians over rounds.

``--stack embedded`` (``make run``'s: SQLite, no broker, the batch runs in the hub's process) or ``production``
(PostgreSQL, Redis, the batch on a Celery worker beside the hub).

    .venv/bin/python benchmarks/bench_batch.py [--rounds 3] [--requests 400] [--stack embedded|production]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import BODY, Target, run, start_hub, start_upstream  # noqa: E402
from tests.support.processes import Process  # noqa: E402


def batch_seconds(client: OpenAI, requests: int) -> float:
    """Upload, create, and poll until the output file is there: the time a user waits for the answers."""
    lines = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": BODY}) + "\n" for i in range(requests)).encode()  # fmt: skip
    began = time.perf_counter()
    source = client.files.create(file=("bench.jsonl", lines), purpose="batch")
    batch = client.batches.create(input_file_id=source.id, endpoint="/v1/chat/completions", completion_window="24h")
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.02)
        batch = client.batches.retrieve(batch.id)
    client.files.content(batch.output_file_id).read()
    seconds = time.perf_counter() - began
    if batch.status != "completed" or batch.request_counts.completed != requests:
        raise RuntimeError(f"batch ended {batch.status}: {batch.request_counts}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--stack", choices=("embedded", "production"), default="embedded")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    upstream, upstream_url = start_upstream()
    processes = [upstream]
    try:
        hub, hub_url, key, env = start_hub(upstream_url, args.stack, data_dir)
        processes.append(hub)
        if args.stack == "production":
            worker = Process("bench-worker", [sys.executable, "-m", "celery", "-A", "hub", "worker", "--concurrency",
                                              "4", "--loglevel", "WARNING"], env)  # fmt: skip
            processes.append(worker)
        client = OpenAI(base_url=hub_url, api_key=key, max_retries=0)
        target = Target("hub", hub_url, key)
        run(target, 8, 40)  # warm up: connections, caches, first-request imports
        batch_seconds(client, 40)
        direct, batched = [], []
        for round_ in range(args.rounds):
            for kind in ("direct", "batch") if round_ % 2 == 0 else ("batch", "direct"):
                if kind == "direct":
                    direct.append(args.requests / run(target, 8, args.requests).seconds)
                else:
                    batched.append(args.requests / batch_seconds(client, args.requests))
            print(f"round {round_ + 1}/{args.rounds}: direct {direct[-1]:.0f} req/s, batch {batched[-1]:.0f} req/s",
                  flush=True)  # fmt: skip
        d, b = statistics.median(direct), statistics.median(batched)
        print()
        print(f"{args.requests} chat requests, {args.stack} stack, medians of {args.rounds} rounds")
        print(f"direct, 8 at a time: {d:8.0f} req/s  ({1000 / d:.2f} ms each)")
        added = 1000 / b - 1000 / d
        print(f"as one batch:        {b:8.0f} req/s  ({1000 / b:.2f} ms each; the batch adds {added:.2f})")
        print("reproduce: .venv/bin/python benchmarks/bench_batch.py " + " ".join(sys.argv[1:]))
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    main()
