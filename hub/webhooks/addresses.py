"""Where a webhook may be sent (and where a remote MCP server may be, ``hub/api/mcp_client.py``). A tenant names the
URL, and the hub calls it from the operator's network: unless the operator's setting allows them
(``HUB_WEBHOOK_ALLOW_PRIVATE_URLS``, ``HUB_MCP_ALLOW_PRIVATE_URLS``), an address that is not global (loopback,
private, link-local, shared, reserved) is refused, named outright when the URL is given (``url_problem``) and after
resolving its host before each call (``resolve``); the call then connects to the address checked (``Pinned``), not
to whatever the name resolves to a moment later (DNS rebinding), naming the host in ``Host`` and in TLS's SNI, whose
certificate is checked against it."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

ALLOW_SETTING = "HUB_WEBHOOK_ALLOW_PRIVATE_URLS"


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is not part of it
    mapped = getattr(ip, "ipv4_mapped", None)
    return not (mapped or ip).is_global


def _refused(host: str, address: str, allow: str) -> str:
    shown = host if host == address else f"{host} ({address})"
    return f"{shown} is not a public address; the hub's operator allows those with {allow}."


def url_problem(url: str, param: str = "url", allow: str = ALLOW_SETTING) -> str | None:
    """Why ``url`` (the request's ``param``) cannot be called, None if it can: an http(s) URL with a host and, unless
    the setting ``allow`` allows private addresses, not a private address or ``localhost`` named outright."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a port out of range raises
    except ValueError as bad:
        return f"'{param}' is not a valid URL: {bad}."
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return f"'{param}' must be an http:// or https:// URL with a host."
    host = parts.hostname
    if getattr(settings, allow):
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"'{param}': " + _refused(host, host, allow)
    try:
        return f"'{param}': " + _refused(host, host, allow) if _private(host) else None
    except ValueError:  # a name, not an address: checked when it is resolved
        return None


@dataclass(frozen=True)
class Pinned:
    """A call's host and the address checked for it (``address`` None: the system's resolver decides, where private
    addresses are allowed)."""

    host: str
    address: str | None = None

    def url(self, url: str) -> str:
        """``url`` with the checked address in place of its host (its user, port, path and query kept)."""
        return url if self.address is None else str(httpx.URL(url).copy_with(host=self.address))

    def headers(self, url: str) -> dict[str, str]:
        """The ``Host`` the URL names (its port too, when given)."""
        if self.address is None:
            return {}
        return {"Host": httpx.URL(url).netloc.decode("ascii")}

    def extensions(self, url: str) -> dict[str, str]:
        """httpx's request extensions: TLS's SNI (and the certificate's check) for the host named."""
        return {"sni_hostname": self.host} if self.address is not None and url.startswith("https:") else {}


def resolve(url: str, allow: str = ALLOW_SETTING) -> tuple[Pinned | None, str | None]:
    """Before a call: (where it connects, None) or (None, why it may not go to ``url``'s host as it resolves now).
    Every address the host resolves to must be public; the call goes to the first."""
    parts = urlsplit(url)
    if getattr(settings, allow):
        return Pinned(parts.hostname), None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except OSError as failed:
        return None, f"{parts.hostname} could not be resolved: {failed}"
    for *_, address in found:
        if _private(address[0]):
            return None, _refused(parts.hostname, address[0], allow)
    return Pinned(parts.hostname, found[0][4][0].split("%", 1)[0]), None
