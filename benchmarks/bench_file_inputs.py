"""Files in a model's input: what reading one costs the gateway before the request goes on (``hub/api/file_inputs.py``:
base64 decoded or the URL fetched, then the text read, a PDF's by pypdf), per file kind and size. No cache: a file
is read again by every request that names it, so this is paid per request.

Cases, alternating within each round (medians over rounds of ``--requests`` each): a PDF of 10 and of 100 pages
(``tests/support/pdfs.text_pdf``, a sentence a page) and 100 KB of UTF-8 text, each sent as ``file_data`` and as a
``file_url`` on a server on loopback; and, for scale, the same request with no file (the resolver's pass over
the messages alone).

    .venv/bin/python benchmarks/bench_file_inputs.py [--rounds 5] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ.setdefault("HUB_FILE_URL_ALLOW_PRIVATE_URLS", "true")  # the server is on loopback


def documents() -> dict[str, tuple[bytes, str]]:
    from tests.support.pdfs import text_pdf

    sentence = "The quick brown fox jumps over the lazy dog number {}"
    text = " ".join(sentence.format(i) for i in range(2000)).encode()[: 100 * 1024]
    return {"/pdf-10": (text_pdf([sentence.format(i) for i in range(10)]), "application/pdf"),
            "/pdf-100": (text_pdf([sentence.format(i) for i in range(100)]), "application/pdf"),
            "/text-100k": (text, "text/plain")}  # fmt: skip


def body(part: dict | None) -> dict:
    content = [{"type": "text", "text": "Summarise:"}, *([part] if part else [])]
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


async def timed(request: dict, count: int) -> float:
    """Median seconds of ``count`` reads of ``request``'s files."""
    from accounts.authn import KeyContext
    from hub.api import file_inputs

    key = KeyContext(1, "sk-hub-bench", 1, "bench", frozenset({"m"}))
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await file_inputs.inline(key, request)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    import django

    django.setup()
    from tests.support.http_server import static_server

    files = documents()
    with static_server(files, {}) as server:
        cases = {"no file": body(None)}
        for path, (content, kind) in files.items():
            data = f"data:{kind};base64,{base64.b64encode(content).decode()}"
            cases[f"{path[1:]} ({len(content) // 1024} KB) file_data"] = body(
                {"type": "file", "file": {"filename": path[1:], "file_data": data}}
            )
            cases[f"{path[1:]} ({len(content) // 1024} KB) file_url"] = body(
                {"type": "file", "file": {"file_url": server.url + path}}
            )
        medians: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, request in cases.items():
                medians[name].append(asyncio.run(timed(request, args.requests)))
    print(f"files in the input, the gateway's read: median of {args.rounds} rounds x {args.requests} requests")
    print("| case | ms per request |\n|---|---|")
    for name, values in medians.items():
        print(f"| {name} | {statistics.median(values) * 1000:.2f} |")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_file_inputs.py --rounds {args.rounds} "
          f"--requests {args.requests}")  # fmt: skip


if __name__ == "__main__":
    main()
