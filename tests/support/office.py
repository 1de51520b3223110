"""Office documents the tests write with python-docx, python-pptx and openpyxl (Office Open XML, as Word, PowerPoint
and Excel save)."""

from __future__ import annotations

import io


def word_document(paragraphs: list[str], table: list[list[str]] | None = None, after: str | None = None) -> bytes:
    """A .docx: ``paragraphs``, then ``table`` (rows of cells), then the paragraph ``after``."""
    from docx import Document

    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, cells in zip(grid.rows, table, strict=True):
            for cell, text in zip(row.cells, cells, strict=True):
                cell.text = text
    if after is not None:
        document.add_paragraph(after)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def slide_deck(slides: list[tuple[str, str]], notes: dict[int, str] | None = None) -> bytes:
    """A .pptx: a title-and-content slide per (title, body), and the speaker's ``notes`` of some (by index)."""
    from pptx import Presentation

    deck = Presentation()
    for i, (title, body) in enumerate(slides):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes and i in notes:
            slide.notes_slide.notes_text_frame.text = notes[i]
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def workbook(sheets: dict[str, list[list]]) -> bytes:
    """An .xlsx (openpyxl): a worksheet per name, its rows of values (an empty list: an empty row)."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def legacy_workbook(sheets: dict[str, list[list]]) -> bytes:
    """An .xls (Excel 97-2003, xlwt), as ``workbook``'s; dates and datetimes formatted as dates, read back so."""
    import datetime

    import xlwt

    book = xlwt.Workbook()
    date, stamp = xlwt.easyxf(num_format_str="YYYY-MM-DD"), xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM:SS")
    for title, rows in sheets.items():
        sheet = book.add_sheet(title)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if isinstance(value, datetime.datetime):
                    sheet.write(r, c, value, stamp)
                elif isinstance(value, datetime.date):
                    sheet.write(r, c, value, date)
                elif value is not None:
                    sheet.write(r, c, value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def legacy_compound(stream: str) -> bytes:
    """A compound file (the legacy Office container) whose one stream is called ``stream`` ("WordDocument": a .doc's,
    "PowerPoint Document": a .ppt's): an .xls with its "Workbook" stream renamed in the directory (no library here
    writes a .doc or a .ppt, and the hub reads no further than the names)."""
    content = bytearray(legacy_workbook({"Sheet": [["x"]]}))
    old = "Workbook\0".encode("utf-16-le")
    at = content.index(old)  # the directory entry: a 64-byte UTF-16 name, then its length in bytes (2 bytes)
    assert at % 128 == 0 and len(stream) < 32
    name = (stream + "\0").encode("utf-16-le")
    content[at : at + 64] = name.ljust(64, b"\0")
    content[at + 64 : at + 66] = len(name).to_bytes(2, "little")
    return bytes(content)
