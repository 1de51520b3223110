"""Word 97-2003 documents (.doc) the tests write: no library here writes one, so this writes the least a reader needs,
by [MS-DOC] and [MS-CFB]: a compound file (version 3, 512-byte sectors, every stream past the 4,096-byte mini-stream
cutoff, so no mini stream) holding a ``WordDocument`` stream (a Word 97 FIB, then the characters) and a ``1Table``
stream (the piece table). The pieces are the runs of the text a test gives: 8-bit (cp1252, "compressed") where a
run fits cp1252, else UTF-16LE, as Word saves an edited document."""

from __future__ import annotations

import struct

END_OF_CHAIN, FREE, FAT_SECTOR, NO_STREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
SECTOR = 512
TEXT_AT = 0x800  # where the characters start in WordDocument, past the FIB
FIB_PAIRS = 93  # FibRgFcLcb97's fc/lcb pairs


def _fib(characters: int, clx_size: int, stream_size: int, flags: int) -> bytes:
    base = struct.pack("<HHHHHHH", 0xA5EC, 0x00C1, 0, 0x0409, 0, flags, 0x00BF) + b"\0" * 18  # FibBase: 32 bytes
    shorts = struct.pack("<H", 14) + b"\0" * 28  # csw, FibRgW97
    longs = [0] * 22
    longs[0], longs[3] = stream_size, characters  # cbMac, ccpText
    pairs = [0] * (2 * FIB_PAIRS)
    pairs[66], pairs[67] = 0, clx_size  # fcClx (at the table stream's start), lcbClx
    return base + shorts + struct.pack("<H22i", 22, *longs) + struct.pack(f"<H{2 * FIB_PAIRS}I", FIB_PAIRS, *pairs)


def _runs(text: str) -> list[tuple[str, bool]]:
    """(run, compressed): the longest runs that cp1252 holds or not."""
    runs: list[tuple[str, bool]] = []
    for c in text:
        try:
            c.encode("cp1252")
            fits = True
        except UnicodeEncodeError:
            fits = False
        if runs and runs[-1][1] == fits:
            runs[-1] = (runs[-1][0] + c, fits)
        else:
            runs.append((c, fits))
    return runs


def _entry(name: str, kind: int, child: int = NO_STREAM, left: int = NO_STREAM, start: int = END_OF_CHAIN,
           size: int = 0) -> bytes:  # fmt: skip
    encoded = (name + "\0").encode("utf-16-le") if name else b""
    return (encoded.ljust(64, b"\0") + struct.pack("<HBBIII", len(encoded), kind, 1, left, NO_STREAM, child)
            + b"\0" * 36 + struct.pack("<IQ", start, size))  # fmt: skip


def _compound(streams: list[tuple[str, bytes]]) -> bytes:
    """A compound file of two streams under the root (the second the first's left sibling: it sorts first, being
    shorter, as [MS-CFB] orders names)."""
    streams = [(name, data.ljust(4096, b"\0")) for name, data in streams]  # past the cutoff: in sectors, no mini stream
    padded = [data.ljust(-(-len(data) // SECTOR) * SECTOR, b"\0") for _, data in streams]
    data_sectors = sum(len(p) // SECTOR for p in padded) + 1  # the streams and one directory sector
    fat_sectors = 1
    while (data_sectors + fat_sectors) > fat_sectors * (SECTOR // 4):
        fat_sectors += 1
    fat, starts, at = [], [], 0
    for p in padded:
        count = len(p) // SECTOR
        starts.append(at)
        fat += [at + i + 1 for i in range(count - 1)] + [END_OF_CHAIN]
        at += count
    directory_at = at
    fat += [END_OF_CHAIN] + [FAT_SECTOR] * fat_sectors
    fat += [FREE] * (fat_sectors * SECTOR // 4 - len(fat))
    (first, first_data), (second, second_data) = streams
    directory = (_entry("Root Entry", 5, child=1) + _entry(first, 2, left=2, start=starts[0], size=len(first_data))
                 + _entry(second, 2, start=starts[1], size=len(second_data)) + _entry("", 0))  # fmt: skip
    difat = [directory_at + 1 + i for i in range(fat_sectors)] + [FREE] * (109 - fat_sectors)
    header = (bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 16
              + struct.pack("<HHHHH6xIIIIIIIII", 0x3E, 3, 0xFFFE, 9, 6, 0, fat_sectors, directory_at, 0, 4096,
                            END_OF_CHAIN, 0, END_OF_CHAIN, 0)
              + struct.pack("<109I", *difat))  # fmt: skip
    return header + b"".join(padded) + directory + struct.pack(f"<{len(fat)}I", *fat)


def legacy_word_document(text: str, encrypted: bool = False) -> bytes:
    """A .doc whose main document is ``text``: Word's own characters ("\\r" ends a paragraph, "\\x07" a cell and a
    row, "\\x13" "\\x14" "\\x15" a field's begin, separator and end, ...), a piece per run as ``_runs`` cuts it."""
    word, cps, pieces = bytearray(TEXT_AT), [0], []
    for run, compressed in _runs(text):
        fc = len(word) * 2 | 0x40000000 if compressed else len(word)
        word += run.encode("cp1252") if compressed else run.encode("utf-16-le")
        cps.append(cps[-1] + len(run))
        pieces.append(struct.pack("<HIH", 0, fc, 0))
    plc = struct.pack(f"<{len(cps)}i", *cps) + b"".join(pieces)
    clx = b"\x02" + struct.pack("<I", len(plc)) + plc
    flags = 0x0200 | 0x1000 | (0x0100 if encrypted else 0)  # fWhichTblStm (1Table), fExtChar, fEncrypted
    word[:TEXT_AT] = _fib(len(text), len(clx), len(word), flags).ljust(TEXT_AT, b"\0")
    return _compound([("WordDocument", bytes(word)), ("1Table", clx)])
