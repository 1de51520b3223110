"""A file's text, as the hub reads it for a model: a PDF's text layer (``pdfs.py``: pypdf; a page without one read
by OCR where it is on, ``ocr.py``), a Word document's paragraphs and tables (python-docx), a PowerPoint deck's slides
(python-pptx), an Excel workbook's sheets (openpyxl; a legacy .xls workbook's by xlrd), a legacy Word 97-2003
document's text (``word97.py``), an HTML page's text as a
browser lays it out (inscriptis: no tags, scripts or styles; tables in columns), else text (UTF-8, or UTF-16 by its
BOM). Vector stores index it (``hub/vector_stores/indexer.py``) and a file in a model's input is shown to the model
as it (``hub/api/file_inputs.py``); anything else (images, legacy .ppt, and for a text model scans that OCR
does not read) is refused with a code of OpenAI's vector store file errors (``unsupported_file``, ``invalid_file``). A
vision model also gets a PDF's pages as images (``pdfs.page_images``, pypdfium2), as OpenAI gives its vision models,
and so reads a scan by its pages alone."""

from __future__ import annotations

import codecs
import datetime
import io
import re
import zipfile

from hub import pdfs, word97
from hub.pdfs import Failed

PDF_MAGIC, OOXML_MAGIC = b"%PDF-", b"PK\x03\x04"  # a PDF's first bytes; an Office Open XML file's (a zip)
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # a compound file's: the legacy Office formats (.xls, .doc, .ppt)
PARSED = (PDF_MAGIC, OOXML_MAGIC, OLE_MAGIC)  # the files parsed rather than decoded (a cost worth keeping their text)
# its charset, as <meta charset="..."> or <meta http-equiv="Content-Type" content="text/html; charset=...">
_META_CHARSET = re.compile(r"<meta[^>]+charset\s*=\s*[\"']?([\w-]+)", re.I)
# an HTML page: its first tag (after an XML declaration, comments, white space) a doctype, <html>, <head> or <body>
_HTML = re.compile(r"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)[\s>]", re.I | re.S)


def _cells(table) -> str:
    """A table of python-docx or python-pptx: a line per row, its cells apart by `` | ``."""
    return "\n".join(" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows)


def _docx_text(content: bytes) -> str:
    """A Word document's body in order: its paragraphs, a line each, and its tables."""
    from docx import Document
    from docx.table import Table

    parts = Document(io.BytesIO(content)).iter_inner_content()
    return "\n".join(_cells(part) if isinstance(part, Table) else part.text for part in parts)


def _pptx_text(content: bytes) -> str:
    """A deck's slides, a blank line apart: each shape's text (and tables), then the speaker's notes."""
    from pptx import Presentation

    slides = []
    for slide in Presentation(io.BytesIO(content)).slides:
        texts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        texts += [_cells(shape.table) for shape in slide.shapes if shape.has_table]
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            texts.append(slide.notes_slide.notes_text_frame.text)
        slides.append("\n".join(t for t in texts if t.strip()))
    return "\n\n".join(slides)


def _shown(value: object) -> str:
    """A cell's value as a spreadsheet shows it: a whole float without its ``.0``, a date in ISO form, TRUE / FALSE."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ", timespec="seconds").removesuffix(" 00:00:00")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value).strip()


def _sheets(sheets) -> str:
    """A workbook's sheets ((title, rows of values) in order), a blank line apart: ``Sheet: <name>``, then a line per
    row holding a value, its cells apart by `` | `` (as a document's tables), empty cells at a row's end left out."""
    shown = []
    for title, values in sheets:
        rows = []
        for row in values:
            cells = [_shown(value) for value in row]
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                rows.append(" | ".join(cells))
        if rows:
            shown.append("\n".join([f"Sheet: {title}", *rows]))
    return "\n\n".join(shown)


def _xlsx_text(content: bytes) -> str:
    """An .xlsx workbook's sheets (``_sheets``). A formula shows the value the spreadsheet program saved with it (none
    if it never computed it)."""
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    try:
        return _sheets((sheet.title, sheet.iter_rows(values_only=True)) for sheet in book.worksheets)
    finally:
        book.close()


def _xls_value(cell, datemode: int) -> object:
    """An .xls cell's value as openpyxl would give it: a date as a datetime, a boolean as a bool, an error as its
    text (``#DIV/0!``)."""
    import xlrd

    if cell.ctype == xlrd.XL_CELL_DATE:
        return xlrd.xldate.xldate_as_datetime(cell.value, datemode)
    if cell.ctype == xlrd.XL_CELL_BOOLEAN:
        return bool(cell.value)
    if cell.ctype == xlrd.XL_CELL_ERROR:
        return xlrd.error_text_from_code.get(cell.value, "#ERROR")
    return cell.value


def _ole_text(content: bytes) -> str:
    """A legacy Office file's text: an Excel 97-2003 workbook's (.xls, xlrd) sheets as an .xlsx's, a Word 97-2003
    document's (.doc, ``word97.py``) as a .docx's; a PowerPoint .ppt is refused, naming the format to save it in."""
    import xlrd
    from xlrd.compdoc import CompDoc, CompDocError

    quiet = io.StringIO()  # xlrd writes its warnings to a log file, stdout unless given one
    try:
        compound = CompDoc(content, logfile=quiet)
        streams = {entry.name for entry in compound.dirlist}
        if "WordDocument" in streams:
            tables = {name: compound.get_named_stream(name) for name in ("0Table", "1Table") if name in streams}
            word = compound.get_named_stream("WordDocument")
    except (CompDocError, IndexError, ValueError, AssertionError) as exc:  # xlrd asserts too
        raise Failed("invalid_file", f"The compound (legacy Office) file could not be read ({exc}).") from None
    if "WordDocument" in streams:
        return word97.doc_text(word, tables)
    if not streams & {"Workbook", "Book"}:
        kind = ("PowerPoint deck (.ppt): save it as .pptx" if "PowerPoint Document" in streams
                else "compound file (not an .xls or a .doc)")  # fmt: skip
        raise Failed("unsupported_file", f"The hub does not read a legacy {kind}.")
    try:
        book = xlrd.open_workbook(file_contents=content, logfile=quiet)
        return _sheets((sheet.name, [[_xls_value(cell, book.datemode) for cell in row] for row in sheet.get_rows()])
                       for sheet in book.sheets())  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - whatever a malformed or encrypted workbook makes xlrd raise
        raise Failed("invalid_file", f"The Excel workbook (.xls) could not be read ({exc}).") from None


def _html_text(page: str) -> str:
    """An HTML page's text as a browser lays it out (inscriptis): blocks on their own lines, a table's cells in
    columns, a list's items bulleted; no tags, scripts or styles; entities decoded."""
    from inscriptis import get_text

    return "\n".join(line.rstrip() for line in get_text(page).splitlines()).strip("\n")


_OFFICE = {"word/document.xml": ("Word document", _docx_text), "ppt/presentation.xml": ("PowerPoint deck", _pptx_text),
           "xl/workbook.xml": ("Excel workbook", _xlsx_text)}  # fmt: skip


def _office_text(content: bytes) -> str | None:
    """An Office Open XML file's text (None: a zip of another kind)."""
    try:
        names = set(zipfile.ZipFile(io.BytesIO(content)).namelist())
    except (zipfile.BadZipFile, ValueError):
        return None
    for marker, (kind, read) in _OFFICE.items():
        if marker in names:
            try:
                return read(content)
            except Exception as exc:  # noqa: BLE001 - whatever a malformed document makes its reader raise
                raise Failed("invalid_file", f"The {kind} could not be read ({type(exc).__name__}).") from None
    return None


def _decoded(content: bytes) -> str:
    """Text as OpenAI takes it (UTF-8, its BOM dropped, or UTF-16 by its BOM), or an HTML page in the charset its
    ``<meta>`` names (a saved page is often windows-1252). Raises ``UnicodeDecodeError`` for anything else."""
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return content.decode("utf-16")  # the BOM says the byte order, and is dropped
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        head = content[:4096].decode("latin-1")  # each byte a character: the ASCII markup reads as itself
        if _HTML.match(head) and (declared := _META_CHARSET.search(head)):
            try:
                return content.decode(declared.group(1))
            except (LookupError, UnicodeDecodeError):
                pass
        raise


def read_text(content: bytes, scans: bool = False, ocr_most: int | None = None) -> str:
    """The file's text: a PDF's (its text layer; a scan without one has none), a Word document's, a PowerPoint deck's,
    an Excel workbook's (.xlsx or .xls), a legacy Word document's (.doc) or an HTML page's, else UTF-8 text. Other files
    (images, legacy .ppt, archives) are refused.
    ``scans``: a PDF without text is its empty text, not refused (a vision model reads its pages). ``ocr_most``: the
    most pages without a text layer read by OCR (``pdfs.text``)."""
    if content.startswith(PDF_MAGIC):
        text = pdfs.text(content, ocr_most).replace("\x00", "")
        if not text.strip() and not scans:
            raise Failed("invalid_file", "The PDF has no text to read: a scan without a text layer, and OCR off or "
                         "over its most pages (HUB_OCR_LANGUAGES, HUB_OCR_MAX_PAGES)?")  # fmt: skip
        return text
    office = None
    if content.startswith(OOXML_MAGIC):
        office = _office_text(content)
    elif content.startswith(OLE_MAGIC):
        office = _ole_text(content)
    if office is not None:
        if not office.strip():
            raise Failed("invalid_file", "The document has no text.")
        return office.replace("\x00", "")
    try:
        text = _decoded(content)
    except UnicodeDecodeError:
        message = (
            "The file is none of text in UTF-8 or UTF-16 (HTML included), a PDF, a Word document (.docx, "
            ".doc), a PowerPoint deck (.pptx) or an Excel workbook (.xlsx, .xls): the hub reads those only."
        )
        raise Failed("unsupported_file", message) from None
    if "\x00" in text:
        raise Failed("unsupported_file", "The file holds NUL characters: it is not a text file.")
    if _HTML.match(text, 0, 4096):
        text = _html_text(text)
    if not text.strip():
        raise Failed("invalid_file", "The file has no text.")
    return text
