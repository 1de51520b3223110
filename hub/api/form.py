"""The multipart/form-data body of the upload routes (the speech routes ``/audio/transcriptions`` and
``/audio/translations``, ``POST /files`` and ``POST /uploads/{id}/parts``), read once at the edge as ``body.py``
reads JSON: the text fields (OpenAI's SDK sends ``model``, ``stream``, ``response_format`` and the rest as fields; a
repeated field such as ``timestamp_granularities[]`` becomes a list) and the one uploaded file, kept as bytes (sent
on to the deployment, or stored).

Refusals, each an OpenAI error: another Content-Type (415), a form that does not parse (400), a file over the
route's limit (``Kind``: ``HUB_MAX_AUDIO_BYTES`` or ``HUB_MAX_FILE_BYTES``; 413 ``file_too_large``), more than one
file or more than ``MAX_FIELDS`` fields (400). The parsing itself is python-multipart's (the library Starlette's forms
use).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

from hub.api import errors
from hub.api.body import media_type

MAX_FIELDS = 32
MAX_FIELD_BYTES = 64 * 1024  # a prompt is the longest text field
FORM_OVERHEAD = MAX_FIELDS * 1024 + MAX_FIELD_BYTES  # what the body may hold beyond the file: fields, part headers


@dataclass(frozen=True)
class Kind:
    """What a route uploads: how the refusals name it and the setting that caps it."""

    what: str  # "audio file"
    setting: str  # "HUB_MAX_AUDIO_BYTES"
    fields: str  # the form's other required field, for the 415's hint
    field: str = "file"  # the file's field

    @property
    def limit(self) -> int:
        return getattr(settings, self.setting)


AUDIO = Kind("audio file", "HUB_MAX_AUDIO_BYTES", "a 'model' field")
FILE = Kind("file", "HUB_MAX_FILE_BYTES", "a 'purpose' field")
PART = Kind("upload part", "HUB_MAX_UPLOAD_PART_BYTES", "no other field", field="data")  # POST /uploads/{id}/parts


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    fields: dict[str, str | list[str]] = field(default_factory=dict)
    file: Upload | None = None


def too_large(limit: int, kind: Kind = AUDIO) -> errors.PayloadTooLarge:
    """413 for an upload whose file is over ``limit`` bytes (or whose body is over it and the form's overhead)."""
    return errors.PayloadTooLarge(
        f"The {kind.what} is larger than {limit:,} bytes ({kind.setting}).", param="file", code="file_too_large"
    )


def _refuse(message: str, param: str | None = None) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param)


def read_form(body: bytes, content_type: str | None, max_file_bytes: int, kind: Kind = AUDIO) -> Form:
    """The form in ``body``, or the ``errors.ApiError`` that refuses it."""
    if media_type(content_type) != "multipart/form-data":
        raise errors.UnsupportedMediaType(
            f"Unsupported Content-Type '{errors.shown(media_type(content_type) or 'none')}'. Send the "
            f"{kind.what.removesuffix(' file')} as multipart/form-data (a '{kind.field}' field and {kind.fields}), as "
            "OpenAI's SDK does."
        )
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise _refuse("The multipart/form-data Content-Type names no boundary.")
    form, parts = Form(), _Parts(max_file_bytes, kind)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise _refuse(f"The multipart form could not be read ({exc}).") from None
    if not parts.ended:
        raise _refuse("The multipart form ends before its closing boundary.")
    for name, value, filename, media in parts.done:
        if filename is not None:
            if form.file is not None:
                raise _refuse("Send one file per request.", param=name)
            if name != kind.field:
                raise _refuse(
                    f"Unexpected file field '{errors.shown(name)}': send the {kind.what} as '{kind.field}'.", param=name
                )
            form.file = Upload(filename, media, value)
            continue
        try:
            text = value.decode()
        except UnicodeDecodeError:
            raise _refuse(f"The form field '{errors.shown(name)}' is not UTF-8 text.", param=name) from None
        if name in form.fields:
            previous = form.fields[name]
            form.fields[name] = [*previous, text] if isinstance(previous, list) else [previous, text]
        else:
            form.fields[name] = text
    return form


class _Parts:
    """python-multipart's callbacks, collecting each part as (name, bytes, filename or None, content type)."""

    def __init__(self, max_file_bytes: int, kind: Kind):
        self.max_file_bytes, self.kind = max_file_bytes, kind
        self.done: list[tuple[str, bytes, str | None, str]] = []
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._field = self._value = b""
        self._data = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin, "on_part_data": self._part_data, "on_part_end": self._part_end,
            "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_end": self._end,
        }  # fmt: skip

    def _begin(self) -> None:
        if len(self.done) >= MAX_FIELDS:
            raise _refuse(f"The form has more than {MAX_FIELDS} fields.")
        self._headers, self._data = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field = self._value = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        filename = b"filename" in parse_options_header(self._headers.get(b"content-disposition"))[1]
        limit = self.max_file_bytes if filename else MAX_FIELD_BYTES
        if len(self._data) > limit:
            if filename:
                raise too_large(limit, self.kind)
            raise _refuse(f"A form field is longer than {MAX_FIELD_BYTES:,} bytes.")

    def _part_end(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise _refuse("A part of the multipart form has no 'Content-Disposition: form-data; name=...' header.")
        name = options[b"name"].decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        kind = self._headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
        self.done.append((name, bytes(self._data), filename, kind))

    def _end(self) -> None:
        self.ended = True
