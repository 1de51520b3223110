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
