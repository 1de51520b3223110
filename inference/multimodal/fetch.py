"""Images for vision models from OpenAI ``image_url`` content parts: ``data:`` URLs and http(s) URLs.

Fetching a URL named by an API client is a server-side request forgery hazard: the server sits inside a
network the client cannot reach (metadata services, admin ports, databases). So every hop is checked
before anything connects: the host is resolved once, every address must be public unicast (or allow-listed
by the operator), and the connection goes to that checked address, never to a second resolution (DNS
rebinding). Redirects are followed by hand so each one is checked the same way. Sizes, pixel counts and
time are bounded, and the bytes are sniffed by Pillow rather than trusting a Content-Type header.

Transparent images (RGBA, LA, palette or grey with a transparent colour) are composited onto white before
conversion to RGB: a plain convert would turn fully transparent pixels into whatever colour they happen to
store, often black, which is not what the client saw.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass, field

import httpx
from PIL import Image, UnidentifiedImageError

from inference.env import ConfigError, env_bool, env_float, env_int, env_str

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORMATS = ("GIF", "JPEG", "PNG", "WEBP")
_DATA_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp", "image/gif"})
# Cloud instance metadata endpoints hand out credentials: only an exact allow-list entry reaches them.
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?", re.IGNORECASE)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class ImageFetchError(ValueError):
    """The request's image cannot be used; the message is meant for the API client (HTTP 400)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Operator limits for image fetching; the defaults refuse every non-public address."""

    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 20 * 1024 * 1024
    timeout: float = 10.0
    max_redirects: int = 3
    max_pixels: int = 50_000_000
    allow_http: bool = True
    # images decoded and preprocessed at once, across all requests (inference/server/vision.py): each holds a
    # decoded image and its largest step (about 7 bytes a pixel at the peak), so this bounds the memory for images
    workers: int = 2
    # fetched image bytes held at once, across requests, while they wait for that pool (inference/server/held_bytes.py)
    held_bytes: int = 1024 * 1024 * 1024
    _names: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        for name in ("max_bytes", "timeout", "max_pixels", "workers", "held_bytes"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"FetchPolicy.{name} must be > 0, got {getattr(self, name)!r}")
        if self.max_redirects < 0:
            raise ConfigError(f"FetchPolicy.max_redirects must be >= 0, got {self.max_redirects!r}")
        if isinstance(self.allow_hosts, str):
            raise ConfigError("FetchPolicy.allow_hosts must be a tuple of strings, not one string")
        names, networks = set(), []
        for entry in self.allow_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                if not _HOST_NAME.fullmatch(entry.strip()):
                    raise ConfigError(
                        f"FetchPolicy.allow_hosts entry {entry!r} is neither an IP address/network nor a host name"
                    ) from None
                names.add(entry.strip().lower().rstrip("."))
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_env(cls) -> FetchPolicy:
        """The policy from INFERENCE_IMAGE_* variables; a bad value fails at startup, not per request."""
        hosts = tuple(h.strip() for h in env_str("INFERENCE_IMAGE_ALLOW_HOSTS", "").split(",") if h.strip())
        try:
            return cls(
                allow_hosts=hosts,
                max_bytes=env_int("INFERENCE_IMAGE_MAX_BYTES", cls.max_bytes, min_value=1),
                timeout=env_float("INFERENCE_IMAGE_FETCH_TIMEOUT", cls.timeout, min_value=0.001),
                max_redirects=env_int("INFERENCE_IMAGE_MAX_REDIRECTS", cls.max_redirects, min_value=0),
                allow_http=env_bool("INFERENCE_IMAGE_ALLOW_HTTP", cls.allow_http),
                workers=env_int("INFERENCE_IMAGE_WORKERS", cls.workers, min_value=1),
                held_bytes=env_int("INFERENCE_IMAGE_HELD_BYTES", cls.held_bytes, min_value=1),
            )
        except ConfigError as exc:
            if str(exc).startswith("INFERENCE_"):
                raise
            raise ConfigError(f"INFERENCE_IMAGE_ALLOW_HOSTS: {exc}") from None

    def refusal(self, host: str, addr: IPAddress) -> str | None:
        """Why ``addr`` (a resolution of ``host``) may not be fetched from, or None when it may."""
        embedded = _embedded_ipv4(addr)
        candidates = (addr,) if embedded is None else (embedded, addr)
        exact = {net.network_address for net in self._networks if net.num_addresses == 1}
        if any(a in _METADATA for a in candidates):
            return None if any(a in exact for a in candidates) else "a cloud metadata"
        if host in self._names or any(a in net for a in candidates for net in self._networks):
            return None
        for a in candidates:
            if reason := _address_class(a):
                return reason
        return None


def _embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4, Teredo or NAT64 IPv6 address: those reach it too."""
    if addr.version == 4:
        return None
    if addr.ipv4_mapped or addr.sixtofour:
        return addr.ipv4_mapped or addr.sixtofour
    if addr.teredo:
        return addr.teredo[1]
    return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF) if addr in _NAT64 else None


def _address_class(a: IPAddress) -> str | None:
    checks = (
        (a.is_unspecified, "an unspecified"),
        (a.is_loopback, "a loopback"),
        (a.is_link_local, "a link-local"),
        (a.is_multicast, "a multicast"),
        (a in _CGNAT, "a shared (CGNAT)"),
        (a.is_reserved, "a reserved"),
        (a.is_private, "a private"),
        (not a.is_global, "a non-public"),
    )
    return next((reason for bad, reason in checks if bad), None)


def _too_big(policy: FetchPolicy) -> ImageFetchError:
    return ImageFetchError(f"image is larger than the limit of {policy.max_bytes} bytes")


def _decode_data_url(url: str, policy: FetchPolicy) -> bytes:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ImageFetchError("data: URL has no ',' between the media type and the payload")
    params = [p.strip().lower() for p in header.split(";")]
    if params[0] not in _DATA_TYPES:
        raise ImageFetchError(
            f"data: URL media type {params[0] or '(none)'!r} is not supported; "
            "use image/jpeg, image/png, image/webp or image/gif"
        )
    if len(params) < 2 or params[-1] != "base64":
        raise ImageFetchError("data: URL must be base64-encoded (data:image/png;base64,...)")
    if len(payload) > 4 * ((policy.max_bytes + 2) // 3) + 3:  # checked before decoding anything
        raise _too_big(policy)
    try:
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageFetchError("data: URL payload is not valid base64") from None
    if len(data) > policy.max_bytes:
        raise _too_big(policy)
    return data


def _check_url(url: httpx.URL) -> tuple[str, int]:
    if url.scheme not in ("http", "https"):
        raise ImageFetchError(f"image URL scheme '{url.scheme}:' is not supported; use https:, http: or data:")
    if url.userinfo:
        raise ImageFetchError("image URLs must not contain credentials (user:password@)")
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise ImageFetchError("image URL has no host")
    return host, url.port or (443 if url.scheme == "https" else 80)


async def _resolve_checked(host: str, port: int, policy: FetchPolicy) -> list[IPAddress]:
    """All addresses of ``host``, each checked; one bad address refuses the host (it could be chosen)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ImageFetchError(f"image URL host '{host}' could not be resolved") from None
    addrs: list[IPAddress] = []
    for *_, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if addr not in addrs:
            addrs.append(addr)
        if reason := policy.refusal(host, addr):
            shown = f"{addr}, which embeds {embedded}" if (embedded := _embedded_ipv4(addr)) else str(addr)
            raise ImageFetchError(
                f"image URL host '{host}' resolves to {reason} address ({shown}); fetching from it is not allowed"
            )
    if not addrs:
        raise ImageFetchError(f"image URL host '{host}' could not be resolved")
    return addrs


async def _get(url: httpx.URL, host: str, addrs: list[IPAddress], policy: FetchPolicy) -> bytes | httpx.URL:
    """GET from the checked addresses (the next one on a failed connect): the body, or a redirect target."""
    # identity: a compressed body could expand far past max_bytes within a single decoded chunk.
    headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*", "Accept-Encoding": "identity"}
    # TLS SNI and certificate verification use the host name although the connection goes to an IP.
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    failure = "no address"
    for addr in addrs:
        # A client per connection: its pool is keyed by IP, so a shared one could reuse another host's TLS.
        async with httpx.AsyncClient(trust_env=False, timeout=policy.timeout) as client:
            pinned = url.copy_with(host=str(addr))
            request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                failure = str(exc)[:200] or type(exc).__name__
                continue
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    try:
                        return url.join(response.headers["location"])
                    except httpx.InvalidURL:
                        raise ImageFetchError(f"image URL host '{host}' redirected to an invalid URL") from None
                if response.status_code != 200:
                    raise ImageFetchError(f"image URL returned HTTP status {response.status_code}")
                encoding = response.headers.get("content-encoding", "identity").strip().lower()
                if encoding != "identity":
                    raise ImageFetchError(f"image URL response is compressed ({encoding}); only plain bodies are read")
                length = response.headers.get("content-length", "")
                if length.isdigit() and int(length) > policy.max_bytes:
                    raise _too_big(policy)
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > policy.max_bytes:
                        raise _too_big(policy)
                return bytes(body)
            finally:
                await response.aclose()
    raise ImageFetchError(f"could not connect to image URL host '{host}': {failure}")


async def _fetch_http(text: str, policy: FetchPolicy) -> bytes:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ImageFetchError(f"invalid image URL: {exc}") from None
    for _ in range(policy.max_redirects + 1):
        host, port = _check_url(url)
        addrs = await _resolve_checked(host, port, policy)
        try:
            result = await _get(url, host, addrs, policy)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.HTTPError as exc:
            raise ImageFetchError(f"fetching the image from '{host}' failed ({type(exc).__name__})") from None
        if isinstance(result, bytes):
            return result
        url = result
    raise ImageFetchError(f"image URL redirected more than {policy.max_redirects} times")


def _is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def most_bytes(url: str, policy: FetchPolicy) -> int:
    """The most bytes ``fetch_image_bytes(url)`` can return, known before fetching: a data: URL's decoded payload,
    from its length (a base64 character carries 6 bits; padding only makes it less); an http(s) body, the policy's
    limit."""
    if _is_data_url(url):
        return min(policy.max_bytes, (len(url) - url.find(",") - 1) * 3 // 4)  # the payload's length, not a copy
    return policy.max_bytes


async def fetch_image_bytes(url: str, policy: FetchPolicy) -> bytes:
    """The raw bytes behind a ``data:`` or http(s) image URL, within the policy's limits."""
    if _is_data_url(url):
        return _decode_data_url(url, policy)
    if not policy.allow_http:
        raise ImageFetchError("image URLs are disabled on this server; send the image inline as a data: URL")
    try:
        async with asyncio.timeout(policy.timeout):
            return await _fetch_http(url, policy)
    except TimeoutError:
        raise ImageFetchError(f"fetching the image timed out after {policy.timeout:g} s") from None


def open_image(data: bytes, policy: FetchPolicy) -> Image.Image:
    """Bytes to an image whose header is read and checked (format and pixel count) but whose pixels are not
    decoded yet: only JPEG/PNG/WEBP/GIF parsers are tried."""
    try:
        image = Image.open(io.BytesIO(data), formats=_FORMATS)
    except UnidentifiedImageError:
        raise ImageFetchError("image data is not a JPEG, PNG, WEBP or GIF image") from None
    except Image.DecompressionBombError:
        raise ImageFetchError(f"image has more than the limit of {policy.max_pixels} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error):
        raise ImageFetchError("image data is corrupt") from None
    width, height = image.size
    if width * height > policy.max_pixels:
        raise ImageFetchError(f"image is {width}x{height}, more than the limit of {policy.max_pixels} pixels")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Decode an opened image's pixels (the first frame of an animated GIF or WEBP) as RGB; an RGB image is
    returned as it is, not copied."""
    try:
        image.load()
        if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, SyntaxError, EOFError, struct.error):
        raise ImageFetchError(f"{image.format} image could not be decoded: it is truncated or corrupt") from None


def decode_image(data: bytes, policy: FetchPolicy) -> Image.Image:
    """Bytes to an RGB image; the size is checked before decoding."""
    return to_rgb(open_image(data, policy))
