"""A small PDF written by hand (no PDF library writes text without another dependency): one page per text, each
shown in Helvetica, with a correct cross-reference table, as a word processor's export has; and a scan (pictures
of pages, no text layer), as Pillow writes one: blank but for a dark band, or printed (what OCR reads); and a PDF of
both kinds of pages."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def text_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per string (ASCII, no parentheses or backslashes)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 712 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font} 0 R "
                       f">> >> /Contents {4 + 2 * i} 0 R >>".encode())  # fmt: skip
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    table = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, table))
    return out.getvalue()


def scan_pdf(pages: int = 1) -> bytes:
    """A PDF of ``pages`` scanned pages: each a picture (US Letter at 72 dpi, a dark band at a height of its own),
    no text."""
    scans = []
    for i in range(pages):
        pixels = np.full((792, 612), 255, dtype=np.uint8)
        pixels[100 + 200 * i : 160 + 200 * i, 72:540] = 0
        scans.append(Image.fromarray(pixels))
    out = io.BytesIO()
    scans[0].save(out, "PDF", resolution=72.0, save_all=True, append_images=scans[1:])
    return out.getvalue()


def printed_scan(lines: list[str]) -> Image.Image:
    """A scanned page (US Letter at 144 dpi) with ``lines`` printed on it, a line apart: what OCR reads."""
    from PIL import ImageDraw, ImageFont

    page = Image.new("L", (612 * 2, 792 * 2), 255)
    draw, font = ImageDraw.Draw(page), ImageFont.load_default(size=28)  # Pillow's own FreeType font
    for i, line in enumerate(lines):
        draw.text((144, 200 + 60 * i), line, font=font, fill=0)
    return page


def mixed_pdf(pages: list[str | Image.Image | tuple[Image.Image, str]]) -> bytes:
    """A PDF of ``pages`` in order: a string a page with that text layer (``text_pdf``), an image a scanned page, an
    (image, text) pair a scanned page with that text layer stamped over it (a page number, as a scanner's software
    or a PDF editor adds one)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in pages:
        out = io.BytesIO()
        if isinstance(page, str):
            out.write(text_pdf([page]))
        else:
            (page[0] if isinstance(page, tuple) else page).save(out, "PDF", resolution=144.0)
        made = writer.add_page(PdfReader(io.BytesIO(out.getvalue())).pages[0])
        if isinstance(page, tuple):  # merged once the page is the writer's (pypdf 7 merges only there)
            made.merge_page(PdfReader(io.BytesIO(text_pdf([page[1]]))).pages[0])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
