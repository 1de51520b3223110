"""Citations of ``file_search`` results in a Responses answer, as OpenAI's ``file_citation`` annotations.

The passages the model reads each carry their file's marker, ``<|file-…|>`` (``file_search.results_text``), and the
model is asked to write a passage's marker right after what it supports (as Llama Stack asks its models). As the
answer streams, the markers of files this response found are taken out of the text, each becoming an annotation at
its place: ``index`` is the number of characters of the text before it, as in OpenAI's answers. A marker cut across
deltas is held back until it is whole (at most ``len(MARKER_HEAD) + 64 + 2`` characters); a marker of a file no
search of this response returned, and anything else, passes unchanged.
"""

from __future__ import annotations

import re

MARKER = re.compile(r"<\|(file-[A-Za-z0-9_-]{1,64})\|>")
MARKER_HEAD = "<|file-"
_OPEN_TAIL = re.compile(r"[A-Za-z0-9_-]{0,64}\|?")


def marker(file_id: str) -> str:
    return f"<|{file_id}|>"


def _opens_marker(tail: str) -> bool:
    """Whether ``tail`` (from a ``<`` to the end of the text so far) may be the start of a marker."""
    if len(tail) <= len(MARKER_HEAD):
        return MARKER_HEAD.startswith(tail)
    return tail.startswith(MARKER_HEAD) and _OPEN_TAIL.fullmatch(tail[len(MARKER_HEAD) :]) is not None


class Citations:
    """One answer's citation markers. ``files``: file id -> filename, of the files its searches returned."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.pending = ""  # text held back: it may be the start of a marker

    @classmethod
    def of(cls, context: list[dict]) -> Citations:
        """An answer's citations, knowing the files of the searches its context shows (earlier turns' results)."""
        citations = cls()
        for item in context:
            if item.get("type") == "file_search_call":
                citations.files.update((r["file_id"], r.get("filename") or r["file_id"])
                                       for r in item.get("results") or [] if r.get("file_id"))  # fmt: skip
        return citations

    def feed(self, text: str) -> list[tuple[str, str]]:
        """The pieces ``text`` makes, in order: ``("text", text)`` to show, ``("cite", file_id)`` for a marker."""
        text, self.pending = self.pending + text, ""
        pieces: list[tuple[str, str]] = []
        start = 0
        for match in MARKER.finditer(text):
            if match.group(1) not in self.files:
                continue
            if match.start() > start:
                pieces.append(("text", text[start : match.start()]))
            pieces.append(("cite", match.group(1)))
            start = match.end()
        rest = text[start:]
        cut = rest.rfind("<")
        if cut >= 0 and _opens_marker(rest[cut:]):
            rest, self.pending = rest[:cut], rest[cut:]
        if rest:
            pieces.append(("text", rest))
        return pieces

    def flush(self) -> str:
        """The text held back when the answer ended (a marker never finished)."""
        held, self.pending = self.pending, ""
        return held

    def annotation(self, file_id: str, index: int) -> dict:
        return {"type": "file_citation", "file_id": file_id, "filename": self.files[file_id], "index": index}
