"""The OpenAPI component schemas of the Files, Uploads and Batch APIs (``hub/api/files_views.py``,
``hub/api/uploads_views.py``, ``hub/api/batches_views.py``), OpenAI's shapes."""

from __future__ import annotations

from accounts import batches, files
from hub.api.openapi_schemas import _INT, _STR, METADATA, _obj, list_of

_TIME = {"type": ["integer", "null"], "description": "Unix seconds."}
_EXPIRES_AFTER = _obj(
    {"anchor": {"const": "created_at"},
     "seconds": {**_INT, "minimum": files.MIN_EXPIRY_SECONDS, "maximum": files.MAX_EXPIRY_SECONDS}},
    ("anchor", "seconds"),
)  # fmt: skip
_FILE = _obj(
    {
        "id": {**_STR, "description": "`file-...`"}, "object": {"const": "file"}, "bytes": _INT, "created_at": _INT,
        "expires_at": {**_INT, "description": "Unix seconds; absent for a file kept until deleted."}, "filename": _STR,
        "purpose": {"enum": [*files.UPLOAD_PURPOSES, files.BATCH_OUTPUT]},
        "status": {"enum": ["uploaded", "processed", "error"]},
    },
    ("id", "object", "bytes", "created_at", "filename", "purpose", "status"),
)  # fmt: skip
_BATCH_ERROR = _obj({"code": _STR, "message": _STR, "param": {"type": ["string", "null"]},
                     "line": {"type": ["integer", "null"]}})  # fmt: skip
_BATCH = _obj(
    {
        "id": {**_STR, "description": "`batch_...`"}, "object": {"const": "batch"},
        "endpoint": {"enum": list(batches.ENDPOINTS)}, "model": {"type": ["string", "null"]},
        "errors": {"anyOf": [_obj({"object": {"const": "list"}, "data": {"type": "array", "items": _BATCH_ERROR}}),
                             {"type": "null"}]},
        "input_file_id": _STR, "completion_window": {"const": "24h"},
        "status": {"enum": ["validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling",
                            "cancelled"]},
        "output_file_id": {"type": ["string", "null"]}, "error_file_id": {"type": ["string", "null"]},
        "created_at": _INT, "in_progress_at": _TIME, "expires_at": _TIME, "finalizing_at": _TIME,
        "completed_at": _TIME, "failed_at": _TIME, "expired_at": _TIME, "cancelling_at": _TIME, "cancelled_at": _TIME,
        "request_counts": _obj({"total": _INT, "completed": _INT, "failed": _INT}, ("total", "completed", "failed")),
        "usage": _obj(
            {"input_tokens": _INT, "input_tokens_details": _obj({"cached_tokens": _INT}, ("cached_tokens",)),
             "output_tokens": _INT, "output_tokens_details": _obj({"reasoning_tokens": _INT}, ("reasoning_tokens",)),
             "total_tokens": _INT},
            ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details", "total_tokens"),
        ),
        "metadata": {**METADATA, "type": ["object", "null"]},
    },
    ("id", "object", "endpoint", "input_file_id", "completion_window", "status", "created_at"),
)  # fmt: skip

BATCH_SCHEMAS: dict[str, dict] = {
    "OpenAIFile": _FILE,
    "FileList": list_of(_FILE),
    "FileDeleted": _obj(
        {"id": _STR, "object": {"const": "file"}, "deleted": {"const": True}}, ("id", "object", "deleted")
    ),  # fmt: skip
    "CreateFileRequest": _obj(
        {
            "file": {**_STR, "format": "binary"},
            "purpose": {"enum": list(files.UPLOAD_PURPOSES)},
            "expires_after": _EXPIRES_AFTER,
        },
        ("file", "purpose"),
    ),  # fmt: skip
    "Batch": _BATCH,
    "BatchList": list_of(_BATCH),
    "CreateBatchRequest": _obj(
        {
            "input_file_id": _STR,
            "endpoint": {"enum": list(batches.ENDPOINTS)},
            "completion_window": {"const": "24h"},
            "metadata": {**METADATA, "type": ["object", "null"]},
            "output_expires_after": _EXPIRES_AFTER,
        },
        ("input_file_id", "endpoint", "completion_window"),
    ),  # fmt: skip
    "Upload": _obj(
        {
            "id": {**_STR, "description": "`upload_...`"},
            "object": {"const": "upload"},
            "bytes": _INT,
            "created_at": _INT,
            "expires_at": _INT,
            "filename": _STR,
            "purpose": {"enum": list(files.UPLOAD_PURPOSES)},
            "status": {"enum": ["pending", "completed", "cancelled", "expired"]},
            "file": {"anyOf": [_FILE, {"type": "null"}], "description": "The file, once completed."},
        },
        ("id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status"),
    ),  # fmt: skip
    "UploadPart": _obj(
        {
            "id": {**_STR, "description": "`part_...`"},
            "object": {"const": "upload.part"},
            "created_at": _INT,
            "upload_id": _STR,
        },
        ("id", "object", "created_at", "upload_id"),
    ),  # fmt: skip
    "CreateUploadRequest": _obj(
        {
            "filename": {**_STR, "minLength": 1, "maxLength": 512},
            "purpose": {"enum": list(files.UPLOAD_PURPOSES)},
            "bytes": {**_INT, "minimum": 1, "description": "The whole file's size; at most `HUB_MAX_FILE_BYTES`."},
            "mime_type": {**_STR, "minLength": 1, "maxLength": 255},
            "expires_after": _EXPIRES_AFTER,
        },
        ("filename", "purpose", "bytes", "mime_type"),
    ),  # fmt: skip
    "AddUploadPartRequest": _obj({"data": {**_STR, "format": "binary"}}, ("data",)),
    "CompleteUploadRequest": _obj(
        {
            "part_ids": {"type": "array", "items": _STR, "minItems": 1},
            "md5": {**_STR, "minLength": 32, "maxLength": 32, "description": "The content's MD5, hexadecimal."},
        },
        ("part_ids",),
    ),  # fmt: skip
}
