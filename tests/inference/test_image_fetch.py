"""Image fetching for vision requests: data: URLs, http(s) through a real loopback server, SSRF refusals.

Nothing here leaves the machine: refused addresses are refused before any connection, and the only servers
that are reached listen on loopback addresses (127.0.0.1, allow-listed explicitly; 127.0.0.2 for the DNS
rebinding test, where a fake resolver stands in for DNS).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import ipaddress
import socket
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from inference.env import ConfigError
from inference.multimodal.fetch import FetchPolicy, ImageFetchError, decode_image, fetch_image_bytes, most_bytes
from tests.support.tls import tls_listener

LOCAL = FetchPolicy(allow_hosts=("127.0.0.1",), timeout=5.0)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png() -> bytes:
    image = Image.new("RGBA", (32, 24), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 8, 8))  # fully transparent black corner: must come out white
    return _encode(image, "PNG")


def _gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


IMAGES = {
    "png": (_png(), (32, 24)),
    "jpeg": (_encode(Image.new("RGB", (40, 30), (0, 128, 0)), "JPEG"), (40, 30)),
    "webp": (_encode(Image.new("RGB", (20, 10), (0, 0, 200)), "WEBP"), (20, 10)),
    "gif": (_gif(), (16, 16)),
}


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG header claiming huge dimensions, with no pixel data behind it."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]]  # (path, Host header), set on the per-server subclass
    headers_by_path: dict[str, dict[str, str]]

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "image/png", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append((self.path, self.headers.get("Host", "")))
        self.headers_by_path[self.path] = dict(self.headers)
        path = self.path.split("?")[0]
        port = self.server.server_address[1]
        redirects = {
            "/relative": "image.png",
            "/to-private": "http://10.0.0.1/image.png",
            "/to-metadata": "http://169.254.169.254/latest/meta-data",
            "/to-localhost": f"http://localhost:{port}/image.png",
            "/to-file": "file:///etc/passwd",
        }
        try:
            if path.startswith("/image.") and path[7:] in IMAGES:
                self._send(200, IMAGES[path[7:]][0])
            elif path == "/text-as-png":
                self._send(200, b"this is not an image at all")
            elif path == "/gzipped":
                self._send(200, zlib.compress(IMAGES["png"][0]), **{"Content-Encoding": "deflate"})
            elif path == "/huge":
                self._send(200, b"\0" * 5000)
            elif path == "/stream":  # no Content-Length: the body ends when the connection closes
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            elif path == "/slow":
                time.sleep(1.5)
                self._send(200, IMAGES["png"][0])
            elif path == "/trickle":  # a byte every 50 ms for 10 s: each read is quick, the whole is not
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", "200")
                self.end_headers()
                for _ in range(200):
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif path.startswith("/redirect/"):
                hops = int(path.rsplit("/", 1)[1])
                self._send(302, Location=f"/redirect/{hops - 1}" if hops > 1 else "/image.png")
            elif path in redirects:
                self._send(302, Location=redirects[path])
            else:
                self._send(404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, which is what the limits are for


@contextlib.contextmanager
def _serving(host: str = "127.0.0.1", port: int = 0):
    """A test server on ``host``; ``seen`` lists the (path, Host header) of every request that reached it."""
    handler = type("Handler", (_Handler,), {"seen": [], "headers_by_path": {}})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.handle_error = lambda request, client_address: None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.base = f"http://{host}:{httpd.server_address[1]}"
    httpd.seen, httpd.headers_by_path = handler.seen, handler.headers_by_path
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def server():
    with _serving() as httpd:
        yield httpd


def _fetch(url: str, policy: FetchPolicy = LOCAL) -> bytes:
    return asyncio.run(fetch_image_bytes(url, policy))


def _load(url: str, policy: FetchPolicy = LOCAL) -> Image.Image:
    return decode_image(_fetch(url, policy), policy)


def _refused(url: str, policy: FetchPolicy = LOCAL) -> str:
    with pytest.raises(ImageFetchError) as info:
        _load(url, policy)
    return str(info.value)


# --- http(s) through the loopback server ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_fetches_each_format_over_http(server, name):
    image = _load(f"{server.base}/image.{name}")
    assert image.mode == "RGB" and image.size == IMAGES[name][1]


def test_first_gif_frame_and_transparency_on_white(server):
    assert _load(f"{server.base}/image.gif").getpixel((8, 8))[0] > 200  # red first frame, not blue
    png = _load(f"{server.base}/image.png")
    assert png.getpixel((0, 0)) == (255, 255, 255) and png.getpixel((20, 20)) == (255, 0, 0)


def test_host_header_is_the_url_host(server):
    _fetch(f"{server.base}/image.png?host-header")
    assert ("/image.png?host-header", server.base[7:]) in server.seen
    assert server.headers_by_path["/image.png?host-header"]["Accept-Encoding"] == "identity"


def test_loopback_refused_without_allow_list_and_nothing_connects(server):
    message = _refused(f"{server.base}/image.png?refused-loopback", FetchPolicy())
    assert "host '127.0.0.1' resolves to a loopback address (127.0.0.1)" in message
    assert "not allowed" in message
    assert not [seen for seen in server.seen if "refused-loopback" in seen[0]]


def test_decimal_ip_is_resolved_and_checked(server):
    port = server.server_address[1]
    assert "resolves to a loopback address (127.0.0.1)" in _refused(f"http://2130706433:{port}/x", FetchPolicy())
    assert _fetch(f"http://2130706433:{port}/image.png") == IMAGES["png"][0]


def test_redirects_are_followed_up_to_the_limit(server):
    assert _load(f"{server.base}/redirect/3").size == (32, 24)
    assert _load(f"{server.base}/relative").size == (32, 24)
    assert "redirected more than 3 times" in _refused(f"{server.base}/redirect/4")
    no_redirects = FetchPolicy(allow_hosts=("127.0.0.1",), max_redirects=0)
    assert "redirected more than 0 times" in _refused(f"{server.base}/redirect/1", no_redirects)


def test_redirect_targets_are_checked_again(server):
    assert "'10.0.0.1' resolves to a private address" in _refused(f"{server.base}/to-private")
    with_link_local = FetchPolicy(allow_hosts=("127.0.0.1", "169.254.0.0/16"))
    message = _refused(f"{server.base}/to-metadata", with_link_local)
    assert "'169.254.169.254' resolves to a cloud metadata address" in message
    assert "scheme 'file:' is not supported" in _refused(f"{server.base}/to-file")


def test_localhost_redirect_needs_every_address_allowed(server):
    # Only addresses are allow-listed, not the name "localhost": it passes when everything it resolves to is
    # allowed (127.0.0.1, and ::1 where /etc/hosts maps it too), and is refused otherwise.
    port = server.server_address[1]
    resolved = {info[4][0] for info in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
    if resolved == {"127.0.0.1"}:
        assert _load(f"{server.base}/to-localhost").size == (32, 24)
    else:
        assert "'localhost' resolves to a loopback address" in _refused(f"{server.base}/to-localhost")
    both = FetchPolicy(allow_hosts=("127.0.0.1", "::1"))
    assert _load(f"{server.base}/to-localhost?both", both).size == (32, 24)
    assert ("/image.png", f"localhost:{port}") in server.seen  # connected to the checked IP, original Host header
    assert _load(f"http://localhost:{port}/image.png", FetchPolicy(allow_hosts=("LocalHost",))).size == (32, 24)


def test_http_errors(server):
    assert "HTTP status 404" in _refused(f"{server.base}/missing")
    assert "not a JPEG, PNG, WEBP or GIF image" in _refused(f"{server.base}/text-as-png")
    small = FetchPolicy(allow_hosts=("127.0.0.1",), max_bytes=1000)
    assert "larger than the limit of 1000 bytes" in _refused(f"{server.base}/huge", small)
    assert "larger than the limit of 1000 bytes" in _refused(f"{server.base}/stream", small)
    assert "response is compressed (deflate); only plain bodies are read" in _refused(f"{server.base}/gzipped")
    assert ("/gzipped", server.base[7:]) in server.seen


def test_slow_server_times_out(server):
    # /slow sends a valid PNG after 1.5 s: a fetch that waited for it would return the image, so the timeout
    # error is the proof that the fetch was cut off at the limit before the answer came.
    message = _refused(f"{server.base}/slow", FetchPolicy(allow_hosts=("127.0.0.1",), timeout=0.3))
    assert "timed out after 0.3 s" in message


def test_the_timeout_bounds_the_whole_fetch_not_each_read(server):
    # /trickle sends a byte every 50 ms (no read waits anywhere near 0.3 s) for 10 s, and 200 zero bytes are
    # not an image: had the fetch run to the end, the error would say so instead of naming the timeout.
    message = _refused(f"{server.base}/trickle", FetchPolicy(allow_hosts=("127.0.0.1",), timeout=0.3))
    assert message == "fetching the image timed out after 0.3 s"


def _fake_dns(monkeypatch, name: str, answers: list[list[str]]) -> list[str]:
    """Resolve ``name`` to ``answers[i]`` on its i-th lookup (the last one from then on), every other host as
    usual; asyncio's getaddrinfo, which the fetch and httpx (through anyio, with the name as IDNA bytes) both
    use, calls socket.getaddrinfo. Returns the list of lookups of ``name``."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        asked = host.decode("ascii") if isinstance(host, bytes) else host
        if asked != name:
            return real(host, port, *args, **kwargs)
        lookups.append(asked)
        ips = answers[min(len(lookups), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, int(port))) for ip in ips]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def test_dns_rebinding_the_connection_goes_to_the_checked_address_with_one_lookup(monkeypatch):
    """A name that answers an allowed address when checked and a private one on any later lookup: the fetch
    resolves it once and connects to the address it checked. 127.0.0.1 (allow-listed) stands for the public
    address and 127.0.0.2 (loopback, not allow-listed) for the private one; a server on each, on one port,
    records what reaches it."""
    with _serving("127.0.0.1") as checked, _serving("127.0.0.2", checked.server_address[1]) as private:
        port = checked.server_address[1]
        lookups = _fake_dns(monkeypatch, "images.example", [["127.0.0.1"], ["127.0.0.2"]])
        assert _fetch(f"http://images.example:{port}/image.png?rebinding") == IMAGES["png"][0]
    assert private.seen == []
    assert checked.seen == [("/image.png?rebinding", f"images.example:{port}")]
    assert lookups == ["images.example"]


def test_dns_rebinding_each_redirect_hop_is_resolved_once(monkeypatch):
    with _serving("127.0.0.1") as checked, _serving("127.0.0.2", checked.server_address[1]) as private:
        port = checked.server_address[1]
        lookups = _fake_dns(monkeypatch, "images.example", [["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"]])
        assert _fetch(f"http://images.example:{port}/relative") == IMAGES["png"][0]  # a redirect to image.png
    assert private.seen == []
    assert checked.seen == [("/relative", f"images.example:{port}"), ("/image.png", f"images.example:{port}")]
    assert lookups == ["images.example", "images.example"]


def test_dns_answer_with_one_private_address_among_allowed_ones_is_refused(monkeypatch):
    with _serving("127.0.0.1") as checked, _serving("127.0.0.2", checked.server_address[1]) as private:
        port = checked.server_address[1]
        lookups = _fake_dns(monkeypatch, "images.example", [["127.0.0.1", "127.0.0.2"]])
        message = _refused(f"http://images.example:{port}/image.png")
    assert "'images.example' resolves to a loopback address (127.0.0.2); fetching from it is not allowed" in message
    assert lookups == ["images.example"]
    assert checked.seen == [] and private.seen == []


def test_connection_refused_is_a_short_error(server):
    with socket.socket() as unused:  # bound but not listening: connecting to it is refused
        unused.bind(("127.0.0.1", 0))
        message = _refused(f"http://127.0.0.1:{unused.getsockname()[1]}/image.png")
    assert message.startswith("could not connect to image URL host '127.0.0.1'") and "Traceback" not in message


def test_https_connects_to_the_checked_ip_with_the_host_name_for_sni_and_verification(tmp_path):
    """The connection goes to the resolved IP, yet TLS names the host (SNI) and the certificate is verified."""
    with tls_listener(tmp_path) as (port, names):
        url = f"https://localhost:{port}/image.png"
        message = _refused(url, FetchPolicy(allow_hosts=("localhost",), timeout=5.0))
    assert names == ["localhost"]
    assert "could not connect to image URL host 'localhost'" in message and "CERTIFICATE_VERIFY_FAILED" in message


# --- refused addresses, as literal IPs (nothing connects) -----------------------------------------------


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("http://127.0.0.1/x", "'127.0.0.1' resolves to a loopback address"),
        ("http://[::1]/x", "'::1' resolves to a loopback address"),
        ("http://localhost/x", "'localhost' resolves to a loopback address"),
        ("http://10.1.2.3/x", "'10.1.2.3' resolves to a private address (10.1.2.3)"),
        ("http://172.16.5.4/x", "'172.16.5.4' resolves to a private address"),
        ("http://192.168.1.1/x", "'192.168.1.1' resolves to a private address"),
        ("http://[fd12::1]/x", "'fd12::1' resolves to a private address"),
        ("http://169.254.10.10/x", "'169.254.10.10' resolves to a link-local address"),
        ("http://[fe80::1]/x", "'fe80::1' resolves to a link-local address"),
        ("http://224.0.0.1/x", "'224.0.0.1' resolves to a multicast address"),
        ("http://239.1.2.3/x", "'239.1.2.3' resolves to a multicast address"),
        ("http://[ff02::1]/x", "'ff02::1' resolves to a multicast address"),
        ("http://0.0.0.0/x", "'0.0.0.0' resolves to an unspecified address"),
        ("http://[::]/x", "'::' resolves to an unspecified address"),
        ("http://100.64.1.1/x", "'100.64.1.1' resolves to a shared (CGNAT) address"),
        ("http://240.0.0.1/x", "'240.0.0.1' resolves to a reserved address"),
        ("http://169.254.169.254/latest/meta-data", "'169.254.169.254' resolves to a cloud metadata address"),
        ("http://100.100.100.200/x", "resolves to a cloud metadata address"),
        ("http://[fd00:ec2::254]/x", "resolves to a cloud metadata address"),
        (
            "http://[::ffff:127.0.0.1]/x",
            "'::ffff:127.0.0.1' resolves to a loopback address (::ffff:7f00:1, which embeds 127.0.0.1)",
        ),
        ("http://[::ffff:169.254.169.254]/x", "resolves to a cloud metadata address"),
        ("http://[2002:a00:1::]/x", "resolves to a private address"),  # 6to4 of 10.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/x", "resolves to a cloud metadata address"),  # NAT64 of 169.254.169.254
        ("http://169.254.170.2/v2/credentials", "'169.254.170.2' resolves to a cloud metadata address"),  # ECS
        # Teredo (2001:0::/32, server 65.54.227.120 in the middle) stores the client IPv4 XOR 0xffffffff in
        # its last 32 bits. The first is RFC 4380's own example (client 192.0.2.45, TEST-NET-1: not public).
        (
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",
            "resolves to a private address (2001:0:4136:e378:8000:63bf:3fff:fdd2, which embeds 192.0.2.45)",
        ),
        (  # ~0x7f000001 = 0x80fffffe
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x",
            "resolves to a loopback address (2001:0:4136:e378:8000:63bf:80ff:fffe, which embeds 127.0.0.1)",
        ),
        (  # ~0x0a000001 = 0xf5fffffe
            "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/x",
            "resolves to a private address (2001:0:4136:e378:8000:63bf:f5ff:fffe, which embeds 10.0.0.1)",
        ),
        (  # ~0xa9fea9fe = 0x56015601
            "http://[2001:0:4136:e378:8000:63bf:5601:5601]/x",
            "resolves to a cloud metadata address (2001:0:4136:e378:8000:63bf:5601:5601, which embeds 169.254.169.254)",
        ),
        (  # ~0xa9feaa02 = 0x560155fd
            "http://[2001:0:4136:e378:8000:63bf:5601:55fd]/x",
            "resolves to a cloud metadata address (2001:0:4136:e378:8000:63bf:5601:55fd, which embeds 169.254.170.2)",
        ),
    ],
)
def test_non_public_addresses_are_refused(url, phrase):
    message = _refused(url, FetchPolicy())
    assert phrase in message and "fetching from it is not allowed" in message


def test_metadata_needs_its_exact_address_listed():
    metadata = ipaddress.ip_address("169.254.169.254")
    assert FetchPolicy(allow_hosts=("169.254.0.0/16",)).refusal("169.254.169.254", metadata) == "a cloud metadata"
    assert FetchPolicy(allow_hosts=("metadata.internal",)).refusal("metadata.internal", metadata)
    assert FetchPolicy(allow_hosts=("169.254.169.254",)).refusal("169.254.169.254", metadata) is None
    ecs = ipaddress.ip_address("169.254.170.2")
    assert FetchPolicy(allow_hosts=("169.254.0.0/16",)).refusal("169.254.170.2", ecs) == "a cloud metadata"
    assert FetchPolicy(allow_hosts=("169.254.169.254",)).refusal("169.254.170.2", ecs) == "a cloud metadata"
    assert FetchPolicy(allow_hosts=("169.254.170.2",)).refusal("169.254.170.2", ecs) is None
    teredo_ecs = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:5601:55fd")
    assert FetchPolicy(allow_hosts=("169.254.0.0/16", "2001::/32")).refusal("t", teredo_ecs) == "a cloud metadata"
    assert FetchPolicy(allow_hosts=("10.0.0.0/8",)).refusal("10.9.9.9", ipaddress.ip_address("10.9.9.9")) is None


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("file:///etc/passwd", "scheme 'file:' is not supported"),
        ("ftp://example.com/a.png", "scheme 'ftp:' is not supported"),
        ("gopher://example.com/a.png", "scheme 'gopher:' is not supported"),
        ("http://user:secret@127.0.0.1/a.png", "must not contain credentials"),
        ("http:///a.png", "has no host"),
        ("http://[::1/a.png", "invalid image URL"),
        ("http://no-such-host.invalid/a.png", "'no-such-host.invalid' could not be resolved"),
    ],
)
def test_bad_urls(url, phrase):
    assert phrase in _refused(url)


def test_http_can_be_disabled():
    assert "send the image inline as a data: URL" in _refused(
        "https://example.com/a.png", FetchPolicy(allow_http=False)
    )


# --- data: URLs and decoding ---------------------------------------------------------------------------


def _data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_data_url_each_format(name):
    media_type = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif"}[name]
    image = _load(_data_url(IMAGES[name][0], media_type), FetchPolicy(allow_http=False))
    assert image.mode == "RGB" and image.size == IMAGES[name][1]


def test_data_url_media_type_is_not_trusted_and_padding_is_optional():
    assert _load(_data_url(IMAGES["jpeg"][0], "image/jpg")).size == (40, 30)
    assert _load(_data_url(IMAGES["png"][0], "IMAGE/PNG").rstrip("=")).size == (32, 24)


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("data:image/svg+xml;base64,PHN2Zz4=", "media type 'image/svg+xml' is not supported"),
        ("data:text/plain;base64,aGVsbG8=", "media type 'text/plain' is not supported"),
        ("data:;base64,aGVsbG8=", "media type '(none)' is not supported"),
        ("data:image/png,rawbytes", "must be base64-encoded"),
        ("data:image/png;base64", "has no ','"),
        ("data:image/png;base64,@@not*base64@@", "not valid base64"),
        ("data:image/png;base64,aGVs bG8=", "not valid base64"),
        (_data_url(b"hello, not an image"), "not a JPEG, PNG, WEBP or GIF image"),
        (_data_url(_encode(Image.new("RGB", (4, 4)), "BMP")), "not a JPEG, PNG, WEBP or GIF image"),
        (_data_url(IMAGES["png"][0][:60]), "PNG image could not be decoded: it is truncated or corrupt"),
    ],
)
def test_bad_data_urls(url, phrase):
    assert phrase in _refused(url)


def test_data_url_size_limit():
    small = FetchPolicy(max_bytes=100)
    assert "larger than the limit of 100 bytes" in _refused(_data_url(b"\0" * 101), small)
    assert "larger than the limit of 100 bytes" in _refused("data:image/png;base64," + "A" * 10_000_000, small)
    assert _fetch(_data_url(b"\1" * 100), small) == b"\1" * 100


def test_decompression_bombs():
    with pytest.raises(ImageFetchError, match="more than the limit of 50000000 pixels"):
        decode_image(_bomb_png(), FetchPolicy())
    with pytest.raises(ImageFetchError, match=r"is 8000x8000, more than the limit of 50000000 pixels"):
        decode_image(_bomb_png(8000, 8000), FetchPolicy())
    with pytest.raises(ImageFetchError, match=r"is 32x24, more than the limit of 100 pixels"):
        decode_image(IMAGES["png"][0], FetchPolicy(max_pixels=100))


# --- policy --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"max_bytes": 0}, "max_bytes"),
        ({"timeout": -1.0}, "timeout"),
        ({"max_pixels": 0}, "max_pixels"),
        ({"max_redirects": -1}, "max_redirects"),
        ({"workers": 0}, "workers"),
        ({"allow_hosts": "127.0.0.1"}, "allow_hosts must be a tuple"),
        ({"allow_hosts": ("bad host!",)}, "allow_hosts entry 'bad host!'"),
        ({"allow_hosts": ("10.0.0.0/33",)}, "allow_hosts entry '10.0.0.0/33'"),
    ],
)
def test_policy_validation(kwargs, phrase):
    with pytest.raises(ValueError, match=phrase):
        FetchPolicy(**kwargs)


def test_policy_from_env(monkeypatch):
    assert FetchPolicy.from_env() == FetchPolicy()
    monkeypatch.setenv("INFERENCE_IMAGE_ALLOW_HOSTS", " images.internal, 10.0.0.0/8 ,,::1")
    monkeypatch.setenv("INFERENCE_IMAGE_MAX_BYTES", "1234")
    monkeypatch.setenv("INFERENCE_IMAGE_FETCH_TIMEOUT", "2.5")
    monkeypatch.setenv("INFERENCE_IMAGE_MAX_REDIRECTS", "0")
    monkeypatch.setenv("INFERENCE_IMAGE_ALLOW_HTTP", "false")
    monkeypatch.setenv("INFERENCE_IMAGE_WORKERS", "3")
    monkeypatch.setenv("INFERENCE_IMAGE_HELD_BYTES", "5000000")
    policy = FetchPolicy.from_env()
    assert policy == FetchPolicy(("images.internal", "10.0.0.0/8", "::1"), 1234, 2.5, 0, allow_http=False, workers=3,
                                 held_bytes=5_000_000)  # fmt: skip
    for name, value in [
        ("INFERENCE_IMAGE_ALLOW_HTTP", "maybe"),
        ("INFERENCE_IMAGE_FETCH_TIMEOUT", "soon"),
        ("INFERENCE_IMAGE_FETCH_TIMEOUT", "0"),
        ("INFERENCE_IMAGE_MAX_BYTES", "lots"),
        ("INFERENCE_IMAGE_ALLOW_HOSTS", "ok.example, not a host"),
        ("INFERENCE_IMAGE_WORKERS", "0"),
        ("INFERENCE_IMAGE_HELD_BYTES", "0"),
    ]:
        with monkeypatch.context() as patch:
            patch.setenv(name, value)
            with pytest.raises(ConfigError, match=name):
                FetchPolicy.from_env()


def test_most_bytes_bounds_what_a_fetch_returns_before_it_runs():
    """What a vision request counts for an image before fetching it (``held_bytes.py``): never less than the
    bytes the fetch returns, for every payload length's padding; an http image counts the whole limit."""
    for size in range(0, 40):
        payload = base64.b64encode(bytes(range(size))).decode()
        for url in (f"data:image/png;base64,{payload}", f"data:image/png;base64,{payload.rstrip('=')}"):
            got = asyncio.run(fetch_image_bytes(url, LOCAL))
            assert len(got) == size <= most_bytes(url, LOCAL) <= size + 2, (size, url)
    assert most_bytes("https://images.example/x.jpg", LOCAL) == LOCAL.max_bytes
    big = "data:image/png;base64," + "A" * (LOCAL.max_bytes * 2)
    assert most_bytes(big, LOCAL) == LOCAL.max_bytes  # refused by the fetch; counted at the limit meanwhile
