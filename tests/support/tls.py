"""A TLS listener on loopback with a throwaway self-signed certificate (made by the openssl command), for the tests
of clients that must name a host in TLS's SNI and verify its certificate: it records the SNI of each handshake."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tls_listener(directory: Path) -> Iterator[tuple[int, list[str | None]]]:
    """One handshake served on 127.0.0.1: yields (its port, the SNI names it was sent)."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command makes the throwaway certificate (apt-get install openssl)"
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def handshake() -> None:
            connection, _ = listener.accept()
            try:
                context.wrap_socket(connection, server_side=True).close()
            except (ssl.SSLError, OSError):
                connection.close()  # the client rejects the self-signed certificate, as it should

        thread = threading.Thread(target=handshake, daemon=True)
        thread.start()
        yield listener.getsockname()[1], names
        thread.join(5)
