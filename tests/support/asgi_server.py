"""An ASGI app served by uvicorn on a loopback port, in a thread of the test process: a test's fake of a server
(our inference service, a deployment, an MCP server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.processes import free_port


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served until the block ends; yields its base URL (``http://127.0.0.1:<port>``)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
