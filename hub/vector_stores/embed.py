"""Texts to unit vectors by a catalog embedding model, through the gateway in this process (``call``): the key's
entitlements, limits and budgets apply, and each request is metered under ``metered_route``."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets

import numpy as np

from accounts.authn import KeyContext
from hub.api import errors
from hub.api.relay_common import error_from_upstream
from hub.batches.call import call, retry_after

GROUP = 64  # texts per embeddings request
MAX_ATTEMPTS = 8  # a background request refused for the moment (429, 503) is sent again up to this many times


class EmbeddingFailed(Exception):
    """The gateway's final answer was not a 200: ``error`` is it, as the client of a search would get it."""

    def __init__(self, error: errors.ApiError):
        super().__init__(str(error))
        self.error = error


async def embed(key: KeyContext, model: str, texts: list[str], *, background: bool, metered_route: str,
                request_id: str | None = None) -> np.ndarray:  # fmt: skip
    """[len(texts), dims] float32, each row of unit length. ``background``: in the batch tier (behind interactive
    traffic), a request refused for the moment waits its Retry-After and goes again; otherwise the refusal is the
    answer (a search's client sees the 429). ``request_id``: the id its usage row takes (a search's own, so that the
    row names the client's request); with several groups, each after the first gets a new one."""
    rows: list[np.ndarray] = []
    for start in range(0, len(texts), GROUP):
        body = {"model": model, "input": texts[start : start + GROUP], "encoding_format": "base64"}
        for attempt in range(MAX_ATTEMPTS):
            first = start == 0 and attempt == 0 and request_id is not None
            sent_as = request_id if first else "req_" + secrets.token_hex(12)
            answer = await call(key, "embeddings", body, sent_as, batch=background, metered_route=metered_route)
            wait = retry_after(answer, attempt) if background else None
            if wait is None:
                break
            await asyncio.sleep(wait)
        if answer.status != 200:
            raise EmbeddingFailed(error_from_upstream(answer.status, answer.body))
        data = sorted(json.loads(answer.body)["data"], key=lambda item: item["index"])
        for item in data:
            value = item["embedding"]
            vector = np.frombuffer(base64.b64decode(value), "<f4") if isinstance(value, str) else np.array(value)
            rows.append(vector.astype(np.float32))
    matrix = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
