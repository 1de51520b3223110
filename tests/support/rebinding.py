"""DNS rebinding, faked in the test process: a name whose address changes between the hub's check of it and the
connection."""

from __future__ import annotations

import socket

from hub.webhooks import addresses


def rebinding(monkeypatch, name: str) -> None:
    """``name`` resolves to 127.0.0.1 the first time, which counts as a public address; after that (DNS rebinding)
    to 127.0.0.2, a private one nothing listens on: only a client that connects to the address it checked reaches
    a server on 127.0.0.1."""
    monkeypatch.setattr(addresses, "_private", lambda address: address != "127.0.0.1")
    real, answers = socket.getaddrinfo, iter(["127.0.0.1"])

    def resolve(host, port, *args, **kwargs):
        if host != name:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (next(answers, "127.0.0.2"), port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
