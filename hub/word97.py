"""A legacy Word document's text (.doc, Word 97-2003, [MS-DOC]): the main document's characters, read through its
piece table, as Word saved them. ``documents.py`` gives it the compound file's streams (xlrd's reader).

The File Information Block (FIB, at the start of the ``WordDocument`` stream) says which table stream (``0Table`` or
``1Table``) holds the piece table (``Clx``, at ``fcClx``) and how many characters the main document has (``ccpText``).
Each piece maps a run of character positions to bytes of ``WordDocument``: 8-bit (cp1252, "compressed") or UTF-16LE.
Then Word's marks become text as the .docx reader gives it: a paragraph or line break a new line, a table's cells
`` | `` apart and a row a line; a field (a page number, a hyperlink, a date) its shown result, not its code; pictures
and other anchors nothing."""

from __future__ import annotations

import re
import struct

from hub.pdfs import Failed

IDENT, WORD97 = 0xA5EC, 0x00C1  # wIdent; the first nFib of Word 97 (Word 6 and 95 files have older FIBs)
CLX_INDEX = 33  # fcClx / lcbClx: the 34th pair of FibRgFcLcb97
COMPRESSED = 0x40000000  # in a piece's fc: its characters are 8-bit, at fc / 2 (without this bit)
FIELD_BEGIN, FIELD_SEPARATOR, FIELD_END = "\x13", "\x14", "\x15"
CELL = "\x07"  # a cell's end; the row's end is one more, after its last cell's
# Word's control characters that stand for something else than themselves
_MARKS = str.maketrans(
    {
        "\r": "\n",
        "\x0b": "\n",
        "\x0c": "\n",
        "\x0e": "\n",
        "\x1e": "-",  # breaks; a hyphen
        **dict.fromkeys("\x01\x02\x03\x04\x05\x08\x1f"),
    }
)  # anchors, optional hyphens: nothing


def _invalid(why: str) -> Failed:
    return Failed("invalid_file", f"The Word document (.doc) could not be read ({why}).")


def _pieces(clx: bytes) -> tuple[list[int], list[int]]:
    """The piece table's character positions (n + 1) and its pieces' fc values (n), past the Clx's formatting runs
    (``Prc``: clxt 1) to its ``Pcdt`` (clxt 2)."""
    at = 0
    while at < len(clx) and clx[at] == 1:
        at += 3 + struct.unpack_from("<H", clx, at + 1)[0]
    if at + 5 > len(clx) or clx[at] != 2:
        raise _invalid("no piece table")
    size = struct.unpack_from("<I", clx, at + 1)[0]
    count = (size - 4) // 12
    if count < 1 or at + 5 + size > len(clx):
        raise _invalid("a piece table out of bounds")
    cps = list(struct.unpack_from(f"<{count + 1}i", clx, at + 5))
    fcs = [struct.unpack_from("<I", clx, at + 5 + 4 * (count + 1) + 8 * i + 2)[0] for i in range(count)]
    return cps, fcs


def _characters(word: bytes, cps: list[int], fcs: list[int], end: int) -> str:
    """The document's characters [0, end), piece by piece."""
    out = []
    for start, stop, fc in zip(cps, cps[1:], fcs, strict=False):
        stop = min(stop, end)
        if stop <= start:
            continue
        if fc & COMPRESSED:
            offset = (fc & ~COMPRESSED) // 2
            chunk = word[offset : offset + stop - start].decode("cp1252", errors="replace")
        else:
            chunk = word[fc : fc + 2 * (stop - start)].decode("utf-16-le", errors="replace")
        if len(chunk) != stop - start:
            raise _invalid("a piece past the end of the document")
        out.append(chunk)
    return "".join(out)


def _without_field_codes(text: str) -> str:
    """A field's result where it shows one (between its separator and its end), nothing of its code; fields nest."""
    out, depth = [], []  # depth: per open field, whether its result is being read (past its separator)
    for c in text:
        if c == FIELD_BEGIN:
            depth.append(False)
        elif c == FIELD_SEPARATOR and depth:
            depth[-1] = True
        elif c == FIELD_END and depth:
            depth.pop()
        elif all(depth):
            out.append(c)
    return "".join(out)


def _lines(text: str) -> str:
    """Marks as text: rows of cells as ``a | b``, breaks as new lines, lines without their trailing spaces."""
    text = _without_field_codes(text).translate(_MARKS)
    text = re.sub(f"{CELL}{CELL}|{CELL}\n", "\n", text).replace(CELL, " | ")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def doc_text(word: bytes, tables: dict[str, bytes]) -> str:
    """The main document's text of a ``WordDocument`` stream and its compound file's table streams (by name)."""
    try:
        return _text(word, tables)
    except (struct.error, IndexError, ValueError, OverflowError) as exc:  # a field that points outside its stream
        raise _invalid(f"{exc.__class__.__name__}: {exc}") from None


def _text(word: bytes, tables: dict[str, bytes]) -> str:
    if len(word) < 0x9A or struct.unpack_from("<H", word, 0)[0] != IDENT:
        raise _invalid("no Word 97-2003 header")
    nfib, flags = struct.unpack_from("<H", word, 2)[0], struct.unpack_from("<H", word, 0x0A)[0]
    if nfib < WORD97:
        raise Failed("unsupported_file", "The hub does not read a Word 6 or 95 document: save it as .docx.")
    if flags & 0x0100:  # fEncrypted
        raise Failed("invalid_file", "The Word document (.doc) is encrypted: save it without a password.")
    table = tables.get("1Table" if flags & 0x0200 else "0Table")  # fWhichTblStm
    if table is None:
        raise _invalid("its table stream is missing")
    shorts = struct.unpack_from("<H", word, 0x20)[0]  # csw: FibRgW97's 16-bit fields
    longs_at = 0x22 + 2 * shorts + 2
    longs = struct.unpack_from("<H", word, longs_at - 2)[0]  # cslw: FibRgLw97's 32-bit fields
    pairs_at = longs_at + 4 * longs + 2
    if longs < 4 or pairs_at + 8 * (CLX_INDEX + 1) > len(word):
        raise _invalid("a short header")
    characters = struct.unpack_from("<i", word, longs_at + 12)[0]  # ccpText
    fc, size = struct.unpack_from("<II", word, pairs_at + 8 * CLX_INDEX)
    if fc + size > len(table) or size == 0:
        raise _invalid("its piece table is out of bounds")
    cps, fcs = _pieces(table[fc : fc + size])
    return _lines(_characters(word, cps, fcs, characters))
