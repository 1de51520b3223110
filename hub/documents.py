"""A file's text, as the hub reads it for a model: a PDF's text layer (pypdf), else UTF-8 text. Vector stores index
it (``hub/vector_stores/indexer.py``) and a file in a model's input is shown to the model as it
(``hub/api/file_inputs.py``); anything else (images, office documents, scans without a text layer) is refused with a
code of OpenAI's vector store file errors (``unsupported_file``, ``invalid_file``)."""

from __future__ import annotations

import io


class Failed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _pdf_text(content: bytes) -> str:
    """A PDF's text (pypdf), its pages apart by a blank line."""
    from pypdf import PdfReader

    try:
        return "\n\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(content)).pages)
    except Exception as exc:  # noqa: BLE001 - whatever a client's malformed PDF makes pypdf raise: an invalid file
        raise Failed("invalid_file", f"The PDF could not be read ({type(exc).__name__}).") from None


def read_text(content: bytes) -> str:
    """The file's text: a PDF's (its text layer; a scan without one has none), else UTF-8 text. Other files (images,
    office documents) are refused."""
    if content.startswith(b"%PDF-"):
        text = _pdf_text(content).replace("\x00", "")
        if not text.strip():
            raise Failed("invalid_file", "The PDF has no text to read (a scan without a text layer?).")
        return text
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        message = "The file is neither UTF-8 text nor a PDF; the hub reads those only."
        raise Failed("unsupported_file", message) from None
    if "\x00" in text:
        raise Failed("unsupported_file", "The file holds NUL characters: it is not a text file.")
    if not text.strip():
        raise Failed("invalid_file", "The file has no text.")
    return text
