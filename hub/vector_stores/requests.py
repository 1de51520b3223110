"""The vector store routes' request fields, checked as OpenAI checks them (a 400 naming the field): chunking
strategies, file attributes, expiry, the files a request adds (each one of the tenant's files), and the embedding
model a new store uses."""

from __future__ import annotations

from django.conf import settings

from accounts import files, stored, vector_stores
from accounts.authn import KeyContext
from accounts.models import ModelKind, ServedModel
from accounts.vector_stores import Chunking, Entry
from hub.api import errors, validation

MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE = 16, 64, 512  # OpenAI's
MAX_STORE_FILES, MAX_BATCH_FILES = 500, 2000  # per request: a store's creation, a file batch
SPECIAL_TOKENS = 2  # room a chunk leaves in the embedding model's context for its [CLS] / [SEP] or <s> / </s>


def _refuse(param: str, message: str, code: str = "invalid_value") -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code=code)


def chunking(value: object, context: int, param: str = "chunking_strategy") -> Chunking:
    """``{"type": "auto"}`` (800 tokens, 400 overlapping) or ``{"type": "static", "static": {...}}``; cut to fit the
    embedding model's ``context`` (then the overlap to half a chunk), as the store's files are then chunked."""
    if value is None or (isinstance(value, dict) and value.get("type") == "auto"):
        chosen = Chunking()
    elif isinstance(value, dict) and value.get("type") == "static" and isinstance(value.get("static"), dict):
        static = value["static"]
        size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
        low, high = vector_stores.MIN_CHUNK_TOKENS, vector_stores.MAX_CHUNK_TOKENS
        if type(size) is not int or not low <= size <= high:
            raise _refuse(f"{param}.static.max_chunk_size_tokens",
                          f"'max_chunk_size_tokens' must be an integer from {low} to {high}.")  # fmt: skip
        if type(overlap) is not int or not 0 <= overlap <= size // 2:
            message = "'chunk_overlap_tokens' must be an integer from 0 to half of max_chunk_size_tokens."
            raise _refuse(f"{param}.static.chunk_overlap_tokens", message)
        chosen = Chunking(size, overlap)
    else:
        raise _refuse(param, f"Invalid '{param}': expected {{'type': 'auto'}} or {{'type': 'static', 'static': "
                      "{'max_chunk_size_tokens': ..., 'chunk_overlap_tokens': ...}}.")  # fmt: skip
    room = max(context - SPECIAL_TOKENS, 1) if context else chosen.max_chunk_size_tokens
    if chosen.max_chunk_size_tokens <= room:
        return chosen
    return Chunking(room, min(chosen.chunk_overlap_tokens, room // 2))


def attributes(value: object, param: str = "attributes") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ATTRIBUTES:
        raise _refuse(param, f"Invalid '{param}': expected an object of at most {MAX_ATTRIBUTES} keys.")
    for key, item in value.items():
        if len(key) > MAX_ATTRIBUTE_KEY:
            raise _refuse(param, f"Invalid '{param}': keys are at most {MAX_ATTRIBUTE_KEY} characters.")
        if isinstance(item, str):
            if len(item) > MAX_ATTRIBUTE_VALUE:
                raise _refuse(f"{param}.{key}", f"Invalid '{param}.{key}': at most {MAX_ATTRIBUTE_VALUE} characters.")
        elif not isinstance(item, (int, float)):  # bool is an int
            raise _refuse(f"{param}.{key}", f"Invalid '{param}.{key}': expected a string, a number or a boolean.")
    return dict(value)


def expires_after_days(value: object, param: str = "expires_after") -> int | None:
    if value is None:
        return None
    days = value.get("days") if isinstance(value, dict) else None
    if (
        not isinstance(value, dict)
        or value.get("anchor") != "last_active_at"
        or type(days) is not int
        or not (1 <= days <= 365)
    ):
        raise _refuse(param, f"Invalid '{param}': expected {{'anchor': 'last_active_at', 'days': 1 to 365}}.")
    return days


def entries(key: KeyContext, body: dict, context: int, *, limit: int, required: bool) -> list[Entry]:
    """The files a request adds: ``file_ids`` (with the request's ``chunking_strategy`` and ``attributes``) or, in a
    file batch, ``files`` (each with its own, the request's as the default); each one of the tenant's files."""
    default_chunking = chunking(body.get("chunking_strategy"), context)
    default_attributes = attributes(body.get("attributes"))
    found: list[Entry] = []
    ids, items = body.get("file_ids"), body.get("files")
    if ids is not None and items is not None:
        raise _refuse("files", "Give 'file_ids' or 'files', not both.")
    if items is not None:
        if not isinstance(items, list) or not 1 <= len(items) <= limit:
            raise _refuse("files", f"Invalid 'files': expected an array of 1 to {limit} objects.")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("file_id"), str):
                raise validation.missing(f"files[{i}].file_id")
            strategy = item.get("chunking_strategy")
            own = None if strategy is None else chunking(strategy, context, f"files[{i}].chunking_strategy")
            labels = attributes(item.get("attributes"), f"files[{i}].attributes")
            found.append(Entry(item["file_id"], own or default_chunking, labels or default_attributes))
    elif ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > limit:
            raise _refuse("file_ids", f"Invalid 'file_ids': expected an array of at most {limit} file ids.")
        found = [Entry(file_id, default_chunking, default_attributes) for file_id in dict.fromkeys(ids)]
    if required and not found:
        raise validation.missing("file_ids")
    for entry in found:
        if files.find(key.tenant_id, entry.file_id) is None:
            raise errors.NotFound(f"No such File object: {errors.shown(entry.file_id)}", param="file_id")
    return found


def embedding_model(key: KeyContext, value: object) -> ServedModel:
    """The store's embedding model: ``value`` (our extension, as Llama Stack's) or ``HUB_VECTOR_STORE_EMBEDDING_MODEL``;
    an enabled embedding model of the catalog that the key may use."""
    name = settings.HUB_VECTOR_STORE_EMBEDDING_MODEL if value is None else value
    model = ServedModel.objects.filter(pk=name, enabled=True).first() if stored.valid_id(name) else None
    if model is None or not key.may_use(model.id) or model.kind != ModelKind.EMBEDDING:
        default = " (the hub's default for vector stores: HUB_VECTOR_STORE_EMBEDDING_MODEL)" if value is None else ""
        raise _refuse("embedding_model", f"Vector stores embed their files with '{errors.shown(name)}'{default}, "
                      "which is not an embedding model this key may use.")  # fmt: skip
    return model
