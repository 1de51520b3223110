"""A TCP proxy the fault tests put between a hub and PostgreSQL, to take the database away from that hub alone
(the shared server keeps serving the rest of the suite) and give it back on the same address."""

from __future__ import annotations

import socket
import threading

from tests.support.processes import free_port


class TcpProxy:
    """``127.0.0.1:<port>`` → ``target``. ``cut()``: open connections are dropped and new ones refused, as when
    the server goes down; ``restore()``: it serves again on the same port."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _drop(sock)

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by cut()
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _drop(client)
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _drop(client)
                    _drop(server)
                    return
                self._sockets |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets -= {src, dst}
            _drop(src)
            _drop(dst)


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
