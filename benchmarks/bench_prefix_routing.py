"""Prefix-aware routing against least-outstanding, with two inference services serving the same model.

Starts two ``python -m inference serve`` processes with the packaged SmolLM2-135M chat model (one torch thread
each, on this 2-core machine) and the hub on the embedded stack, registered as two deployments of one model. Then
``--conversations`` multi-turn conversations (each its own ~300-token system prompt, ``--turns`` questions, short
answers) are replayed through the hub all at once, each a user who reads an answer for 0.2-2 s before sending the
next turn (the history so far), once with
``HUB_PREFIX_ROUTING=true`` and once with ``false`` (the hub restarted between; fresh conversations each run, so no
run finds another's prefixes cached), alternating ``--rounds`` times. Reported per mode: the share of prompt tokens
the services found cached (``usage.prompt_tokens_details.cached_tokens``, as the clients saw it), how the requests
split over the two services, and the total time.

    .venv/bin/python benchmarks/bench_prefix_routing.py [--conversations 8] [--turns 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_load import MODEL, SUBJECTS, hub_environment, prepare_hub_data  # noqa: E402

from tests.support.django_env import setup_django  # noqa: E402
from tests.support.processes import Process, free_port  # noqa: E402

QUESTIONS = ["What should I know first?", "Give me one example.", "Why does it matter?", "Summarise in a sentence.",
             "What is a common mistake?", "Any tip for a beginner?"]  # fmt: skip


def system_prompt(rng: random.Random) -> str:
    subject = rng.choice(SUBJECTS)
    facts = " ".join(f"Fact {i}: {subject} and {rng.choice(SUBJECTS)} share trait number {rng.randint(1, 999)}."
                     for i in range(24))  # fmt: skip
    return f"You are a patient tutor about {subject}. Answer briefly. {facts}"


async def conversation(client: AsyncOpenAI, rng: random.Random, turns: int, stats: dict) -> None:
    messages = [{"role": "system", "content": system_prompt(rng)}]
    for turn in range(turns):
        await asyncio.sleep(rng.uniform(0.2, 2.0))  # the user reads, then types the next question
        messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
        answer = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
        usage = answer.usage
        stats["prompt"] += usage.prompt_tokens
        stats["cached"] += usage.prompt_tokens_details.cached_tokens
        messages.append({"role": "assistant", "content": answer.choices[0].message.content or ""})


async def replay(base_url: str, secret: str, seed: int, conversations: int, turns: int) -> dict:
    """Every conversation at once, each a user who reads an answer before asking the next question."""
    stats = {"prompt": 0, "cached": 0}
    client = AsyncOpenAI(base_url=base_url, api_key=secret, max_retries=0, timeout=600)
    start = time.perf_counter()
    await asyncio.gather(*(conversation(client, random.Random(seed * 1000 + i), turns, stats)
                           for i in range(conversations)))  # fmt: skip
    stats["seconds"] = time.perf_counter() - start
    await client.close()
    return stats


def served_requests(urls: list[str]) -> list[float]:
    """Each service's chat requests so far (its Prometheus counter)."""
    import httpx

    counts = []
    for url in urls:
        text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
        counts.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.startswith("inference_requests_total{") and 'route="chat"' in line))  # fmt: skip
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-prefix-routing-"))
    (data_dir / "static").mkdir()
    hub_env = hub_environment("embedded", data_dir)
    base_env = {k: v for k, v in os.environ.items() if k not in ("HUB_DATABASE_URL", "HUB_REDIS_URL")}
    services: list[Process] = []
    results: dict[str, list[dict]] = {"prefix-aware": [], "least-outstanding": []}
    try:
        urls = []
        for name in ("inference-a", "inference-b"):
            port = free_port()
            cmd = [sys.executable, "-m", "inference", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--threads", "1", "--model", f"{MODEL}=packaged:smollm2:chat"]  # fmt: skip
            print(f"starting {name}...", flush=True)
            services.append(Process(name, cmd, base_env))
            services[-1].wait_healthy(f"http://127.0.0.1:{port}/health", 900)
            urls.append(f"http://127.0.0.1:{port}/v1")
        setup_django({**hub_env, "HUB_LOG_LEVEL": "WARNING"})
        secret, _, _ = prepare_hub_data(urls[0])
        from accounts import services as hub_services
        from hub.inference_client import model_cards

        hub_services.sync_deployment(urls[1], model_cards(urls[1]))
        seed = 0
        for _ in range(args.rounds):
            for mode in results:  # alternating, fresh conversations each run
                hub_port = free_port()
                env = {**base_env, **hub_env, "HUB_PORT": str(hub_port),
                       "HUB_PREFIX_ROUTING": "true" if mode == "prefix-aware" else "false"}  # fmt: skip
                hub = Process("hub", [sys.executable, "manage.py", "serve", "--no-bootstrap"], env)
                try:
                    hub.wait_healthy(f"http://127.0.0.1:{hub_port}/health", 120)
                    before = served_requests(urls)
                    seed += 1
                    stats = asyncio.run(replay(f"http://127.0.0.1:{hub_port}/v1", secret, seed, args.conversations,
                                               args.turns))  # fmt: skip
                    stats["split"] = [a - b for a, b in zip(served_requests(urls), before, strict=True)]
                    results[mode].append(stats)
                    print(f"{mode}: cached {stats['cached']:,} of {stats['prompt']:,} prompt tokens, requests per "
                          f"service {stats['split']}, {stats['seconds']:.1f} s", flush=True)  # fmt: skip
                finally:
                    hub.stop()
    finally:
        for process in reversed(services):
            process.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"\n{args.conversations} concurrent conversations x {args.turns} turns, two services; "
          f"medians of {args.rounds} rounds")  # fmt: skip
    for mode, runs in results.items():
        rate = statistics.median(r["cached"] / r["prompt"] for r in runs)
        seconds = statistics.median(r["seconds"] for r in runs)
        print(f"  {mode:18} prefix cache hit rate {rate:.1%}, {seconds:.1f} s")
    print(f"reproduce: .venv/bin/python benchmarks/bench_prefix_routing.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
