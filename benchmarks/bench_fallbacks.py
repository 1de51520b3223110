"""What a fallback costs a request: the hub against LiteLLM's proxy, both in front of the same fast fake upstream.

Each gateway serves ``fake-chat`` (the fake upstream) and two models that fall back to it: ``dead-primary``, whose
deployment nobody listens at (a provider unreachable), and ``busy-primary``, whose deployment answers 503 (stopping,
or overloaded). Non-streaming chat completions at concurrency 1 and 8 to each model; "fallback cost" is a model's
median latency minus ``fake-chat``'s on the same gateway. The hub runs as operators run it (``HUB_ENV=prod``,
PostgreSQL and Redis: ``bench_gateway.start_hub``), its fallbacks set with ``manage.py set_fallbacks``; LiteLLM with
its router's ``fallbacks``, no retries (``num_retries: 0``) and ``allowed_fails: 1`` with a 10 s ``cooldown_time``
(without ``allowed_fails`` it never cools down a model of one deployment, and tries it on every request). Targets
alternate within each round; medians over rounds.

    .venv/bin/python benchmarks/bench_fallbacks.py [--rounds 5] [--requests 300] [--litellm PATH]

LiteLLM is the optional peer (``bench_gateway.py`` says how to install it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import (  # noqa: E402
    LITELLM_MASTER_KEY,
    MODEL,
    Result,
    Target,
    _manage,
    alternating,
    median,
    start_hub,
    start_upstream,
)
from benchmarks.bench_gateway import _load as load  # noqa: E402
from tests.support.processes import Process, free_port  # noqa: E402

MODELS = (MODEL, "dead-primary", "busy-primary")
CASES = [(model, concurrency) for concurrency in (1, 8) for model in MODELS]


def start_refusing(status: int) -> tuple[Process, str]:
    port = free_port()
    cmd = [sys.executable, "benchmarks/fake_upstream.py", "--port", str(port), "--refuse", str(status)]
    upstream = Process(f"bench-refusing-{status}", cmd)
    upstream.wait_healthy(f"http://127.0.0.1:{port}/v1/models", 180, ok=lambda code: code < 500)
    return upstream, f"http://127.0.0.1:{port}/v1"


def set_up_hub_fallbacks(env: dict, dead: str, busy: str) -> None:
    for name, url in (("dead-primary", dead), ("busy-primary", busy)):
        _manage(env, "register_model", name, "--kind", "chat", "--max-sequence-length", "8192",
                "--max-output-length", "4096", "--deployment", url, "--external")  # fmt: skip
        _manage(env, "grant_models", "bench", name)
        _manage(env, "set_fallbacks", name, MODEL)


def start_litellm(litellm: str, upstream: str, dead: str, busy: str, data_dir: Path) -> tuple[Process, str]:
    port = free_port()
    entries = "".join(
        f"  - model_name: {name}\n    litellm_params:\n      model: openai/{MODEL}\n      api_base: {url}\n"
        "      api_key: fake\n"
        for name, url in ((MODEL, upstream), ("dead-primary", dead), ("busy-primary", busy))
    )
    config = data_dir / "litellm.yaml"
    config.write_text(
        f"model_list:\n{entries}"
        f"general_settings:\n  master_key: {LITELLM_MASTER_KEY}\n"
        # a model group of one deployment is cooled down only with allowed_fails set (LiteLLM PR 8668); 10 s, as the hub
        "router_settings:\n  allowed_fails: 1\n  cooldown_time: 10\n"
        "litellm_settings:\n  telemetry: false\n  num_retries: 0\n"
        f'  fallbacks: [{{"dead-primary": ["{MODEL}"]}}, {{"busy-primary": ["{MODEL}"]}}]\n'
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    cmd = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    proc = Process("bench-litellm", cmd, env)
    proc.wait_healthy(f"http://127.0.0.1:{port}/health/liveliness", 180, ok=lambda status: status < 500)
    return proc, f"http://127.0.0.1:{port}/v1"


def _load(target: Target, model: str, concurrency: int, total: int) -> Result:
    request = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16}
    return asyncio.run(load(target, concurrency, total, False, request))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300, help="calls per gateway, model, concurrency and round")
    parser.add_argument("--litellm", default=shutil.which("litellm") or "/root/litellm-venv/bin/litellm")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-fallbacks-"))
    processes: list[Process] = []
    try:
        (upstream, upstream_url), (dead_proc, busy_url) = start_upstream(), start_refusing(503)
        processes += [upstream, dead_proc]
        dead_url = f"http://127.0.0.1:{free_port()}/v1"
        hub, hub_url, hub_key, env = start_hub(upstream_url, "production", data_dir)
        processes.append(hub)
        set_up_hub_fallbacks(env, dead_url, busy_url)
        targets = [Target("hub", hub_url, hub_key)]
        if Path(args.litellm).exists():
            litellm, litellm_url = start_litellm(args.litellm, upstream_url, dead_url, busy_url, data_dir)
            processes.append(litellm)
            targets.append(Target("litellm", litellm_url, LITELLM_MASTER_KEY))
        else:
            print(f"LiteLLM not found at {args.litellm}: measuring the hub alone")
        time.sleep(6)  # the hub reads a model's deployments and fallbacks at most every 5 s
        for target in targets:  # warm up: connections, caches, first-request imports, each model once
            for model in MODELS:
                _load(target, model, 2, 20)

        results = alternating(targets, CASES, args.rounds,
                              lambda target, case: _load(target, *case, args.requests))  # fmt: skip
        report(results, targets, args)
    finally:
        for process in reversed(processes):
            process.stop()


def report(results, targets, args) -> None:
    print()
    print(f"fallbacks ({args.rounds} rounds of {args.requests} requests, medians; times in ms)")
    print("'fallback cost': the model's p50 minus fake-chat's on the same gateway at the same concurrency")
    header = f"{'model':<14}{'c':>3}  {'gateway':<9}{'req/s':>8}{'p50':>8}{'p99':>8}{'fallback cost p50':>19}"
    print(header)
    print("-" * len(header))
    for model, concurrency in CASES:
        for target in targets:
            runs = results[(model, concurrency)][target.name]
            direct = median([r.pct(0.5) for r in results[(MODEL, concurrency)][target.name]])
            p50, p99 = median([r.pct(0.5) for r in runs]), median([r.pct(0.99) for r in runs])
            cost = "" if model == MODEL else f"{p50 - direct:>19.2f}"
            print(f"{model:<14}{concurrency:>3}  {target.name:<9}{median([r.rps for r in runs]):>8.0f}{p50:>8.2f}"
                  f"{p99:>8.2f}{cost}")  # fmt: skip
    print()
    print("reproduce: .venv/bin/python benchmarks/bench_fallbacks.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
