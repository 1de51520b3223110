"""What reading a scan costs (``hub/pdfs.text`` with OCR on: each page without a text layer rendered by pypdfium2 at
300 dpi and read by a Tesseract process with one OpenMP thread, ``hub/ocr.py``), against Tesseract as pytesseract or
its command line runs it by default (the peer: all cores' threads) on the same pages already rendered, and against a
PDF of the same sentences as a text layer (no OCR).

The scans are US Letter pages of ``tests/support/pdfs.printed_scan`` (12 lines of printed text each, Pillow's
font, 144 dpi), ``--pages`` pages a PDF. Ours and the peer's alternate, ``--rounds`` each; medians in seconds a PDF
and pages a second, and the share of the sentences found exactly in the text read (ours and the peer's are checked
to be the same text).

    .venv/bin/python benchmarks/bench_ocr.py [--rounds 5] [--pages 1 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
os.environ["HUB_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-ocr-")
os.environ.pop("HUB_DATABASE_URL", None)

LINES = 12


def peer_text(image, languages: str) -> str:
    """Tesseract as pytesseract runs it: this process's environment (no thread limit), the image in a file."""
    import subprocess

    with tempfile.NamedTemporaryFile(suffix=".png") as png:
        image.save(png.name, compress_level=1)
        done = subprocess.run(["tesseract", png.name, "-", "-l", languages], capture_output=True, check=True)
    return done.stdout.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    import django

    django.setup()
    import subprocess

    from django.conf import settings

    from hub import ocr, pdfs
    from tests.support.pdfs import mixed_pdf, printed_scan, text_pdf

    assert settings.HUB_OCR_LANGUAGES, "OCR is off: install Debian's tesseract-ocr"
    version = subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"{version}, languages {settings.HUB_OCR_LANGUAGES}, "
          f"{os.cpu_count()} CPUs; median of {args.rounds}, seconds a PDF (pages a second)")  # fmt: skip
    print("| pages | ours: render + OCR | Tesseract's default threads (rendered) | text layer | sentences read "
          "exactly |\n"
          "|---|---|---|---|---|")  # fmt: skip
    for count in args.pages:
        sentences = [f"Invoice {1000 + i} of page {p + 1} was paid in full." for p in range(count)
                     for i in range(LINES)]  # fmt: skip
        scans = [printed_scan(sentences[p * LINES : (p + 1) * LINES]) for p in range(count)]
        scan, layer = mixed_pdf(scans), text_pdf(sentences[:count])  # the text layer: a sentence a page
        rendered = [image.convert("L") for image in pdfs._rendered(scan, None, ocr.DPI / 72)]
        times: dict[str, list[float]] = {"ours": [], "peer": [], "layer": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            text = pdfs.text(scan)
            t1 = time.perf_counter()
            os.environ.pop("OMP_THREAD_LIMIT", None)  # ours sets its own; the peer: Tesseract's default
            peer = [peer_text(image, settings.HUB_OCR_LANGUAGES) for image in rendered]
            t2 = time.perf_counter()
            pdfs.text(layer)
            t3 = time.perf_counter()
            times["ours"].append(t1 - t0), times["peer"].append(t2 - t1), times["layer"].append(t3 - t2)
            assert "\n\n".join(peer) == text
        found = sum(sentence in text for sentence in sentences) / len(sentences)
        shown = [statistics.median(times[name]) for name in ("ours", "peer", "layer")]
        cells = " | ".join(f"{s:.3f} ({count / s:.1f})" for s in shown)
        print(f"| {count} | {cells} | {found:.0%} |", flush=True)
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_ocr.py --rounds {args.rounds} "
          f"--pages {' '.join(map(str, args.pages))}")  # fmt: skip


if __name__ == "__main__":
    main()
