"""POST /v1/embeddings: float or base64 (the OpenAI SDK asks for base64 by default)."""

from __future__ import annotations

import base64

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

from inference.server import protocol
from inference.server.errors import ServiceError, check_reservation
from inference.server.streams import deltas, new_id


async def embeddings(request: Request, body: dict) -> JSONResponse:
    state = request.app.state
    model = state.registry.get(body.get("model"))
    if model.kind != "embedding":
        raise ServiceError(f"'{model.id}' is not an embedding model.", param="model")
    inputs = protocol.read_embedding_inputs(body)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise ServiceError("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != model.hidden_size:
        raise ServiceError(
            f"This model produces {model.hidden_size}-dimensional embeddings and cannot shorten them; "
            f"'dimensions' must be omitted or {model.hidden_size}.",
            param="dimensions",
        )
    encoded = [ids if isinstance(ids, list) else model.tokenizer.encode(ids, add_special_tokens=True) for ids in inputs]
    for i, ids in enumerate(encoded):
        if any(not 0 <= t < model.vocab_size for t in ids):
            raise ServiceError(f"input[{i}] contains token ids outside the vocabulary.", param="input")
        if len(ids) > model.max_model_len:
            raise ServiceError(
                f"This model's maximum context length is {model.max_model_len} tokens, however input[{i}] has "
                f"{len(ids)} tokens. Please reduce the length of the input.",
                param="input",
                code="context_length_exceeded",
            )
    check_reservation(request.headers, sum(len(ids) for ids in encoded))
    request_id = new_id("embd")
    queue = model.worker.submit(request_id, encoded)
    result = None
    async for item in deltas(model, request_id, queue, 1, state.metrics):
        result = item
    vectors = result.embeddings.numpy().astype(np.float32)
    data = []
    for i, vector in enumerate(vectors):
        value = base64.b64encode(vector.tobytes()).decode() if fmt == "base64" else vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    state.metrics.prompt_tokens.labels(model.id).inc(result.prompt_tokens)
    state.metrics.requests.labels(model.id, "embedding", "ok").inc()
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse({"object": "list", "data": data, "model": model.id, "usage": usage})
