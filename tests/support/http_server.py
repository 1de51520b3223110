"""A threaded HTTP server on loopback for a test's fake of a web server (an image host, a webhook receiver), and one
that serves fixed files and redirects (``static_server``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[ThreadingHTTPServer]:
    """``handler`` served on ``host`` at a free port (``server.server_address[1]``), on a thread of its own; shut
    down afterwards."""
    server = ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _static_handler(files: dict[str, tuple[bytes, str]], redirects: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.server.requests.append(self.path)
            if self.path in files:
                body, kind = files[self.path]
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(404)

    return Handler


@contextmanager
def static_server(files: dict[str, tuple[bytes, str]], redirects: dict[str, str]) -> Iterator[ThreadingHTTPServer]:
    """Serves ``files`` (path -> (body, content type)) and ``redirects`` (path -> Location, a 302); 404 otherwise.
    ``server.url`` is its root, ``server.requests`` the paths asked for."""
    with serving(_static_handler(files, redirects)) as server:
        server.requests = []
        server.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield server
