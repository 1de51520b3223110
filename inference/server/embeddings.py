"""POST /v1/embeddings: float or base64 (the OpenAI SDK asks for base64 by default)."""

from __future__ import annotations

import base64

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

from inference.errors import RequestError
from inference.server.errors import check_reservation
from inference.server.parse import parse_embedding
from inference.server.streams import deltas, new_id
from inference.server.tally import tally_of
from inference.server.token_controls import encode_kept


async def embeddings(request: Request, body: dict) -> JSONResponse:
    state = request.app.state
    model = state.registry.get(body.get("model"))
    parsed = parse_embedding(body, model)
    tokenizer = model.tokenizer
    encoded = [encode_kept(tokenizer, i, parsed.truncate) for i in parsed.inputs]
    for i, ids in enumerate(encoded):
        if any(not 0 <= t < model.vocab_size for t in ids):
            raise RequestError(f"input[{i}] contains token ids outside the vocabulary.", param="input")
        if len(ids) > model.max_model_len:
            raise RequestError(
                f"This model's maximum context length is {model.max_model_len} tokens, however input[{i}] has "
                f"{len(ids)} tokens. Please reduce the length of the input.",
                param="input",
                code="context_length_exceeded",
            )
    check_reservation(request.headers, sum(len(ids) for ids in encoded))
    request_id = new_id("embd")
    queue = model.worker.submit(request_id, encoded, None, parsed.priority)
    tally_of(request).prompt(sum(len(ids) for ids in encoded))
    result = None
    async for item in deltas(model, request_id, queue, 1, state.metrics):
        result = item
    vectors = result.values.numpy().astype(np.float32)
    data = []
    for i, vector in enumerate(vectors):
        value = base64.b64encode(vector.tobytes()).decode() if parsed.encoding_format == "base64" else vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": value})
    state.metrics.prompt_tokens.labels(model.id).inc(result.prompt_tokens)
    state.metrics.requests.labels(model.id, "embedding", "ok").inc()
    usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
    return JSONResponse({"object": "list", "data": data, "model": model.id, "usage": usage})
