"""Files in a model's input, as OpenAI takes them: chat's ``file`` content part (``{"file": {"file_id"}}`` or
``{"file": {"filename", "file_data"}}``), the Responses API's ``input_file`` (those, or a ``file_url``), and its
``input_image`` by ``file_id``.

Our models read text (and a vision model images), so each file is shown to the model as a text part holding its
text, read as a vector store reads a file (``hub/documents.py``: a PDF's text layer, a page without one read by OCR
where it is on, up to ``MAX_PAGES`` such pages; a Word document's, a PowerPoint deck's, an Excel workbook's, an HTML
page's, or UTF-8 text; other files are a 400 ``unsupported_file``), inside ``<file name="...">`` ... ``</file>``; an
image named by ``file_id`` becomes a ``data:`` URL of its bytes. A vision model gets a PDF as OpenAI's do: its text,
then an image of each page (PNG, its longer side by the file's ``detail``: ``PAGE_PIXELS``; a scan that OCR did not
read is its images alone). This
happens in the gateway, before the request is estimated and limited, so a file's tokens are reserved, routed and
metered as the prompt's; the limits are asked first (``admit``, charging nothing) about the request with each
document's text empty, so a key they refuse anyway makes the hub read no file. Every deployment gets the text, ours
and external ones alike (an OpenAI-compatible provider may not read files, and none knows this hub's file ids); what
is stored (a chat completion's messages, a response's input items) keeps the file as it was sent.

A ``file_id`` is one of the tenant's files (the Files API); ``file_data`` is base64, bare or as a ``data:`` URL; a
``file_url`` is fetched by the hub (http or https, up to ``HUB_MAX_FILE_BYTES``, three redirects, each host resolved
and checked as a webhook's is: a loopback, private or link-local address only where
``HUB_FILE_URL_ALLOW_PRIVATE_URLS``). A stored file's text is kept by the process once read, and a document sent as
data or by URL by its digest (``_Texts``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin

import httpx
from django.conf import settings

from accounts import files
from accounts.authn import KeyContext
from hub.api import errors
from hub.documents import PARSED, PDF_MAGIC, Failed, read_text
from hub.pdfs import page_images
from hub.pool import db
from hub.webhooks import addresses

ALLOW_SETTING = "HUB_FILE_URL_ALLOW_PRIVATE_URLS"
FETCH_TIMEOUT_SECONDS = 30.0
MAX_REDIRECTS = 3
TEXT_CACHE_CHARS = 64 * 1024 * 1024  # the files' texts (and PDF pages' data: URLs) kept per process (_Texts)
FILE_FIELDS = ("file_id", "filename", "file_data", "file_url")
PAGE_PIXELS = {"low": 512, "auto": 1024, "high": 1536}  # a PDF page image's longer side, by the file's detail
MAX_PAGES = 100  # OpenAI's most pages of a PDF given to a vision model
_IMAGE_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
                (b"GIF89a", "image/gif"))  # fmt: skip

Where = Callable[[int, int, tuple], str]  # (message, part, its key) -> the request's name of it, for errors
Resolved = dict[tuple, list[dict]]  # a part's key -> the parts the model gets in its place
Admit = Callable[[dict], Awaitable[None]]  # a chat request without its files -> raises if the limits refuse it


def key_of(part: dict) -> tuple | None:
    """A file part's identity (the same file named twice is read once), None for other parts."""
    if part.get("type") == "file" and isinstance(part.get("file"), dict):
        return ("file", *(part["file"].get(name) for name in (*FILE_FIELDS, "detail")))
    image = part.get("image_url")
    if part.get("type") == "image_url" and isinstance(image, dict) and image.get("file_id") is not None:
        return ("image", image["file_id"], image.get("detail"))
    return None


def _parts(messages: list):
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and (key := key_of(part)) is not None:
                    yield i, j, key, part


def _image_type(content: bytes) -> str | None:
    for magic, kind in _IMAGE_TYPES:
        if content.startswith(magic):
            return kind
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


Kept = str | tuple[str, ...]  # a file's text, or its pages' data: URLs


def _chars(value: Kept) -> int:
    return len(value) if isinstance(value, str) else sum(map(len, value))


class _Texts:
    """The texts of files read lately (and a PDF's pages as a vision model gets them), up to ``limit`` characters in
    all: a stored file's by (tenant, file id), a document sent as bytes by (tenant, its digest). A file of the Files
    API never changes, and a client without file ids sends the same ``file_data`` with every turn of a conversation:
    either way it is parsed (its pages rendered) once per process (a 100-page PDF's text: ~55 ms,
    ``benchmarks/bench_file_inputs.py``). A stored file is looked up every time all the same, so a deleted or expired
    one is no file; a digest is kept per tenant, so no tenant can time whether another sent a document."""

    def __init__(self, limit: int = TEXT_CACHE_CHARS):
        self.limit, self.size, self.texts = limit, 0, OrderedDict[tuple, Kept]()

    def get(self, key: tuple) -> Kept | None:
        if (text := self.texts.get(key)) is not None:
            self.texts.move_to_end(key)
        return text

    def put(self, key: tuple, text: Kept) -> None:
        if _chars(text) > self.limit // 4 or key in self.texts:
            return
        self.texts[key], self.size = text, self.size + _chars(text)
        while self.size > self.limit:
            self.size -= _chars(self.texts.popitem(last=False)[1])


_texts = _Texts()


async def _filename(key: KeyContext, file_id: object, param: str) -> str:
    """The name of the tenant's file ``file_id`` (looked up without its content)."""
    row = await db(files.find, key.tenant_id, file_id)
    if row is None:
        raise _no_file(file_id, param)
    return row.filename


async def _content_of(key: KeyContext, file_id: object, param: str) -> bytes:
    content = await db(files.content, key.tenant_id, file_id)
    if content is None:
        raise _no_file(file_id, param)
    return content


def _no_file(file_id: object, param: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(f"No such File object: {errors.shown(file_id)}", param=param)


def _decoded(data: str, param: str) -> bytes:
    """``file_data``: base64, or a ``data:<type>;base64,`` URL of it."""
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        if not head.endswith(";base64"):
            raise errors.InvalidRequest(f"'{param}' must be base64: a data: URL with ';base64'.", param=param,
                                        code="invalid_value")  # fmt: skip
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRequest(f"'{param}' is not valid base64.", param=param, code="invalid_value") from None
    if len(content) > settings.HUB_MAX_FILE_BYTES:
        raise errors.InvalidRequest(f"The file is larger than {settings.HUB_MAX_FILE_BYTES:,} bytes "
                                    "(HUB_MAX_FILE_BYTES).", param=param, code="file_too_large")  # fmt: skip
    return content


@functools.cache
def _tls() -> ssl.SSLContext:
    """The process's TLS context, made once: loading the certificate authorities took ~30 ms a fetch, most of a
    small file's (``benchmarks/bench_file_inputs.py``)."""
    return httpx.create_ssl_context()


def _unfetched(param: str, why: str, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(f"The file could not be fetched: {why}", param=param, code=code)


async def _pinned(url: str, param: str) -> addresses.Pinned:
    """Where ``url`` may be fetched from: its host resolved and checked (``addresses``)."""
    if (problem := addresses.url_problem(url, param, ALLOW_SETTING)) is not None:
        raise errors.InvalidRequest(problem, param=param, code="invalid_value")
    try:
        pinned, problem = await asyncio.to_thread(addresses.resolve, url, ALLOW_SETTING)
    except ValueError:  # a host name IDNA cannot encode
        pinned, problem = None, "its host is not a valid name."
    if pinned is None:
        raise _unfetched(param, problem)
    return pinned


async def _body(response: httpx.Response, param: str) -> bytes:
    """A 200's body, up to ``HUB_MAX_FILE_BYTES``."""
    if response.status_code != 200:
        raise _unfetched(param, f"its URL answered {response.status_code}.")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > settings.HUB_MAX_FILE_BYTES:
            raise _unfetched(param, f"it is larger than {settings.HUB_MAX_FILE_BYTES:,} bytes (HUB_MAX_FILE_BYTES).",
                             "file_too_large")  # fmt: skip
    return bytes(body)


async def _fetched(url: str, param: str) -> bytes:
    """The file at ``url``, its host (and each redirect's) checked before connecting."""
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, verify=_tls()) as client:
        for _ in range(MAX_REDIRECTS + 1):
            pinned = await _pinned(url, param)
            try:
                async with client.stream("GET", pinned.url(url), headers=pinned.headers(url),
                                         extensions=pinned.extensions(url)) as response:  # fmt: skip
                    if not (response.is_redirect and "location" in response.headers):
                        return await _body(response, param)
                    url = urljoin(url, response.headers["location"])
            except (httpx.HTTPError, httpx.InvalidURL, ValueError) as failed:
                raise _unfetched(param, f"{type(failed).__name__}.") from None
    raise _unfetched(param, f"more than {MAX_REDIRECTS} redirects.")


async def _parsed(param: str, parse: Callable, *args):
    """``parse(*args)`` off the event loop (pypdf and PDFium take a while on a long PDF); its refusal OpenAI's 400."""
    try:
        return await asyncio.to_thread(parse, *args)
    except Failed as failed:
        raise errors.InvalidRequest(failed.message, param=param, code=failed.code) from None


async def _read(content: bytes, param: str) -> str:
    """A file's text; a PDF's may be empty (a scan without a text layer, or with more such pages than OCR reads in a
    request: ``_file_parts`` decides)."""
    return await _parsed(param, read_text, content, True, MAX_PAGES)


async def _pages(content: bytes, detail: str, param: str) -> tuple[str, ...]:
    """A PDF's pages as PNG ``data:`` URLs, for a vision model (none for another file)."""
    if not content.startswith(PDF_MAGIC):
        return ()
    images = await _parsed(param, page_images, content, PAGE_PIXELS[detail], MAX_PAGES)
    return tuple(f"data:image/png;base64,{base64.b64encode(image).decode('ascii')}" for image in images)


async def _kept(kept: tuple | None, make: Callable[[], Awaitable[Kept]]) -> Kept:
    """``make()``, or what it made for ``kept`` before (None: not kept)."""
    if kept is not None and (value := _texts.get(kept)) is not None:
        return value
    value = await make()
    if kept is not None:
        _texts.put(kept, value)
    return value


async def _file_parts(key: KeyContext, file: dict, param: str, vision: bool) -> list[dict]:
    """A file part as the model gets it: its text, and for a vision model a PDF's pages after it."""
    name, detail, content = file.get("filename"), file.get("detail") or "auto", None
    if file.get("file_id") is not None:
        file_id, where = file["file_id"], f"{param}.file_id"
        stored_name = await _filename(key, file_id, where)  # looked up each time: a deleted file is gone
        name, kept = name or stored_name, (key.tenant_id, file_id)
    else:
        if file.get("file_data") is not None:
            content = _decoded(file["file_data"], f"{param}.file_data")
        else:
            content = await _fetched(file["file_url"], f"{param}.file_url")
            name = name or file["file_url"].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        # a document's text kept by its digest; UTF-8 text is not: it decodes about as fast as it hashes
        kept = (key.tenant_id, f"sha256:{hashlib.sha256(content).hexdigest()}") if content.startswith(PARSED) else None

    async def read() -> bytes:  # a stored file's content, read once and only if nothing of it is kept
        nonlocal content
        if content is None:
            content = await _content_of(key, file_id, where)
        return content

    async def text() -> str:
        return await _read(await read(), param)

    async def pages() -> tuple[str, ...]:
        return await _pages(await read(), detail, param)

    body = await _kept(kept, text)
    images = await _kept(kept and (*kept, "pages", detail), pages) if vision else ()
    if not body.strip() and not images:  # only a PDF's text may be empty
        raise errors.InvalidRequest("The PDF has no text to read (a scan without a text layer?).", param=param,
                                    code="invalid_file")  # fmt: skip
    shown = " ".join((name or "file").replace('"', "'").split())  # one line, its quotes its own
    return [{"type": "text", "text": f'<file name="{shown}">\n{body.strip()}\n</file>'},
            *({"type": "image_url", "image_url": {"url": url, "detail": detail}} for url in images)]  # fmt: skip


async def _image_part(key: KeyContext, file_id: str, detail: str | None, param: str) -> list[dict]:
    content = await _content_of(key, file_id, f"{param}.file_id")
    kind = _image_type(content)
    if kind is None:
        raise errors.InvalidRequest(f"The file '{errors.shown(file_id)}' is not an image (PNG, JPEG, GIF or WebP).",
                                    param=f"{param}.file_id", code="invalid_image_format")  # fmt: skip
    url = f"data:{kind};base64,{base64.b64encode(content).decode('ascii')}"
    return [{"type": "image_url", "image_url": {"url": url, "detail": detail or "auto"}}]


def without_files(body: dict) -> dict:
    """A chat request as it is once its files are read, but each document's text empty (an image is bounded the
    same before it is read): a bound from below of its need, known before a file is read."""
    messages = body.get("messages") or []
    empty = {key: [{"type": "text", "text": ""}] for _, _, key, _ in _parts(messages) if key[0] == "file"}
    return {**body, "messages": apply(messages, empty)}


async def load(key: KeyContext, messages: list[dict], where: Where,
               admit: Callable[[], Awaitable[None]] | None = None, vision: bool = False) -> Resolved:  # fmt: skip
    """Each file of ``messages`` (chat's, possibly from a Responses request) read once: its key -> its parts.
    ``admit``: awaited before the first file is read (the limits' early refusal: a refused key makes no read);
    ``vision``: the model reads images (a PDF's pages are given too)."""
    resolved: Resolved = {}
    for i, j, part_key, part in _parts(messages):
        if part_key in resolved:
            continue
        if admit is not None:
            await admit()
            admit = None
        if part_key[0] == "image":
            image = part["image_url"]
            resolved[part_key] = await _image_part(key, image["file_id"], image.get("detail"), where(i, j, part_key))
        else:
            resolved[part_key] = await _file_parts(key, part["file"], where(i, j, part_key), vision)
    return resolved


def _content(parts: list, resolved: Resolved) -> str | list:
    out = [q for p in parts for q in (resolved.get(key_of(p), [p]) if isinstance(p, dict) else [p])]
    if all(isinstance(p, dict) and p.get("type") == "text" for p in out):  # text alone: one string, a line apart
        return "\n".join(p["text"] for p in out)
    return out


def apply(messages: list[dict], resolved: Resolved) -> list[dict]:
    """``messages`` with their files as ``load`` read them (a message without one is the same object)."""
    if not resolved:
        return messages
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and key_of(p) in resolved for p in content):
            message = {**message, "content": _content(content, resolved)}
        out.append(message)
    return out


async def inline(key: KeyContext, body: dict, admit: Admit | None = None, vision: bool = False) -> dict:
    """A chat completions request with its files read (``body`` itself when it names none: one pass over its parts);
    ``admit``: given the request without its files before one is read; ``vision``: as ``load``'s."""
    messages = body.get("messages")
    before = None if admit is None else (lambda: admit(without_files(body)))  # built only for a request with a file
    resolved = await load(key, messages, lambda i, j, _: f"messages[{i}].content[{j}]", before, vision)
    return {**body, "messages": apply(messages, resolved)} if resolved else body
