"""Documents over http on 127.0.0.1 for the tests of files in a model's input by ``file_url``: a PDF, a text file,
a redirect to it, a redirect loop and a redirect to a private address (which the hub must refuse)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

from tests.support.http_server import static_server
from tests.support.pdfs import text_pdf

NOTES = "The launch code is seven seven three. The rover is called Pebble."
PAGES = ["The launch code is seven seven three.", "The rover is called Pebble."]
FILES = {"/notes.pdf": (text_pdf(PAGES), "application/pdf"), "/notes.txt": (NOTES.encode(), "text/plain")}
REDIRECTS = {"/moved": "/notes.txt", "/loop": "/loop", "/to-private": "http://10.0.0.1/notes.txt"}


@contextmanager
def document_server() -> Iterator[ThreadingHTTPServer]:
    """Serves ``FILES`` and ``REDIRECTS``; ``server.url`` is its root, ``server.requests`` the paths asked for."""
    with static_server(FILES, REDIRECTS) as server:
        yield server
