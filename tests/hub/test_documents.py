"""A file's text as the hub reads it (``hub/documents.py``), for vector stores and for files in a model's input:
UTF-8 text, a PDF's text layer (a scanned page's text read by OCR), a Word document's paragraphs and tables in order,
a PowerPoint deck's slides and notes, an Excel workbook's sheets row by row (.xlsx and .xls alike), a legacy Word
document's (.doc) text as a .docx's, an HTML page's text as laid out; what is none of those (a legacy .ppt among
them), or is broken, refused with OpenAI's codes."""

from __future__ import annotations

import codecs
import datetime
import io
import random
import struct
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from hub.documents import Failed, read_text
from tests.support.images import photo
from tests.support.legacy_word import legacy_word_document
from tests.support.office import legacy_compound, legacy_workbook, slide_deck, word_document, workbook
from tests.support.pdfs import mixed_pdf, printed_scan, scan_pdf, text_pdf


def test_utf8_text_and_pdfs_are_read():
    assert read_text("\ufeffhello".encode()) == "hello"
    for codec in ("utf-16", "utf-16-be"):  # UTF-16 by its byte order mark (OpenAI takes UTF-8, UTF-16 and ASCII)
        assert read_text(codecs.BOM_UTF16_BE * (codec == "utf-16-be") + "Grüße, 世界".encode(codec)) == "Grüße, 世界"
    assert read_text(text_pdf(["Paris is the capital of France.", "Page two."])) == (
        "Paris is the capital of France.\n\nPage two."
    )


INVOICE = ["Invoice 4471 was paid in full.", "The rover is called Pebble."]


def test_a_pdfs_scanned_pages_are_read_by_ocr(settings):
    """Tesseract reads the pages without a text layer (English by default, where it is installed: CI installs it);
    the pages with one keep it. A blank scan is still no text."""
    assert settings.HUB_OCR_LANGUAGES == "eng"
    pdf = mixed_pdf(["Page one has text.", printed_scan(INVOICE), "Page three too."])
    assert read_text(pdf) == "Page one has text.\n\n" + "\n\n".join(INVOICE) + "\n\nPage three too."
    assert read_text(pdf, ocr_most=0) == "Page one has text.\n\n\n\nPage three too."  # more scans than read
    with pytest.raises(Failed) as caught:  # a blank scan: OCR finds nothing, and the text model has nothing
        read_text(scan_pdf(2))
    assert caught.value.code == "invalid_file" and "scan" in caught.value.message
    settings.HUB_OCR_MAX_PAGES = 0  # the most pages without a text layer that a PDF may have to be read
    assert read_text(pdf) == "Page one has text.\n\n\n\nPage three too."
    settings.HUB_OCR_MAX_PAGES, settings.HUB_OCR_LANGUAGES = 500, ""  # off (HUB_OCR_LANGUAGES=none)
    assert read_text(pdf) == "Page one has text.\n\n\n\nPage three too."


def test_a_scan_under_a_stamp_is_read_by_ocr_and_a_page_of_text_is_not():
    """A page number stamped over a scan (a text layer under STAMP_CHARACTERS on a page a picture covers) does not
    hide the scan: OCR reads the whole page. A short page without a picture, and a picture under a long text layer
    (a scan already OCR'd), keep their text layers."""
    text = read_text(mixed_pdf([(printed_scan(INVOICE), "Page 2 of 9"), "Short page."]))
    assert all(line in text for line in INVOICE) and "Page 2 of 9" in text  # the stamp is on the page read
    assert text.endswith("\n\nShort page.")
    layer = "This scan was read before and carries its text layer, as OCRmyPDF writes one. " * 2
    assert read_text(mixed_pdf([(printed_scan(INVOICE), layer)])).strip() == layer.strip()
    blank = Image.new("L", (1224, 1584), 255)  # a stamp on a blank picture: OCR finds nothing, the stamp stays
    assert read_text(mixed_pdf([(blank, "Page 3 of 9")])) == "Page 3 of 9"


def test_a_blank_page_is_not_given_to_tesseract(monkeypatch):
    from hub import ocr

    monkeypatch.setattr(ocr.subprocess, "run", lambda *a, **k: pytest.fail("Tesseract ran on a blank page"))
    assert ocr.image_text(Image.new("L", (1224, 1584), 255)) == ""
    assert ocr.image_text(Image.new("RGB", (100, 100), (230, 230, 230))) == ""  # grey paper, no ink


def test_a_word_documents_paragraphs_and_tables_are_read_in_order():
    document = word_document(["Quarterly report.", "Revenue grew."], [["Region", "Sales"], ["North", "12"]],
                             after="The end.")  # fmt: skip
    assert read_text(document) == "Quarterly report.\nRevenue grew.\nRegion | Sales\nNorth | 12\nThe end."


def test_a_legacy_word_document_is_read_as_the_same_document_in_docx():
    """A .doc (Word 97-2003) through its piece table: 8-bit and UTF-16 pieces, a table, a field's result without its
    code (nested too), breaks; the text the same .docx gives. And a document Word itself saved."""
    said = "Revenue grew 12 % in Zürich — Привет, 東京."
    fields = "Page \x13 PAGE \x143\x15 of \x13 IF \x13 NUMPAGES \x149\x15 > 1 \x14nine\x15."  # "Page 3 of nine."
    document = f"Quarterly report.\r{said}\rRegion\x07Sales\x07\x07North\x0712\x07\x07{fields}\x0bThe end.\r"
    docx = word_document(["Quarterly report.", said], [["Region", "Sales"], ["North", "12"]],
                         after="Page 3 of nine.\nThe end.")  # fmt: skip
    expected = f"Quarterly report.\n{said}\nRegion | Sales\nNorth | 12\nPage 3 of nine.\nThe end."
    assert read_text(legacy_word_document(document)) == read_text(docx) == expected
    saved = (Path(__file__).parents[1] / "data" / "saved-by-word-97-2003.doc").read_bytes()  # tests/data/README.md
    assert read_text(saved) == "Test OLE file, saved as Word 97-2003 Document."


def test_a_legacy_word_document_that_cannot_be_read_is_refused():
    fine = legacy_word_document("Hello.\r")
    at = fine.index(struct.pack("<HH", 0xA5EC, 0x00C1))  # the FIB, at the WordDocument stream's start
    piece = struct.pack("<I", 0x800 * 2 | 0x40000000)  # its one piece's fc: 8-bit characters at 0x800
    past = fine.replace(piece, struct.pack("<I", 0x10000 * 2 | 0x40000000), 1)  # now past the stream's end
    cases = {
        "encrypted": (legacy_word_document("Hello.\r", encrypted=True), "invalid_file", "encrypted"),
        "word 95": (fine[:at + 2] + struct.pack("<H", 0x0068) + fine[at + 4:], "unsupported_file", "Word 6 or 95"),
        "no header": (fine[:at] + b"\0\0" + fine[at + 2:], "invalid_file", "header"),
        "piece past the end": (past, "invalid_file", "piece"),
        "a renamed .xls": (legacy_compound("WordDocument"), "invalid_file", "Word 97-2003 header"),
    }  # fmt: skip
    for name, (content, code, message) in cases.items():
        with pytest.raises(Failed) as caught:
            read_text(content)
        assert caught.value.code == code and message in caught.value.message, name
    document = legacy_word_document("Quarterly report.\rПривет\x07a\x07\x07\x13 PAGE \x143\x15\r")
    randomness = random.Random(7)
    for _ in range(300):  # bytes broken anywhere: its text or a refusal, never another error
        broken = bytearray(document)
        for _ in range(randomness.randint(1, 8)):
            broken[randomness.randrange(len(broken))] = randomness.randrange(256)
        try:
            assert isinstance(read_text(bytes(broken)), str)
        except Failed as refused:
            assert refused.code in ("invalid_file", "unsupported_file")


def test_a_decks_slides_are_read_a_blank_line_apart_with_their_notes():
    deck = slide_deck([("Launch", "The rover is called Pebble."), ("Budget", "Three million.")], {1: "Say it slowly."})
    assert read_text(deck) == "Launch\nThe rover is called Pebble.\n\nBudget\nThree million.\nSay it slowly."


@pytest.mark.parametrize("write", [workbook, legacy_workbook], ids=["xlsx", "xls"])
def test_a_workbooks_sheets_are_read_row_by_row_as_a_spreadsheet_shows_them(write):
    book = write({
        "Sales": [["Region", "Units", "Shipped", None], ["North", 12.0, datetime.date(2026, 3, 1)], [],
                  ["South", 7.5, True, None, None], [None, None, "late"]],
        "Empty": [],
        "Notes": [["Ship by", datetime.datetime(2026, 3, 1, 9, 30)]] + ([["=1+1"]] if write is workbook else []),
    })  # fmt: skip
    assert read_text(book) == "\n".join([
        "Sheet: Sales", "Region | Units | Shipped", "North | 12 | 2026-03-01", "South | 7.5 | TRUE", " |  | late", "",
        "Sheet: Notes", "Ship by | 2026-03-01 09:30:00"])  # fmt: skip


PAGE = """<?xml version="1.0" encoding="utf-8"?>
<!-- saved from a browser -->
<!DOCTYPE html><html><head><title>Parts</title><style>p { color: red }</style>
<script>var hidden = "not text";</script></head>
<body><h1>Order &amp; shipping</h1><p>Item ZX-4471 ships in a <b>blue</b> crate.</p><p>Second&nbsp;paragraph.</p>
<ul><li>one</li><li>two</li></ul><table><tr><th>Region</th><th>Sales</th></tr><tr><td>North</td><td>12</td></tr>
</table></body></html>"""


def test_an_html_pages_text_is_read_as_laid_out():
    assert read_text(PAGE.encode()) == "\n".join([
        "Order & shipping", "", "Item ZX-4471 ships in a blue crate.", "", "Second paragraph.", "", "  * one",
        "  * two", "Region  Sales", "North   12"])  # fmt: skip
    assert read_text(b"<BODY><p>just a body") == "just a body"
    # a saved page in the charset its <meta> names (not UTF-8), either way of naming it
    equiv = '<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=cp1252">'
    for meta in ('<meta charset="windows-1252">', equiv):
        page = f"<!DOCTYPE html><html><head>{meta}</head><body><p>Café – naïve</p></body></html>"
        assert read_text(page.encode("cp1252")) == "Café – naïve"
    with pytest.raises(Failed) as caught:  # text in another charset than UTF-8 or UTF-16, not a page: refused
        read_text("Café – naïve".encode("cp1252"))
    assert caught.value.code == "unsupported_file"
    # text that merely holds tags, or starts with a comment or another tag, is text as written
    for text in ["<!-- draft -->\n# Title\n\nSee <b>this</b>.", "<p>a fragment</p>\n", "Use <html> tags.", "<htmlx>"]:
        assert read_text(text.encode()) == text
    with pytest.raises(Failed) as caught:
        read_text(b"<html><head><script>x()</script></head><body> </body></html>")
    assert caught.value.code == "invalid_file"


@pytest.mark.parametrize(("stream", "named"), [("PowerPoint Document", ".ppt"), ("Other", "not an .xls or a .doc")])
def test_a_legacy_deck_or_another_compound_file_is_refused_by_name(stream, named):
    with pytest.raises(Failed) as caught:
        read_text(legacy_compound(stream))
    assert caught.value.code == "unsupported_file" and named in caught.value.message


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\xc3\x28", "unsupported_file"),  # not UTF-8
        (codecs.BOM_UTF16_LE + b"abc", "unsupported_file"),  # not UTF-16 either: an odd length
        (codecs.BOM_UTF16_LE, "invalid_file"),  # an empty UTF-16 text
        (b"a\x00b", "unsupported_file"),
        (photo(), "unsupported_file"),
        (_zip({"data.csv": b"a,b"}), "unsupported_file"),  # a zip, not a document
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "invalid_file"),  # a broken compound file
        (_zip({"xl/workbook.xml": b"<workbook/>"}), "invalid_file"),  # a broken workbook
        (workbook({"Empty": [[None, ""]]}), "invalid_file"),  # a workbook without values
        (legacy_workbook({"Empty": [[None, ""]]}), "invalid_file"),
        (legacy_workbook({"S": [["x"]]})[:1536], "invalid_file"),  # cut short
        (b" \n", "invalid_file"),
        (b"%PDF-1.4\nnot really", "invalid_file"),
        (text_pdf([" "]), "invalid_file"),  # a scan: no text layer
        (_zip({"word/document.xml": b"<not a document"}), "invalid_file"),
        (_zip({"ppt/presentation.xml": b"<p/>"}), "invalid_file"),
        (word_document([" "]), "invalid_file"),  # a document without text
    ],
)
def test_what_is_not_a_readable_document_is_refused(content, code):
    with pytest.raises(Failed) as caught:
        read_text(content)
    assert caught.value.code == code, caught.value.message
