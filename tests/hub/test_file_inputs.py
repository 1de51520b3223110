"""Files in a model's input (``hub/api/file_inputs.py``): a chat request's ``file`` parts and an image by
``file_id`` read from the tenant's files, from base64 and from a URL (against a real server on loopback), shown to
the model as their text; the same file read once; other tenants' files, bad base64, binary files, scans, private
addresses, redirect loops refused as OpenAI's errors naming the part."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from accounts import files
from accounts.authn import KeyContext
from hub.api import errors, file_inputs
from hub.api.ratelimit import estimate
from hub.api.responses_relay import native_parts
from hub.api.upstream import ModelInfo
from tests.support.documents import NOTES, PAGES, document_server
from tests.support.images import photo
from tests.support.office import legacy_workbook, slide_deck, word_document, workbook
from tests.support.pdfs import mixed_pdf, printed_scan, scan_pdf, text_pdf

pytestmark = pytest.mark.django_db(transaction=True)  # the resolver reads on the pool's threads

PDF_TEXT = "\n\n".join(PAGES)


def key_of(tenant) -> KeyContext:
    return KeyContext(1, "sk-hub-abcdefgh", tenant.pk, tenant.slug, frozenset({"chat-small"}))


def stored(tenant, content: bytes, filename: str = "notes.pdf") -> str:
    return files.create(tenant_id=tenant.pk, api_key_id=None, purpose="user_data", filename=filename,
                        content=content).pk  # fmt: skip


def chat(*parts: dict) -> dict:
    return {"model": "chat-small", "messages": [{"role": "user", "content": [{"type": "text", "text": "Read:"},
                                                                             *parts]}]}  # fmt: skip


def inline(tenant, body: dict) -> dict:
    return asyncio.run(file_inputs.inline(key_of(tenant), body))


def seen(tenant, body: dict) -> dict:
    """``body`` as a vision model gets it."""
    return asyncio.run(file_inputs.inline(key_of(tenant), body, vision=True))


def refused(tenant, body: dict, vision: bool = False) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as caught:
        seen(tenant, body) if vision else inline(tenant, body)
    return caught.value


def picture(part: dict) -> np.ndarray:
    """An image part's PNG data: URL as its grey pixels (height, width)."""
    head, _, data = part["image_url"]["url"].partition(",")
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"))


def shown(name: str, text: str) -> str:
    return f'<file name="{name}">\n{text}\n</file>'


def test_a_stored_pdf_becomes_its_text_beside_the_messages_text(acme):
    file_id = stored(acme.tenant, text_pdf(PAGES))
    body = chat({"type": "file", "file": {"file_id": file_id}})
    out = inline(acme.tenant, body)
    assert out["messages"] == [{"role": "user", "content": "Read:\n" + shown("notes.pdf", PDF_TEXT)}]
    assert body["messages"][0]["content"][1]["type"] == "file"  # what is stored keeps the part as sent
    renamed = inline(acme.tenant, chat({"type": "file", "file": {"file_id": file_id, "filename": "plan.pdf"}}))
    assert renamed["messages"][0]["content"].endswith(shown("plan.pdf", PDF_TEXT))


def test_office_documents_and_web_pages_become_their_text(acme):  # Word, PowerPoint, Excel (.xlsx, .xls), HTML
    document = stored(acme.tenant, word_document(["Quarterly report."], [["Region", "Sales"], ["North", "12"]]),
                      "report.docx")  # fmt: skip
    deck = stored(acme.tenant, slide_deck([("Launch", "The rover is called Pebble.")]), "launch.pptx")
    sheet = stored(acme.tenant, workbook({"Q1": [["Region", "Sales"], ["North", 12]]}), "sales.xlsx")
    old = stored(acme.tenant, legacy_workbook({"Q2": [["South", 7.5]]}), "sales.xls")
    page = stored(acme.tenant, b"<html><body><h1>News</h1><p>Rates &amp; fees fell.</p></body></html>", "news.html")
    ids = (document, deck, sheet, old, page)
    out = inline(acme.tenant, chat(*({"type": "file", "file": {"file_id": i}} for i in ids)))
    assert out["messages"][0]["content"] == "\n".join([
        "Read:", shown("report.docx", "Quarterly report.\nRegion | Sales\nNorth | 12"),
        shown("launch.pptx", "Launch\nThe rover is called Pebble."),
        shown("sales.xlsx", "Sheet: Q1\nRegion | Sales\nNorth | 12"), shown("sales.xls", "Sheet: Q2\nSouth | 7.5"),
        shown("news.html", "News\n\nRates & fees fell.")])  # fmt: skip


def test_file_data_as_a_data_url_or_bare_base64(acme):
    encoded = base64.b64encode(NOTES.encode()).decode()
    for data in (f"data:text/plain;base64,{encoded}", encoded):
        out = inline(acme.tenant, chat({"type": "file", "file": {"filename": "notes.txt", "file_data": data}}))
        assert out["messages"][0]["content"] == "Read:\n" + shown("notes.txt", NOTES)


def test_a_request_without_files_is_left_as_it_is(acme):
    body = {"model": "chat-small", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    assert inline(acme.tenant, body) is body


def test_the_same_file_twice_is_read_once_and_shown_twice(acme, monkeypatch):
    file_id = stored(acme.tenant, NOTES.encode(), "notes.txt")
    reads = []
    original = files.content
    monkeypatch.setattr(files, "content", lambda *args: reads.append(args) or original(*args))
    part = {"type": "file", "file": {"file_id": file_id}}
    again = [part, {"type": "text", "text": "Again"}]
    body = {"model": "chat-small", "messages": [{"role": "user", "content": [part]},
                                                {"role": "assistant", "content": "Read."},
                                                {"role": "user", "content": again}]}  # fmt: skip
    out = inline(acme.tenant, body)
    assert len(reads) == 1
    assert out["messages"][0]["content"] == shown("notes.txt", NOTES)
    assert out["messages"][2]["content"] == shown("notes.txt", NOTES) + "\nAgain"


def test_a_stored_files_text_is_read_once_per_process_and_a_deleted_file_is_gone(acme, monkeypatch):
    file_id = stored(acme.tenant, text_pdf(PAGES))
    reads = []
    original = files.content
    monkeypatch.setattr(files, "content", lambda *args: reads.append(args) or original(*args))
    body = chat({"type": "file", "file": {"file_id": file_id}})
    first, second = inline(acme.tenant, body), inline(acme.tenant, body)
    assert first == second and len(reads) == 1  # the second request parsed nothing
    files.delete(acme.tenant.pk, file_id)
    assert refused(acme.tenant, body).message == f"No such File object: {file_id}"


def test_a_document_sent_as_bytes_is_parsed_once_per_tenant(acme, globex, monkeypatch, settings):
    """``file_data`` resent with every turn, or a ``file_url`` fetched again: a document's text is kept by its
    digest, per tenant (no tenant can time another's); UTF-8 text is read again (as fast as hashing it)."""
    settings.HUB_FILE_URL_ALLOW_PRIVATE_URLS = True
    parsed = []
    original = file_inputs.read_text
    monkeypatch.setattr(file_inputs, "read_text", lambda content, *args: parsed.append(content[:5]) or
                        original(content, *args))  # fmt: skip
    monkeypatch.setattr(file_inputs, "_texts", file_inputs._Texts())
    pdf = text_pdf(PAGES)
    as_data = chat({"type": "file", "file": {"filename": "notes.pdf", "file_data": base64.b64encode(pdf).decode()}})
    first, second = inline(acme.tenant, as_data), inline(acme.tenant, as_data)
    assert first == second and first["messages"][0]["content"].endswith(shown("notes.pdf", PDF_TEXT))
    assert parsed == [b"%PDF-"]
    assert inline(globex.tenant, as_data) == first and parsed == [b"%PDF-"] * 2  # another tenant: parsed again
    text = chat({"type": "file", "file": {"filename": "notes.txt", "file_data": base64.b64encode(b"Hi").decode()}})
    inline(acme.tenant, text), inline(acme.tenant, text)
    assert parsed[2:] == [b"Hi", b"Hi"]
    with document_server() as server:
        by_url = chat(file_url(f"{server.url}/notes.pdf"))
        assert inline(acme.tenant, by_url) == inline(acme.tenant, by_url)
        assert server.requests == ["/notes.pdf"] * 2 and len(parsed) == 4  # fetched each time, the same bytes kept


@pytest.mark.parametrize("detail", [None, "low", "auto", "high"])
def test_a_vision_model_gets_a_pdfs_text_then_its_pages_as_images_at_the_files_detail(acme, detail):
    file_id = stored(acme.tenant, text_pdf(PAGES))
    file = {"file_id": file_id, **({"detail": detail} if detail else {})}
    content = seen(acme.tenant, chat({"type": "file", "file": file}))["messages"][0]["content"]
    assert content[:2] == [{"type": "text", "text": "Read:"}, {"type": "text", "text": shown("notes.pdf", PDF_TEXT)}]
    pages = content[2:]
    assert [page["image_url"]["detail"] for page in pages] == [detail or "auto"] * len(PAGES)
    longest = file_inputs.PAGE_PIXELS[detail or "auto"]
    pixels = [picture(page) for page in pages]
    assert all(p.shape[0] == longest and abs(p.shape[1] - 612 * longest / 792) < 1 for p in pixels)  # US Letter
    inked = [np.argwhere(p < 128) for p in pixels]  # each page's line of text, near its top left (72 pt in, 80 down)
    assert all(len(ink) and ink.min(axis=0).tolist() > [0.08 * longest, 0.08 * longest] for ink in inked)
    assert all(ink.max(axis=0)[0] < 0.15 * longest for ink in inked)
    assert inked[0].tolist() != inked[1].tolist()  # two texts, two pictures
    assert inline(acme.tenant, chat({"type": "file", "file": file}))["messages"][0]["content"] == (
        "Read:\n" + shown("notes.pdf", PDF_TEXT))  # a text model: the text alone  # fmt: skip


def test_a_scan_is_a_text_models_400_and_a_vision_models_pages(acme):
    file_id = stored(acme.tenant, scan_pdf(2), "scan.pdf")
    body = chat({"type": "file", "file": {"file_id": file_id}})
    error = refused(acme.tenant, body)
    assert (error.code, error.param) == ("invalid_file", "messages[0].content[1]")
    assert "scan" in error.message
    content = seen(acme.tenant, body)["messages"][0]["content"]
    assert content[1] == {"type": "text", "text": '<file name="scan.pdf">\n\n</file>'}
    bands = [np.argwhere(picture(page) < 128)[:, 0] for page in content[2:]]  # the rows of each page's dark band
    scale = 1024 / 792
    assert [(b.min(), b.max()) for b in bands] == [(round(100 * scale), round(160 * scale) - 1),
                                                   (round(300 * scale), round(360 * scale) - 1)]  # fmt: skip
    assert refused(acme.tenant, body).code == "invalid_file"  # its empty text kept: still a text model's 400


def test_a_scans_printed_text_is_read_by_ocr_for_a_text_model(acme):
    file_id = stored(acme.tenant, mixed_pdf([printed_scan(["Invoice 4471 was paid in full."])]), "invoice.pdf")
    out = inline(acme.tenant, chat({"type": "file", "file": {"file_id": file_id}}))
    assert out["messages"][0]["content"] == "Read:\n" + shown("invoice.pdf", "Invoice 4471 was paid in full.")


def test_a_pdfs_pages_are_rendered_once_per_detail_and_a_long_pdf_is_refused(acme, monkeypatch):
    rendered = []
    original = file_inputs.page_images
    monkeypatch.setattr(file_inputs, "page_images", lambda content, longest, most: rendered.append(longest) or
                        original(content, longest, most))  # fmt: skip
    monkeypatch.setattr(file_inputs, "_texts", file_inputs._Texts())
    data = base64.b64encode(text_pdf(PAGES)).decode()
    body = chat({"type": "file", "file": {"filename": "notes.pdf", "file_data": data}})
    assert seen(acme.tenant, body) == seen(acme.tenant, body) and rendered == [1024]
    low = chat({"type": "file", "file": {"filename": "notes.pdf", "file_data": data, "detail": "low"}})
    assert seen(acme.tenant, low) == seen(acme.tenant, low) and rendered == [1024, 512]
    inline(acme.tenant, body)  # a text model renders nothing
    assert rendered == [1024, 512]
    monkeypatch.setattr(file_inputs, "MAX_PAGES", len(PAGES) - 1)
    other = chat({"type": "file", "file": {"filename": "long.pdf", "file_data": base64.b64encode(
        text_pdf([*PAGES, "A third page."])).decode()}})  # fmt: skip
    error = refused(acme.tenant, other, vision=True)
    assert (error.code, error.param) == ("file_too_large", "messages[0].content[1]")
    most = len(PAGES) - 1
    assert error.message == (
        f"The PDF has 3 pages; a vision model is given the pages of a PDF of up to {most} as images."
    )


def test_the_texts_kept_stay_within_their_bound_the_oldest_going_first():
    texts = file_inputs._Texts(limit=100)
    texts.put((1, "a"), "x" * 20)
    texts.put((1, "b"), "y" * 20)
    texts.put((1, "huge"), "z" * 26)  # over a quarter of the bound: not kept
    assert texts.get((1, "huge")) is None and texts.get((1, "a")) == "x" * 20  # a: now the latest used
    for name in "cdef":  # 120 characters with a and b: one of 20 must go
        texts.put((1, name), name * 20)
    assert texts.size == 100 and texts.get((1, "b")) is None  # b went first
    assert all(texts.get((1, n)) is not None for n in "acdef")
    assert texts.get((2, "a")) is None  # another tenant's id is another file


def test_the_limits_are_asked_once_before_a_file_is_read_with_a_bound_from_below(acme, settings):
    """``admit`` (the gateway's early check of the limits) sees the request with each document's text empty, before
    any read: what it refuses is fetched by no one; a request without files never asks."""
    settings.HUB_FILE_URL_ALLOW_PRIVATE_URLS = True
    info = ModelInfo("chat-small", "chat", max_sequence_length=8192, max_output_length=64, hidden_size=0, enabled=True)
    asked: list[dict] = []

    async def admit(body: dict) -> None:
        asked.append(body)

    async def refuse(body: dict) -> None:
        raise errors.RateLimited("Rate limit reached.", kind="requests")

    with document_server() as server:
        url = f"{server.url}/notes.txt"
        parts = [{"type": "text", "text": "One"}, file_url(url), {"type": "text", "text": "Two"}, file_url(url),
                 {"type": "text", "text": "Three"}]  # fmt: skip
        body = {"model": "chat-small", "max_tokens": 8, "messages": [{"role": "user", "content": parts}]}
        with pytest.raises(errors.RateLimited):
            asyncio.run(file_inputs.inline(key_of(acme.tenant), body, refuse))
        assert server.requests == []  # refused before the fetch
        out = asyncio.run(file_inputs.inline(key_of(acme.tenant), body, admit))
        assert len(asked) == 1 and server.requests == ["/notes.txt"]
    [without] = asked
    assert without["messages"][0]["content"] == "One\n\nTwo\n\nThree"  # each file's text empty, as read
    assert estimate("chat/completions", without, info).total < estimate("chat/completions", out, info).total
    empty = {"type": "file", "file": {"filename": "a.txt", "file_data": base64.b64encode(b"a").decode()}}
    short = {**body, "messages": [{"role": "user", "content": [{"type": "text", "text": "A"}, empty] * 4}]}
    read, lower = inline(acme.tenant, short), file_inputs.without_files(short)
    assert estimate("chat/completions", lower, info).total <= estimate("chat/completions", read, info).total
    plain = {"model": "chat-small", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    assert asyncio.run(file_inputs.inline(key_of(acme.tenant), plain, admit)) is plain and len(asked) == 1


def test_an_image_by_file_id_becomes_a_data_url_and_stays_a_part(acme):
    picture = photo(fmt="PNG")
    file_id = stored(acme.tenant, picture, "photo.png")
    body = chat({"type": "image_url", "image_url": {"file_id": file_id, "detail": "low"}})
    [message] = inline(acme.tenant, body)["messages"]
    url = f"data:image/png;base64,{base64.b64encode(picture).decode()}"
    assert message["content"] == [{"type": "text", "text": "Read:"},
                                  {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]  # fmt: skip
    text_file = stored(acme.tenant, NOTES.encode(), "notes.txt")
    error = refused(acme.tenant, chat({"type": "image_url", "image_url": {"file_id": text_file}}))
    assert error.code == "invalid_image_format" and error.param == "messages[0].content[1].file_id"


def test_another_tenants_file_is_no_file(acme, globex):
    file_id = stored(globex.tenant, NOTES.encode(), "notes.txt")
    for missing in (file_id, "file-" + "0" * 24, "nope"):
        error = refused(acme.tenant, chat({"type": "file", "file": {"file_id": missing}}))
        assert error.status == 400 and error.param == "messages[0].content[1].file_id"
        assert error.message == f"No such File object: {missing}"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (photo(), "unsupported_file"),  # an image is not a document
        (b"\x00\x01text", "unsupported_file"),
        (b"   \n", "invalid_file"),
        (text_pdf([""]), "invalid_file"),  # a scan: no text layer
        (b"%PDF-1.4 garbage", "invalid_file"),
    ],
)
def test_what_is_not_a_document_is_refused(acme, content, code):
    file_id = stored(acme.tenant, content)
    error = refused(acme.tenant, chat({"type": "file", "file": {"file_id": file_id}}))
    assert (error.status, error.code, error.param) == (400, code, "messages[0].content[1]")


def test_bad_base64_is_refused(acme):
    for data in ("not base64!", "data:text/plain,plain", "data:text/plain;base64,@@"):
        error = refused(acme.tenant, chat({"type": "file", "file": {"file_data": data}}))
        assert error.code == "invalid_value" and error.param == "messages[0].content[1].file_data"


def file_url(url: str) -> dict:
    """A chat part as the Responses API's ``input_file`` with a ``file_url`` becomes (``responses_chat.py``)."""
    return {"type": "file", "file": {"file_url": url}}


def test_a_file_url_is_fetched_redirects_followed_loops_refused(acme, settings):
    settings.HUB_FILE_URL_ALLOW_PRIVATE_URLS = True
    with document_server() as server:
        out = inline(acme.tenant, chat(file_url(f"{server.url}/notes.pdf")))
        assert out["messages"][0]["content"] == "Read:\n" + shown("notes.pdf", PDF_TEXT)
        out = inline(acme.tenant, chat(file_url(f"{server.url}/moved")))
        assert out["messages"][0]["content"] == "Read:\n" + shown("moved", NOTES)
        for path, says in (("/loop", "more than 3 redirects"), ("/gone", "answered 404")):
            error = refused(acme.tenant, chat(file_url(server.url + path)))
            assert says in error.message and error.param == "messages[0].content[1].file_url"
        assert server.requests.count("/loop") == 4


def test_a_file_url_on_a_private_address_is_refused_unless_allowed(acme, settings):
    settings.HUB_FILE_URL_ALLOW_PRIVATE_URLS = False
    with document_server() as server:
        for url in (f"{server.url}/notes.txt", f"http://localhost:{server.server_address[1]}/notes.txt"):
            error = refused(acme.tenant, chat(file_url(url)))
            assert "HUB_FILE_URL_ALLOW_PRIVATE_URLS" in error.message and error.status == 400
        assert server.requests == []  # refused before connecting
        settings.HUB_FILE_URL_ALLOW_PRIVATE_URLS = True
        assert inline(acme.tenant, chat(file_url(f"{server.url}/notes.txt")))["messages"][0]["content"].endswith(
            shown("notes.txt", NOTES)
        )


def test_a_file_larger_than_the_setting_is_refused(acme, settings):
    settings.HUB_MAX_FILE_BYTES, settings.HUB_FILE_URL_ALLOW_PRIVATE_URLS = 16, True
    data = base64.b64encode(NOTES.encode()).decode()
    error = refused(acme.tenant, chat({"type": "file", "file": {"file_data": data}}))
    assert error.code == "file_too_large"
    with document_server() as server:
        assert refused(acme.tenant, chat(file_url(f"{server.url}/notes.txt"))).code == "file_too_large"


def test_an_external_deployment_gets_the_files_text_as_input_text_and_a_pdfs_pages_as_images():
    text = {"type": "text", "text": shown("a.txt", "A")}
    picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}}
    page = {"type": "image_url", "image_url": {"url": "data:image/png;base64,BB", "detail": "high"}}
    resolved = {("file", "file-1", None, None, None, None): [text], ("image", "file-2", "low"): [picture],
                ("file", "file-4", None, None, None, "high"): [text, page]}  # fmt: skip
    assert native_parts({"type": "input_file", "file_id": "file-1"}, resolved) == [{"type": "input_text",
                                                                                    "text": text["text"]}]  # fmt: skip
    image = {"type": "input_image", "image_url": None, "file_id": "file-2", "detail": "low"}
    assert native_parts(image, resolved) == [{"type": "input_image", "image_url": "data:image/png;base64,AA",
                                              "detail": "low"}]  # fmt: skip
    assert native_parts({"type": "input_file", "file_id": "file-4", "detail": "high"}, resolved) == [
        {"type": "input_text", "text": text["text"]},
        {"type": "input_image", "image_url": "data:image/png;base64,BB", "detail": "high"}]  # fmt: skip
    for other in ({"type": "input_text", "text": "x"}, {"type": "input_file", "file_id": "file-3"},
                  {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}):  # fmt: skip
        assert native_parts(other, resolved) == [other]
