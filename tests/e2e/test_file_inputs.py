"""Files in a model's input through a live hub to the real models, with the OpenAI SDK: a chat's ``file`` part by
``file_id`` (a PDF uploaded with ``files.create``) and by ``file_data`` (text, a Word document), the Responses API's
``input_file`` by ``file_data`` and ``file_url`` (from a server on loopback) and over ``previous_response_id``, an
``input_image`` by ``file_id`` on a vision model, and a PDF on a vision model (its text and its pages; a scan's pages
alone). Each is read as the same request with the file's text (or the image's data: URL, or the pages' PNGs) written
out: the same prompt tokens, the same greedy answer, the same metered row. What is stored keeps the file as sent;
what is not a document is OpenAI's 400."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from hub.pdfs import page_images
from tests.openai_spec import assert_valid
from tests.support.documents import NOTES, PAGES, document_server
from tests.support.images import photo
from tests.support.live import CHAT, VISION_15, rows
from tests.support.office import word_document
from tests.support.pdfs import scan_pdf, text_pdf

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

QUESTION = "What is the launch code?"
PDF_TEXT = "\n\n".join(PAGES)
GREEDY = {"temperature": 0, "max_tokens": 8}


def shown(name: str, text: str) -> str:
    """A file as the model is shown it (``hub/api/file_inputs.py``)."""
    return f'<file name="{name}">\n{text}\n</file>'


def test_a_chat_reads_an_uploaded_pdf_as_its_text_stores_it_as_sent_and_meters_it(hub):
    client = hub()
    uploaded = client.files.create(file=("notes.pdf", text_pdf(PAGES)), purpose="user_data")
    parts = [{"type": "text", "text": QUESTION}, {"type": "file", "file": {"file_id": uploaded.id}}]
    raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=[{"role": "user", "content": parts}],
                                                           store=True, **GREEDY)  # fmt: skip
    answer = raw.parse()
    written = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": f"{QUESTION}\n{shown('notes.pdf', PDF_TEXT)}"}], **GREEDY
    )
    assert answer.usage.prompt_tokens == written.usage.prompt_tokens
    assert answer.choices[0].message.content == written.choices[0].message.content
    [row] = rows(1, request_id=raw.headers["x-request-id"])
    assert (row.prompt_tokens, row.completion_tokens) == (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    listed = httpx.get(f"{hub.url}/v1/chat/completions/{answer.id}/messages",
                       headers={"Authorization": f"Bearer {hub.everything.secret}"}).json()  # fmt: skip
    # as sent: the question, the file not written out (content_parts holds OpenAI's kinds there, text and images)
    assert listed["data"][0]["content"] == QUESTION and listed["data"][0]["content_parts"] == parts[:1]
    streamed = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": parts}], stream=True,
                                              stream_options={"include_usage": True}, **GREEDY)  # fmt: skip
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == written.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens == written.usage.prompt_tokens


def test_a_chat_reads_file_data_text_and_word_and_refuses_what_is_not_a_document(hub):
    client = hub()
    data = "data:text/plain;base64," + base64.b64encode(NOTES.encode()).decode()
    parts = [{"type": "text", "text": QUESTION}, {"type": "file", "file": {"filename": "notes.txt", "file_data": data}}]
    answer = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": parts}], **GREEDY)
    written = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": f"{QUESTION}\n{shown('notes.txt', NOTES)}"}], **GREEDY
    )
    assert answer.usage.prompt_tokens == written.usage.prompt_tokens
    assert answer.choices[0].message.content == written.choices[0].message.content
    report = word_document(["The launch code is seven seven three."], [["Rover", "Pebble"]])
    docx = [{"type": "text", "text": QUESTION}, {"type": "file", "file": {"filename": "notes.docx", "file_data":
            base64.b64encode(report).decode()}}]  # fmt: skip
    answer = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": docx}], **GREEDY)
    text = "The launch code is seven seven three.\nRover | Pebble"
    written = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": f"{QUESTION}\n{shown('notes.docx', text)}"}], **GREEDY
    )
    assert answer.usage.prompt_tokens == written.usage.prompt_tokens
    assert answer.choices[0].message.content == written.choices[0].message.content
    picture = client.files.create(file=("photo.jpg", photo()), purpose="user_data")
    bad = [({"file_id": picture.id}, "unsupported_file", "messages[0].content[0]"),
           ({"file_id": "file-" + "0" * 24}, None, "messages[0].content[0].file_id"),
           ({"file_data": "not base64!"}, "invalid_value", "messages[0].content[0].file_data"),
           ({"filename": "x.txt"}, "missing_required_parameter", "messages[0].content[0].file")]  # fmt: skip
    for file, code, param in bad:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": [
                {"type": "file", "file": file}]}], **GREEDY)  # fmt: skip
        assert (refused.value.body["code"], refused.value.body["param"]) == (code, param), refused.value.body
        assert_valid("ErrorResponse", refused.value.response.json())


def test_the_responses_api_reads_input_files_by_data_and_url_and_again_when_continued(hub):
    client = hub()
    data = "data:text/plain;base64," + base64.b64encode(NOTES.encode()).decode()
    file = {"type": "input_file", "filename": "notes.txt", "file_data": data}
    answer = client.responses.create(model=CHAT, input=[{"role": "user", "content": [
        {"type": "input_text", "text": QUESTION}, file]}], max_output_tokens=8, temperature=0)  # fmt: skip
    written = client.responses.create(model=CHAT, input=f"{QUESTION}\n{shown('notes.txt', NOTES)}",
                                      max_output_tokens=8, temperature=0)  # fmt: skip
    assert answer.usage.input_tokens == written.usage.input_tokens and answer.output_text == written.output_text
    items = httpx.get(f"{hub.url}/v1/responses/{answer.id}/input_items",
                      headers={"Authorization": f"Bearer {hub.everything.secret}"}).json()  # fmt: skip
    assert_valid("ResponseItemList", items)
    assert items["data"][0]["content"][1] == file  # kept as sent
    again = client.responses.create(model=CHAT, previous_response_id=answer.id, input="And the rover?",
                                    max_output_tokens=4, temperature=0)  # fmt: skip
    assert again.usage.input_tokens > answer.usage.input_tokens + answer.usage.output_tokens
    with document_server() as server:
        by_url = client.responses.create(model=CHAT, input=[{"role": "user", "content": [
            {"type": "input_text", "text": QUESTION},
            {"type": "input_file", "file_url": f"{server.url}/notes.pdf"}]}], max_output_tokens=8,
            temperature=0)  # fmt: skip
        assert server.requests == ["/notes.pdf"]
    pdf = client.responses.create(model=CHAT, input=f"{QUESTION}\n{shown('notes.pdf', PDF_TEXT)}",
                                  max_output_tokens=8, temperature=0)  # fmt: skip
    assert by_url.usage.input_tokens == pdf.usage.input_tokens and by_url.output_text == pdf.output_text
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=CHAT, input=[{"role": "user", "content": [
            {"type": "input_file", "file_id": "file-" + "0" * 24}]}])  # fmt: skip
    assert refused.value.body["param"] == "input[0].content[0].file_id"
    assert refused.value.body["message"] == f"No such File object: file-{'0' * 24}"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=CHAT, input=[{"role": "user", "content": [
            {"type": "input_file", "file_data": data, "file_url": "https://example.com/a.pdf"}]}])  # fmt: skip
    assert refused.value.body["param"] == "input[0].content[0]"


def test_an_input_image_by_file_id_is_the_image_itself(hub):
    client = hub()
    picture = photo()
    uploaded = client.files.create(file=("photo.jpg", picture), purpose="vision")
    url = "data:image/jpeg;base64," + base64.b64encode(picture).decode()
    answers = [
        client.responses.create(model=VISION_15, input=[{"role": "user", "content": [
            {"type": "input_text", "text": "What is in the picture?"}, image]}], max_output_tokens=5,
            temperature=0)  # fmt: skip
        for image in ({"type": "input_image", "file_id": uploaded.id}, {"type": "input_image", "image_url": url})
    ]  # fmt: skip
    assert answers[0].usage.input_tokens == answers[1].usage.input_tokens
    assert answers[0].output_text == answers[1].output_text


def pages(pdf: bytes, longest: int, detail: str) -> list[dict]:
    """A PDF's pages as the Responses API's ``input_image`` parts: PNGs whose longer side is ``longest``."""
    return [{"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(png).decode(),
             "detail": detail} for png in page_images(pdf, longest, 100)]  # fmt: skip


def test_a_vision_model_reads_a_pdfs_text_and_its_pages_and_a_scans_pages_alone(hub):
    client = hub()
    pdf = text_pdf(PAGES)
    file = {"type": "input_file", "filename": "notes.pdf", "file_data": base64.b64encode(pdf).decode(),
            "detail": "low"}  # fmt: skip
    greedy = {"max_output_tokens": 5, "temperature": 0}
    question = {"type": "input_text", "text": QUESTION}
    raw = client.responses.with_raw_response.create(model=VISION_15, input=[{"role": "user", "content": [
        question, file]}], **greedy)  # fmt: skip
    answer = raw.parse()
    text = {"type": "input_text", "text": shown("notes.pdf", PDF_TEXT)}
    written = client.responses.create(model=VISION_15, input=[{"role": "user", "content": [
        question, text, *pages(pdf, 512, "low")]}], **greedy)  # fmt: skip
    assert answer.usage.input_tokens == written.usage.input_tokens and answer.output_text == written.output_text
    text_alone = client.responses.create(model=VISION_15, input=[{"role": "user", "content": [question, text]}],
                                         **greedy)  # fmt: skip
    assert answer.usage.input_tokens > text_alone.usage.input_tokens  # the pages were seen
    [row] = rows(1, request_id=raw.headers["x-request-id"])
    assert row.prompt_tokens == answer.usage.input_tokens
    scan = client.files.create(file=("scan.pdf", scan_pdf()), purpose="user_data")
    ask = {"type": "text", "text": "What does it show?"}
    read = client.chat.completions.create(model=VISION_15, messages=[{"role": "user", "content": [
        ask, {"type": "file", "file": {"file_id": scan.id}}]}], **GREEDY)  # fmt: skip
    seen = [{"type": "image_url", "image_url": {"url": page["image_url"], "detail": "auto"}}
            for page in pages(scan_pdf(), 1024, "auto")]  # fmt: skip
    shown_scan = client.chat.completions.create(model=VISION_15, messages=[{"role": "user", "content": [
        ask, {"type": "text", "text": '<file name="scan.pdf">\n\n</file>'}, *seen]}], **GREEDY)  # fmt: skip
    assert read.usage.prompt_tokens == shown_scan.usage.prompt_tokens
    assert read.choices[0].message.content == shown_scan.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as refused:  # a text model has nothing to read in a scan
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": [
            {"type": "file", "file": {"file_id": scan.id}}]}], **GREEDY)  # fmt: skip
    assert (refused.value.body["code"], refused.value.body["param"]) == ("invalid_file", "messages[0].content[0]")
