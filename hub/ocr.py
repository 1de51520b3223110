"""Scanned pages read by OCR: a PDF page without a text layer (``hub/pdfs.py``) is rendered and read by Tesseract
(Debian's ``tesseract-ocr``, a process per page) in ``HUB_OCR_LANGUAGES`` (Tesseract's names joined by ``+``:
``eng+deu``; ``none``: off). By default English where Tesseract is installed (the hub's image has it), else off: a
scan then has no text, and a text model is refused it. The settings check at start that Tesseract and each language are
there (``missing``), so a typo fails then, not in a request."""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess

DPI = 300  # Tesseract's documented best resolution for text of ordinary sizes
TIMEOUT = 120  # seconds for one page, far above the ~1 s a page of text takes
BLANK = 200  # a page whose darkest pixel is lighter than this (of 255) has no ink: not worth a Tesseract run
log = logging.getLogger(__name__)


def default_languages() -> str:
    """``eng`` where Tesseract is on the PATH (Debian's package always brings English), else "" (off)."""
    return "eng" if shutil.which("tesseract") else ""


def missing(languages: str) -> list[str]:
    """The languages of ``languages`` (``eng+deu``) that this machine's Tesseract lacks (all of them without it)."""
    wanted = [language for language in languages.split("+") if language]
    if not shutil.which("tesseract"):
        return wanted
    listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30, check=False)
    lines = listed.stdout.splitlines()[1:] if listed.returncode == 0 else []  # after its "List of ..." header
    installed = {line.strip() for line in lines}
    return [language for language in wanted if language not in installed]


def enabled() -> bool:
    from django.conf import settings

    return bool(settings.HUB_OCR_LANGUAGES)


def image_text(image) -> str:
    """The text Tesseract reads in a PIL image (a page rendered at ``DPI``, grey), its lines as it found them; "" where
    Tesseract fails (logged: the machine's problem, not the file's; the page is then as a scan without OCR).

    Tesseract runs as a process of its own on the image as PGM (uncompressed: nothing to encode) with one OpenMP
    thread: its default of all cores is 3x slower on a 2-core machine (2.6 s against 0.86 s a page with our
    rendering, ``benchmarks/bench_ocr.py``), and ``pdfs.py`` reads a page per core at once. (pytesseract would pass
    this process's own environment, so cannot set that for Tesseract alone.)"""
    from django.conf import settings

    grey = image.convert("L")
    if grey.getextrema()[0] > BLANK:  # nothing darker than paper: no text to read (a blank page of a scan)
        return ""
    out = io.BytesIO()
    grey.save(out, "PPM")  # a PGM
    command = ["tesseract", "-", "-", "-l", settings.HUB_OCR_LANGUAGES]
    try:
        done = subprocess.run(command, input=out.getvalue(), capture_output=True, timeout=TIMEOUT, check=False,
                              env={**os.environ, "OMP_THREAD_LIMIT": "1"})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("OCR of a page failed: %s", exc)
        return ""
    if done.returncode != 0:
        log.warning("OCR of a page failed (Tesseract exited %d): %s", done.returncode, done.stderr[-500:])
        return ""
    return done.stdout.decode("utf-8", "replace").strip()
