"""Background responses: what ``background: true`` costs a client against the same request answered at once.

In front of the fast fake upstream (as our own service's deployment), for a Responses request: the time to the whole
answer of a plain request, and of a background one, created and then polled with ``GET /v1/responses/{id}`` every
``--poll`` ms until it is no longer queued or in progress; for streams, the time to the first text delta of a plain
stream and of a background one's (its events kept in the database and read back by the creating request). The hub
runs as ``make run`` does (``--stack embedded``: SQLite, background responses on the hub's own loop) or as
operators do (``--stack production``: PostgreSQL, Redis and one Celery worker). Sequential requests; the four cases
alternate within each round; medians over rounds.

    .venv/bin/python benchmarks/bench_background.py [--rounds 5] [--requests 30] [--poll 20] [--stack embedded]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import MODEL, start_stack  # noqa: E402
from tests.support.processes import Process  # noqa: E402

BODY = {"model": MODEL, "input": "Say hello.", "max_output_tokens": 16}
DONE = ("completed", "incomplete", "failed", "cancelled")


def plain(client: httpx.Client, poll: float) -> float:
    start = time.perf_counter()
    answer = client.post("/responses", json=BODY)
    assert answer.status_code == 200 and answer.json()["status"] in DONE, answer.text
    return time.perf_counter() - start


def background(client: httpx.Client, poll: float) -> float:
    start = time.perf_counter()
    response = client.post("/responses", json={**BODY, "background": True}).json()
    while response["status"] not in DONE:
        time.sleep(poll)
        response = client.get(f"/responses/{response['id']}").json()
    assert response["status"] == "completed", response
    return time.perf_counter() - start


def _first_delta(client: httpx.Client, body: dict) -> float:
    start = time.perf_counter()
    first = None
    with client.stream("POST", "/responses", json={**body, "stream": True}) as answer:
        for line in answer.iter_lines():  # to the end: the next request finds the hub idle
            if first is None and line.startswith("data:") and '"response.output_text.delta"' in line:
                first = time.perf_counter() - start
    assert first is not None, "no text delta"
    return first


def plain_stream(client: httpx.Client, poll: float) -> float:
    return _first_delta(client, BODY)


def background_stream(client: httpx.Client, poll: float) -> float:
    return _first_delta(client, {**BODY, "background": True})


CASES = {"plain, whole answer": plain, "background, polled to the end": background,
         "plain stream, first delta": plain_stream, "background stream, first delta": background_stream}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=30, help="per case and round")
    parser.add_argument("--poll", type=float, default=20, help="ms between a background response's polls")
    parser.add_argument("--stack", choices=("production", "embedded"), default="embedded")
    args = parser.parse_args()
    processes: list[Process] = []
    try:
        processes, hub_url, secret = start_stack(args.stack, "bench-background-", worker_concurrency=4)
        client = httpx.Client(base_url=hub_url, headers={"authorization": f"Bearer {secret}"}, timeout=60)
        poll = args.poll / 1000
        for case in CASES.values():  # warm up, and the worker's first task
            for _ in range(5):
                case(client, poll)
        medians: dict[str, list[float]] = {name: [] for name in CASES}
        names = list(CASES)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                times = [CASES[name](client, poll) for _ in range(args.requests)]
                medians[name].append(statistics.median(times) * 1000)
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    finally:
        for process in reversed(processes):
            process.stop()
    print()
    print(f"background responses ({args.stack} stack, {args.rounds} rounds x {args.requests} sequential requests, "
          f"polled every {args.poll:g} ms; medians, ms)")  # fmt: skip
    for name, values in medians.items():
        print(f"{name:<34}{statistics.median(values):>9.1f}")
    print()
    print("reproduce: .venv/bin/python benchmarks/bench_background.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
