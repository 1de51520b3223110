"""One file of a vector store indexed: claimed (one indexer at a time), its text read (``hub/documents.py``: UTF-8, a
PDF's text layer, a Word document's, a PowerPoint deck's or an Excel workbook's; anything else is an
``unsupported_file``), cut into chunks of the embedding model's tokens (the model's own deployment tokenizes it,
``/tokenize`` with offsets; an external one is cut at about four characters a token), the chunks embedded through
the gateway with the key that added the file (in the batch tier, metered as ``vector_stores/files``), then stored,
and the file completed. A file cancelled or removed meanwhile is dropped at the next group of chunks; one whose
indexer dies stays claimed until it goes stale and is taken up again (``hub.resume_vector_store_files``)."""

from __future__ import annotations

import logging
import secrets

import httpx
from django.conf import settings

from accounts import authn, files, vector_stores
from hub.api.upstream import upstreams
from hub.documents import Failed, read_text
from hub.pool import db
from hub.vector_stores import chunking
from hub.vector_stores.embed import GROUP, EmbeddingFailed, embed

log = logging.getLogger(__name__)

METERED_ROUTE = "vector_stores/files"


async def token_spans(model: str, text: str) -> list[tuple[int, int]]:
    """The spans of the model's tokens in ``text``, from its deployment's tokenizer, piece by piece."""
    _, targets = await upstreams.model(model)
    own = [t for t in targets if not t.external]
    if not own:
        if not targets:
            raise Failed("server_error", f"No deployment of the embedding model '{model}' is available.")
        return chunking.approximate_spans(text)
    client, spans = upstreams.client(), []
    for start, piece in chunking.segments(text):
        for target in upstreams.order(own, None):
            url = target.base_url.rstrip("/").removesuffix("/v1") + "/tokenize"
            body = {"model": target.model, "prompt": piece, "return_offsets": True}
            try:
                answer = await client.post(url, json=body, headers=target.headers("req_" + secrets.token_hex(12)))
            except httpx.TransportError:
                upstreams.bench(target)
                continue
            if answer.status_code != 200:
                raise Failed("server_error", f"The embedding model's deployment could not tokenize the file "
                             f"({answer.status_code}).")  # fmt: skip
            spans += [(start + a, start + b) for a, b in answer.json()["offsets"]]
            break
        else:
            raise Failed("server_error", f"No deployment of the embedding model '{model}' is reachable.")
    return spans


async def index(row_id: int) -> None:
    row = await db(vector_stores.claim, row_id, settings.HUB_BATCH_STALE_SECONDS)
    if row is None:
        return
    store = row.vector_store
    try:
        try:
            key = await db(authn.context_of, row.api_key_id)
        except authn.AuthFailed as failed:
            raise Failed("server_error", f"The API key that added the file can no longer be used "
                         f"({failed.reason.value}).") from None  # fmt: skip
        content = await db(files.content, store.tenant_id, row.file_id)
        if content is None:
            raise Failed("invalid_file", f"The file '{row.file_id}' was deleted or has expired.")
        text = read_text(content)
        spans = await token_spans(store.embedding_model, text)
        pieces = chunking.chunks(text, spans, row.max_chunk_size_tokens, row.chunk_overlap_tokens)
        stored: list[tuple[str, bytes]] = []
        for start in range(0, len(pieces), GROUP):
            if not await db(vector_stores.renew, row_id):  # cancelled or removed: drop it
                return
            group = pieces[start : start + GROUP]
            vectors = await embed(key, store.embedding_model, group, background=True, metered_route=METERED_ROUTE)
            stored += [(text, vector.astype("<f4").tobytes()) for text, vector in zip(group, vectors, strict=True)]
        await db(vector_stores.finish, row_id, stored)
    except Failed as failed:
        await db(vector_stores.fail, row_id, failed.code, failed.message)
    except EmbeddingFailed as failed:
        await db(vector_stores.fail, row_id, "server_error", f"Embedding the file failed: {failed.error}")
    except Exception as exc:  # noqa: BLE001 - the file fails with the reason; the indexer lives on
        log.exception("indexing vector store file %s failed", row_id)
        await db(vector_stores.fail, row_id, "server_error", f"Indexing the file failed ({type(exc).__name__}).")
