"""The speech routes' multipart reader (``hub/api/form.py``): what OpenAI's SDK sends parses into fields and one
file; everything else is refused with the OpenAI error the edge answers."""

from __future__ import annotations

import httpx
import pytest

from hub.api import errors, form


def _encode(data: dict | None = None, files: dict | None = None) -> tuple[bytes, str]:
    """A body and Content-Type as httpx (and so OpenAI's SDK) writes them."""
    request = httpx.Request("POST", "http://hub/v1/audio/transcriptions", data=data or {}, files=files or {})
    return request.read(), request.headers["content-type"]


def test_fields_repeated_fields_and_the_file():
    body, kind = _encode(
        {"model": "whisper-base", "timestamp_granularities[]": ["segment", "word"], "prompt": "Grüße"},
        {"file": ("talk.mp3", b"\xff\xfb" + bytes(range(256)) * 3, "audio/mpeg")},
    )
    parsed = form.read_form(body, kind, max_file_bytes=1024)
    assert parsed.fields == {"model": "whisper-base", "timestamp_granularities[]": ["segment", "word"],
                             "prompt": "Grüße"}  # fmt: skip
    assert parsed.file == form.Upload("talk.mp3", "audio/mpeg", b"\xff\xfb" + bytes(range(256)) * 3)


def test_a_form_without_a_file_parses_to_its_fields():
    body, kind = _encode({"model": "m"}, {"note": (None, "text")})
    parsed = form.read_form(body, kind, max_file_bytes=10)
    assert parsed.fields == {"model": "m", "note": "text"} and parsed.file is None


def _refusal(body: bytes, kind: str | None, max_file_bytes: int = 1024) -> errors.ApiError:
    with pytest.raises(errors.ApiError) as refused:
        form.read_form(body, kind, max_file_bytes)
    return refused.value


def test_refusals():
    body, kind = _encode({"model": "m"}, {"file": ("a.wav", b"x" * 11)})
    too_large = _refusal(body, kind, max_file_bytes=10)
    assert (too_large.status, too_large.code, too_large.param) == (413, "file_too_large", "file")
    assert form.read_form(body, kind, max_file_bytes=11).file.data == b"x" * 11  # the limit itself is allowed

    assert _refusal(b'{"model": "m"}', "application/json").status == 415
    assert _refusal(body, None).status == 415
    assert "boundary" in _refusal(body, "multipart/form-data").message
    assert "closing boundary" in _refusal(body[: len(body) // 2], kind).message  # cut short
    two, two_kind = _encode({}, {"file": ("a.wav", b"1"), "other": ("b.wav", b"2")})
    assert _refusal(two, two_kind).param == "other"
    latin, latin_kind = _encode({}, {"file": ("a.wav", b"1")})
    latin = latin.replace(b'name="file"', b'name="prompt"').replace(b'; filename="a.wav"', b"")
    latin = latin.replace(b"\r\n\r\n1\r\n", b"\r\n\r\n\xff\xfe\r\n")
    assert "UTF-8" in _refusal(latin, latin_kind).message
    one_file = {"file": ("a.wav", b"1")}
    many, many_kind = _encode({f"f{i}": "1" for i in range(form.MAX_FIELDS)}, one_file)
    assert "fields" in _refusal(many, many_kind).message
    long, long_kind = _encode({"prompt": "x" * (form.MAX_FIELD_BYTES + 1)}, one_file)
    assert "longer than" in _refusal(long, long_kind).message
    bare = b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    assert "Content-Disposition" in _refusal(bare, "multipart/form-data; boundary=b").message
