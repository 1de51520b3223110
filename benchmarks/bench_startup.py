"""From the README's ``make run`` to a hub answering with the three packaged models loaded: cold and warm.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 3]

cold: a new data directory and an empty ``INFERENCE_CACHE_DIR`` (the GGUF files converted, the models quantized
and their prepared weights written, migrations, the demo set up): a first start on a new machine.
warm: the same command again on the same data and cache (a restart).
Each round runs a cold start, then a warm one; the figures are medians over the rounds, with the per-model load
times the start banner prints. Measured: from launching ``make run`` to the hub's ``/health`` answering 200 (the
hub starts serving once the inference service has loaded every model and the catalog is synced).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hub.inference_client import InferenceUnavailable, wait_ready  # noqa: E402
from tests.support.processes import free_port  # noqa: E402


def start(data: Path, cache: Path, timeout: float = 1200) -> tuple[float, dict[str, float]]:
    """Seconds until the hub answers, and the banner's per-model load seconds; then Ctrl-C."""
    port, inference_port = free_port(), free_port()
    env = {
        **os.environ, "HUB_DATA_DIR": str(data), "INFERENCE_CACHE_DIR": str(cache), "HUB_PORT": str(port),
        "HUB_INFERENCE_URL": f"http://127.0.0.1:{inference_port}/v1", "HUB_DATABASE_URL": "", "HUB_REDIS_URL": "",
    }  # fmt: skip
    log = data / "bench-startup.log"
    began = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        try:  # the hub answers /health at its root once the inference service is ready and synced
            wait_ready(f"http://127.0.0.1:{port}", timeout, lambda: process.poll() is None, poll=0.1)
        except InferenceUnavailable as exc:
            raise RuntimeError(f"{exc}:\n{log.read_text()}") from None
        seconds = time.monotonic() - began
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
    banner = re.search(r"inference service ready in [\d.]+ s: (.*)", log.read_text())
    loads = {m: float(s) for m, s in re.findall(r"(\S+) \(([\d.]+) s\)", banner.group(1))} if banner else {}
    return seconds, loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, dict[str, float]]]] = {"cold": [], "warm": []}
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            data, cache = Path(tmp) / "data", Path(tmp) / "cache"
            data.mkdir()
            for kind in ("cold", "warm"):
                seconds, loads = start(data, cache)
                results[kind].append((seconds, loads))
                print(f"round {round_ + 1} {kind}: {seconds:.1f} s  {loads}", flush=True)
    print("\n| start | make run → hub answering (median) | per model (median) |\n|---|---|---|")
    for kind, runs in results.items():
        models = sorted({m for _, loads in runs for m in loads})
        per_model = ", ".join(
            f"{m} {statistics.median(loads[m] for _, loads in runs if m in loads):.1f} s" for m in models
        )
        print(f"| {kind} | {statistics.median(s for s, _ in runs):.1f} s | {per_model} |")
    print(
        f"\n{args.rounds} rounds on {os.cpu_count()} cores; command: {sys.executable} benchmarks/bench_startup.py "
        f"--rounds {args.rounds}"
    )


if __name__ == "__main__":
    main()
