"""A PDF as the hub reads it: its text layer by pypdf, page by page, a scanned page read by OCR where it is on
(``hub/ocr.py``: rendered by pypdfium2, read by Tesseract), and for a vision model its pages as images. A scanned page
is one without a text layer, or one whose text layer is a stamp (a page number, a header: under ``STAMP_CHARACTERS``)
on a picture that covers most of it; OCR reads the whole page then, stamp and all."""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from hub import ocr


class Failed(Exception):
    """A file the hub cannot read, with the code of OpenAI's vector store file errors to answer it with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


_PDFIUM = threading.Lock()  # PDFium is not thread-safe, not even across documents: one call at a time per process
STAMP_CHARACTERS = 80  # a text layer shorter than this over a page-sized picture is a stamp on a scan
PICTURED = 0.5  # the share of a page its pictures cover for it to count as a scan


def _rendered(content: bytes, pages: list[int] | None, scale: float | Callable[[float, float], float], *,
              most: int | None = None) -> Iterator:  # fmt: skip
    """Each page of ``pages`` (None: all) as a PIL image, ``scale`` pixels a point (``scale(width, height)`` where it
    is a callable). A PDF of more than ``most`` pages is refused before one is rendered. PDFium runs in the lock, a
    page at a time; what the caller does with an image (encode it, read it) runs outside it."""
    import pypdfium2

    with _PDFIUM:
        try:
            document = pypdfium2.PdfDocument(content)
        except pypdfium2.PdfiumError as exc:
            raise Failed("invalid_file", f"The PDF could not be read ({exc}).") from None
        count = len(document)
    try:
        if most is not None and count > most:
            raise Failed("file_too_large", f"The PDF has {count} pages; a vision model is given the pages of a PDF "
                         f"of up to {most} as images.")  # fmt: skip
        for index in range(count) if pages is None else pages:
            with _PDFIUM:
                page = document[index]
                width, height = page.get_size()  # in points
                bitmap = page.render(scale=scale(width, height) if callable(scale) else scale)
                picture = bitmap.to_pil()
                bitmap.close(), page.close()
            yield picture
    finally:
        with _PDFIUM:  # closed in the lock too: a finalizer would call PDFium from whichever thread collects it
            document.close()


def text(content: bytes, ocr_most: int | None = None) -> str:
    """A PDF's text, its pages apart by a blank line: each page's text layer (pypdf); where OCR is on, a page without
    one is read from its image, unless the PDF has more such pages than ``ocr_most`` or ``HUB_OCR_MAX_PAGES``."""
    from django.conf import settings
    from pypdf import PdfReader

    try:
        pages = [page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages]
    except Exception as exc:  # noqa: BLE001 - whatever a client's malformed PDF makes pypdf raise: an invalid file
        raise Failed("invalid_file", f"The PDF could not be read ({type(exc).__name__}).") from None
    if not ocr.enabled():
        return "\n\n".join(pages)
    scans = [i for i, page in enumerate(pages) if not page.strip()]
    stamped = [i for i, page in enumerate(pages) if 0 < len(page.strip()) < STAMP_CHARACTERS]
    if stamped:
        scans = sorted(scans + _pictured(content, stamped))
    most = settings.HUB_OCR_MAX_PAGES if ocr_most is None else min(ocr_most, settings.HUB_OCR_MAX_PAGES)
    if scans and len(scans) <= most:
        for i, read in zip(scans, _read(content, scans), strict=True):
            pages[i] = read if read.strip() else pages[i]  # a stamp on a blank picture: the stamp's text stays
    return "\n\n".join(pages)


def _pictured(content: bytes, indexes: list[int]) -> list[int]:
    """Of the pages ``indexes``, those whose pictures (image objects, clipped to the page) cover ``PICTURED`` of
    it. Overlapping pictures count twice: a scan is one picture a page."""
    import pypdfium2
    import pypdfium2.raw as pdfium

    found = []
    with _PDFIUM:
        try:
            document = pypdfium2.PdfDocument(content)
        except pypdfium2.PdfiumError:
            return []  # pypdf read it; without PDFium's reading too, nothing is rendered to be read either
        try:
            for index in indexes:
                page = document[index]
                width, height = page.get_size()
                covered = 0.0
                for picture in page.get_objects(filter=(pdfium.FPDF_PAGEOBJ_IMAGE,)):
                    left, bottom, right, top = picture.get_bounds()
                    wide = max(0.0, min(right, width) - max(left, 0.0))
                    covered += wide * max(0.0, min(top, height) - max(bottom, 0.0))
                page.close()
                if covered >= PICTURED * width * height:
                    found.append(index)
        finally:
            document.close()
    return found


def _read(content: bytes, scans: list[int]) -> list[str]:
    """Those pages' text by OCR, a Tesseract process a core at once (one OpenMP thread each, ``ocr.image_text``),
    rendered one after another as they are read: at most a page per core, and one, waiting in memory (~8 MB each)."""
    workers = min(len(scans), os.cpu_count() or 1)
    texts: list[str] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="ocr") as pool:
        reading: deque = deque()
        for image in _rendered(content, scans, ocr.DPI / 72):
            reading.append(pool.submit(ocr.image_text, image))
            if len(reading) >= workers:
                texts.append(reading.popleft().result())
        texts.extend(future.result() for future in reading)
    return texts


def page_images(content: bytes, longest: int, most: int) -> list[bytes]:
    """A PDF's pages as PNG images, each rendered so that its longer side is ``longest`` pixels (its proportions
    kept). A PDF of more than ``most`` pages is refused before one is rendered."""
    images = []
    for picture in _rendered(content, None, lambda width, height: longest / max(width, height, 1.0), most=most):
        out = io.BytesIO()
        picture.save(out, "PNG", compress_level=1)  # text on white: small already, and 3x faster than 6
        images.append(out.getvalue())
    return images
