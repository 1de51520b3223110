"""Webhooks: how soon a client learns that a background response ended, told by a webhook against polling for it.

In front of the fast fake upstream (as our own service's deployment), a Responses request of 16 output tokens
created with ``background: true``; the time from its creation until the client knows it ended: by polling
``GET /v1/responses/{id}`` every ``--poll`` ms (as OpenAI's docs do, every 2 s there), or by a ``response.completed``
webhook reaching a receiver on loopback (its signature verified with the OpenAI SDK). Then a burst: ``--burst``
background responses created at once, and the time until every one's webhook came. The hub runs as ``make run``
does (``--stack embedded``: SQLite, the hub's own loop sends) or as operators do (``--stack production``:
PostgreSQL, Redis and one Celery worker that answers and sends). Sequential requests; the two cases alternate
within each round; medians over rounds.

    .venv/bin/python benchmarks/bench_webhooks.py [--rounds 5] [--requests 20] [--poll 200] [--burst 64]
        [--stack embedded]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
from openai import OpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import MODEL, start_stack  # noqa: E402
from tests.support.http_server import serving  # noqa: E402

BODY = {"model": MODEL, "input": "Say hello.", "max_output_tokens": 16, "background": True}
DONE = ("completed", "incomplete", "failed", "cancelled")


class Receiver:
    """A webhook receiver on loopback: each event verified, and the waiter for its response woken."""

    def __init__(self) -> None:
        self.arrived: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.secret = ""
        sdk = OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                event = sdk.webhooks.unwrap(body, dict(self.headers.items()), secret=receiver.secret)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                receiver.event(event.data.id).set()

            def log_message(self, *args) -> None:
                pass

        self.handler, self.url = Handler, ""  # the URL once it is served

    def event(self, response_id: str) -> threading.Event:
        with self.lock:
            return self.arrived.setdefault(response_id, threading.Event())


def polled(client: httpx.Client, hooks: Receiver, poll: float) -> float:
    start = time.perf_counter()
    response = client.post("/responses", json=BODY).json()
    while response["status"] not in DONE:
        time.sleep(poll)
        response = client.get(f"/responses/{response['id']}").json()
    assert response["status"] == "completed", response
    return time.perf_counter() - start


def told(client: httpx.Client, hooks: Receiver, poll: float) -> float:
    start = time.perf_counter()
    response = client.post("/responses", json=BODY).json()
    assert hooks.event(response["id"]).wait(60), f"no webhook for {response['id']}"
    return time.perf_counter() - start


def burst(client: httpx.Client, hooks: Receiver, count: int) -> tuple[float, float]:
    """``count`` background responses created at once (8 clients): seconds until all are created, until all told."""
    start = time.perf_counter()
    ids: list[str] = []
    lock = threading.Lock()

    def create(n: int) -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=60) as own:
            for _ in range(n):
                found = own.post("/responses", json=BODY).json()["id"]
                with lock:
                    ids.append(found)

    threads = [threading.Thread(target=create, args=(count // 8,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = time.perf_counter() - start
    for response_id in ids:
        assert hooks.event(response_id).wait(120), f"no webhook for {response_id}"
    return created, time.perf_counter() - start


CASES = {"polled": polled, "told by a webhook": told}


def measure(args: argparse.Namespace, hooks: Receiver) -> tuple[dict[str, list[float]], list[tuple[float, float]]]:
    """The stack started, the endpoint made, the rounds run (medians per round, ms) and the bursts; stopped after."""
    processes, hub_url, secret = start_stack(args.stack, "bench-webhooks-", worker_concurrency=8)
    try:
        client = httpx.Client(base_url=hub_url, headers={"authorization": f"Bearer {secret}"}, timeout=60)
        endpoint = client.post("/webhook_endpoints", json={"name": "bench", "url": hooks.url,
                                                           "event_types": ["response.completed"]})  # fmt: skip
        assert endpoint.status_code == 200, endpoint.text
        hooks.secret = endpoint.json()["signing_secret"]
        poll = args.poll / 1000
        for case in CASES.values():  # warm up, and the worker's first tasks
            for _ in range(5):
                case(client, hooks, poll)
        medians: dict[str, list[float]] = {name: [] for name in CASES}
        bursts: list[tuple[float, float]] = []
        names = list(CASES)
        for round_ in range(args.rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                times = [CASES[name](client, hooks, poll) for _ in range(args.requests)]
                medians[name].append(statistics.median(times) * 1000)
            bursts.append(burst(client, hooks, args.burst))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        return medians, bursts
    finally:
        for process in reversed(processes):
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20, help="per case and round")
    parser.add_argument("--poll", type=float, default=200, help="ms between a background response's polls")
    parser.add_argument("--burst", type=int, default=64, help="background responses created at once (8 clients)")
    parser.add_argument("--stack", choices=("production", "embedded"), default="embedded")
    args = parser.parse_args()
    os.environ["HUB_WEBHOOK_ALLOW_PRIVATE_URLS"] = "true"  # the receiver is on loopback
    hooks = Receiver()
    with serving(hooks.handler) as server:
        hooks.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        medians, bursts = measure(args, hooks)
    print()
    print(f"webhooks ({args.stack} stack, {args.rounds} rounds x {args.requests} sequential background responses of "
          f"16 tokens; medians, ms from creation until the client knows it ended)")  # fmt: skip
    print(f"{'polled every ' + format(args.poll, 'g') + ' ms':<34}{statistics.median(medians['polled']):>9.1f}")
    print(f"{'told by a webhook':<34}{statistics.median(medians['told by a webhook']):>9.1f}")
    created = statistics.median(b[0] for b in bursts) * 1000
    everyone = statistics.median(b[1] for b in bursts) * 1000
    print(
        f"burst of {args.burst} at once: all created in {created:.0f} ms, every webhook in {everyone:.0f} ms "
        f"({args.burst / everyone * 1000:.0f} responses answered and told a second)"
    )
    print()
    print("reproduce: .venv/bin/python benchmarks/bench_webhooks.py " + " ".join(sys.argv[1:]))
    print(json.dumps({"medians_ms": {k: statistics.median(v) for k, v in medians.items()}}))


if __name__ == "__main__":
    main()
