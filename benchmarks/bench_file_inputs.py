"""Files in a model's input: what reading one costs the gateway before the request goes on (``hub/api/file_inputs.py``:
base64 decoded, the URL fetched or the stored file read, then its text, a PDF's by pypdf), per kind and size. A stored
file's text is kept by the process, and a document's sent as data or by URL by its digest (UTF-8 text is read again).

Cases, alternating within each round (medians over rounds of ``--requests`` each): a PDF of 10 and of 100 pages
(``tests/support/pdfs.text_pdf``, a sentence a page) and 100 KB of UTF-8 text, each named by ``file_id`` (stored in
a SQLite database of the run's own), sent as ``file_data`` and as a ``file_url`` on a server on loopback, each read for
the first time and read before (its text kept by the process); each PDF sent as ``file_data`` to a vision model (its
text and its pages rendered as PNGs, at ``detail`` auto and low: ``hub/pdfs.page_images``, pypdfium2), first and
sent before; and, for scale, the same request with no file (the resolver's pass over the messages alone).

    .venv/bin/python benchmarks/bench_file_inputs.py [--rounds 5] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ.setdefault("HUB_FILE_URL_ALLOW_PRIVATE_URLS", "true")  # the server is on loopback
os.environ["HUB_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-file-inputs-")  # SQLite: the stored files' database
os.environ.pop("HUB_DATABASE_URL", None)


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


async def timed(request: dict, count: int, tenant_id: int, cold: bool, vision: bool) -> float:
    """Median seconds of ``count`` reads of ``request``'s files (``cold``: the texts kept forgotten first;
    ``vision``: as a vision model gets them, a PDF's pages too)."""
    from accounts.authn import KeyContext
    from hub.api import file_inputs

    key = KeyContext(1, "sk-hub-bench", tenant_id, "bench", frozenset({"m"}))
    times = []
    for _ in range(count):
        if cold:
            file_inputs._texts = file_inputs._Texts()
        start = time.perf_counter()
        await file_inputs.inline(key, request, vision=vision)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    import django

    django.setup()
    from django.core.management import call_command

    from accounts import files as stored_files
    from accounts import services
    from tests.support.http_server import static_server

    call_command("migrate", verbosity=0)  # a database of its own (HUB_DATA_DIR: a temporary directory)
    tenant = services.create_tenant("bench", "Bench")
    files = documents()
    with static_server(files, {}) as server:
        cases = {"no file": (body(None), False, False)}
        for path, (content, kind) in files.items():
            row = stored_files.create(tenant_id=tenant.pk, api_key_id=None, purpose="user_data", filename=path[1:],
                                      content=content)  # fmt: skip
            part = {"type": "file", "file": {"file_id": row.pk}}
            cases[f"{path[1:]} ({len(content) // 1024} KB) file_id, first read"] = (body(part), True, False)
            cases[f"{path[1:]} ({len(content) // 1024} KB) file_id, read before"] = (body(part), False, False)
            data = f"data:{kind};base64,{base64.b64encode(content).decode()}"
            sent = {"file_data": {"filename": path[1:], "file_data": data}, "file_url": {"file_url": server.url + path}}
            for how, file in sent.items():
                for when, cold in (("first read", True), ("sent before", False)):
                    cases[f"{path[1:]} ({len(content) // 1024} KB) {how}, {when}"] = (
                        body({"type": "file", "file": file}), cold, False)  # fmt: skip
            if kind != "application/pdf":
                continue
            for detail, when, cold in (("auto", "first read", True), ("low", "first read", True),
                                       ("auto", "sent before", False)):  # fmt: skip
                file = {**sent["file_data"], "detail": detail}
                cases[f"{path[1:]} ({len(content) // 1024} KB) file_data to a vision model, detail {detail}, "
                      f"{when}"] = (body({"type": "file", "file": file}), cold, True)  # fmt: skip
        medians: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (request, cold, vision) in cases.items():
                medians[name].append(asyncio.run(timed(request, args.requests, tenant.pk, cold, vision)))
    print(f"files in the input, the gateway's read: median of {args.rounds} rounds x {args.requests} requests")
    print("| case | ms per request |\n|---|---|")
    for name, values in medians.items():
        print(f"| {name} | {statistics.median(values) * 1000:.2f} |")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_file_inputs.py --rounds {args.rounds} "
          f"--requests {args.requests}")  # fmt: skip


if __name__ == "__main__":
    main()
