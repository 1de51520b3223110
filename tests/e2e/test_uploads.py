"""OpenAI's Uploads API on a live hub with the real OpenAI SDK (``client.uploads``, ``upload_file_chunked``): a file
sent in parts becomes a file of the Files API (and a batch's input), each answer checked against OpenAI's ``Upload``
and ``UploadPart`` schemas; the refusals OpenAI makes (sizes, the parts' order and total, md5, a cancelled or expired
upload, another tenant's), each an OpenAI error."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx
import openai
import pytest
from django.utils import timezone

from accounts import services
from accounts.models import Upload, UploadPart
from accounts.tasks import expire_files
from tests.openai_spec import assert_valid
from tests.support.batches import batch_worker, chat_line, jsonl, wait_for
from tests.support.live import FAKE_CHAT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DONE = ("completed", "failed", "expired", "cancelled")


def _post(hub, path: str, key=None, **kwargs) -> httpx.Response:
    secret = (key or hub.everything).secret
    return httpx.post(f"{hub.url}/v1/{path}", headers={"authorization": f"Bearer {secret}"}, timeout=30, **kwargs)


def test_a_file_sent_in_parts_is_a_file_and_a_batchs_input(fake_hub, fake):
    client = fake_hub()
    content = jsonl([chat_line(f"q{i}", FAKE_CHAT, f"question {i}", max_tokens=3) for i in range(7)])
    upload = client.uploads.upload_file_chunked(
        file=content, filename="requests.jsonl", bytes=len(content), mime_type="application/jsonl", purpose="batch",
        part_size=100, md5=hashlib.md5(content).hexdigest(),
    )  # fmt: skip
    assert upload.status == "completed" and upload.file is not None and upload.bytes == len(content)
    assert upload.file.filename == "requests.jsonl" and upload.file.purpose == "batch"
    assert client.files.content(upload.file.id).read() == content
    assert not UploadPart.objects.exists()  # the parts are gone once the file is made
    with batch_worker():
        batch = client.batches.create(input_file_id=upload.file.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        assert wait_for(client, batch.id, DONE).request_counts.completed == 7

    # the raw answers, against OpenAI's schemas
    created = _post(fake_hub, "uploads", json={"filename": "a.txt", "purpose": "user_data", "bytes": 6,
                                               "mime_type": "text/plain"})  # fmt: skip
    assert_valid("Upload", created.json())
    assert created.json()["status"] == "pending" and created.json()["file"] is None
    upload_id = created.json()["id"]
    parts = [_post(fake_hub, f"uploads/{upload_id}/parts", files={"data": ("blob", data)}).json()
             for data in (b"abc", b"def")]  # fmt: skip
    for part in parts:
        assert_valid("UploadPart", part)
    # the order the client names is the file's order
    done = _post(fake_hub, f"uploads/{upload_id}/complete", json={"part_ids": [parts[1]["id"], parts[0]["id"]]})
    assert_valid("Upload", done.json())
    assert client.files.content(done.json()["file"]["id"]).read() == b"defabc"


def test_uploads_are_refused_as_openai_refuses_them(fake_hub):
    client = fake_hub()

    def refused(call, param: str, status: int = 400) -> None:
        with pytest.raises(openai.APIStatusError) as caught:
            call()
        assert caught.value.status_code == status and caught.value.body["param"] == param, caught.value.body

    create = dict(filename="x.jsonl", purpose="batch", bytes=6, mime_type="application/jsonl")
    refused(lambda: client.uploads.create(**{**create, "purpose": "nonsense"}), "purpose")
    refused(lambda: client.uploads.create(**{**create, "bytes": 0}), "bytes")
    refused(lambda: client.uploads.create(**{**create, "bytes": 10**12}), "bytes")  # over HUB_MAX_FILE_BYTES
    refused(lambda: client.uploads.create(**{**create, "mime_type": ""}), "mime_type")
    upload = client.uploads.create(**create)
    one = client.uploads.parts.create(upload.id, data=b"abcd")
    refused(lambda: client.uploads.parts.create(upload.id, data=b"efg"), "data")  # 7 bytes > the 6 announced
    refused(lambda: client.uploads.complete(upload.id, part_ids=[one.id]), "part_ids")  # 4 bytes, not 6
    two = client.uploads.parts.create(upload.id, data=b"ef")
    refused(lambda: client.uploads.complete(upload.id, part_ids=[one.id, one.id]), "part_ids")
    refused(lambda: client.uploads.complete(upload.id, part_ids=[one.id, "part_nope"]), "part_ids")
    refused(lambda: client.uploads.complete(upload.id, part_ids=[one.id, "\x00"]), "part_ids")  # no 500 from PostgreSQL
    refused(lambda: client.uploads.complete(upload.id, part_ids=[one.id, two.id], md5="0" * 32), "md5")
    assert client.uploads.complete(upload.id, part_ids=[one.id, two.id]).status == "completed"
    refused(lambda: client.uploads.parts.create(upload.id, data=b"x"), "upload_id")  # completed: no more parts
    refused(lambda: client.uploads.cancel(upload.id), "upload_id")

    cancelled = client.uploads.create(**create)
    assert client.uploads.cancel(cancelled.id).status == "cancelled"
    refused(lambda: client.uploads.parts.create(cancelled.id, data=b"x"), "upload_id")
    refused(lambda: client.uploads.complete("upload_nope", part_ids=["part_x"]), "upload_id", 404)

    # another tenant's upload is not found, exactly like one that never existed
    other = services.create_tenant("other", "Other")
    key = services.issue_key(other, name="k")
    response = _post(fake_hub, f"uploads/{cancelled.id}/cancel", key=key)
    assert response.status_code == 404 and response.json()["error"]["param"] == "upload_id"

    # a part over HUB_MAX_UPLOAD_PART_BYTES is refused at the edge, before it is read whole
    big = client.uploads.create(**{**create, "bytes": 200 * 1024 * 1024})
    response = _post(fake_hub, f"uploads/{big.id}/parts", files={"data": ("blob", b"x" * (64 * 1024 * 1024 + 1))})
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    missing = _post(fake_hub, f"uploads/{big.id}/parts", files={"file": ("blob", b"x")})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"


def test_an_upload_left_pending_expires_after_its_hour(fake_hub):
    client = fake_hub()
    upload = client.uploads.create(filename="x.txt", purpose="user_data", bytes=4, mime_type="text/plain")
    part = client.uploads.parts.create(upload.id, data=b"ab")
    Upload.objects.filter(pk=upload.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.BadRequestError, match="status expired"):
        client.uploads.complete(upload.id, part_ids=[part.id])
    assert expire_files() >= 1  # the beat's task: the upload marked expired, its parts deleted
    assert Upload.objects.get(pk=upload.id).status == "expired" and not UploadPart.objects.exists()
