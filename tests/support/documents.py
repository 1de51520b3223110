"""Documents over http on 127.0.0.1 for the tests of files in a model's input by ``file_url``: a PDF, a text file,
a redirect to it, a redirect loop and a redirect to a private address (which the hub must refuse)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.http_server import serving
from tests.support.pdfs import text_pdf

NOTES = "The launch code is seven seven three. The rover is called Pebble."
PAGES = ["The launch code is seven seven three.", "The rover is called Pebble."]
FILES = {"/notes.pdf": (text_pdf(PAGES), "application/pdf"), "/notes.txt": (NOTES.encode(), "text/plain")}
REDIRECTS = {"/moved": "/notes.txt", "/loop": "/loop", "/to-private": "http://10.0.0.1/notes.txt"}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        if self.path in FILES:
            body, kind = FILES[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in REDIRECTS:
            self.send_response(302)
            self.send_header("Location", REDIRECTS[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_error(404)


@contextmanager
def document_server() -> Iterator[ThreadingHTTPServer]:
    """Serves ``FILES`` and ``REDIRECTS``; ``server.url`` is its root, ``server.requests`` the paths asked for."""
    with serving(_Handler) as server:
        server.requests = []
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield server
