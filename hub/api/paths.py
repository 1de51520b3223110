"""Which URL paths belong to the public OpenAI-compatible API.

The reference serves the same API under ``/v1``, ``/v2`` and ``/vision``; ``/vision`` lists
only vision models.
"""

from __future__ import annotations

BASE_PATHS = ("v1", "v2", "vision")


def is_api_path(path: str) -> bool:
    head = path.lstrip("/").split("/", 1)[0]
    return head in BASE_PATHS


def base_of(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


# the speech-to-text routes, whose bodies are multipart/form-data uploads rather than JSON (``audio/speech``, text
# to speech, takes JSON)
FORM_ROUTES = ("audio/transcriptions", "audio/translations")


def is_upload_path(path: str) -> bool:
    """``/{base}/`` and one of ``FORM_ROUTES``."""
    parts = path.strip("/").split("/", 1)
    return len(parts) == 2 and parts[1] in FORM_ROUTES


def is_file_upload_path(path: str) -> bool:
    """``/files``, where a file is uploaded (multipart/form-data, as the speech routes take)."""
    return path.strip("/").split("/")[1:] == ["files"]


def is_part_upload_path(path: str) -> bool:
    """``/uploads/{id}/parts``, where a part of an upload is sent (multipart/form-data, its bytes as ``data``)."""
    parts = path.strip("/").split("/")
    return len(parts) == 4 and parts[1] == "uploads" and parts[3] == "parts"
