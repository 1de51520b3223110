"""POST /v1/moderations, OpenAI's shape, answered by a guard model (``kind = "moderation"``: Llama Guard and models
trained on its format, ``guard.py``). Each input is the user message of a conversation the model's chat template
wraps in its task; the model answers greedily, held to a verdict over its own category codes by a grammar, with its
top log probabilities at the first word. One result per input:

- ``flagged``: the model answered ``unsafe``;
- ``categories``: the OpenAI categories of the codes it named (``guard.openai_categories``);
- ``category_scores``: the model's probability of ``unsafe`` for the categories it named, 0 for the others;
- ``category_applied_input_types``: ``["text"]`` for every category (text is all a guard model reads here).

Inputs: a string, an array of strings (a result each), or an array of ``text`` parts (one result for their text
joined); image parts are refused. ``usage`` counts every prompt and verdict token, for the gateway's metering."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse

from inference.errors import RequestError
from inference.server.errors import ContextLengthExceeded, check_reservation
from inference.server.generate import Run
from inference.server.guard import OPENAI_CATEGORIES, unsafe_probability, verdict
from inference.server.parse import read_generation
from inference.server.registry import LoadedModel
from inference.server.streams import new_id

MAX_INPUTS = 32  # per request: each is a generation of its own
VERDICT_TOKENS = 24  # room for "unsafe" and several codes; the grammar ends the answer sooner
TOP = 20  # the likeliest first words read for the score


def read_inputs(body: dict) -> list[str]:
    """The texts to judge, one per result."""
    value = body.get("input")
    if value is None:
        raise RequestError("Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise RequestError("Invalid 'input': expected a string, an array of strings or an array of input parts.",
                           param="input", code="invalid_type")  # fmt: skip
    if all(isinstance(v, str) for v in value):
        if len(value) > MAX_INPUTS:
            raise RequestError(f"Invalid 'input': at most {MAX_INPUTS} inputs per request.", param="input",
                               code="array_above_max_length")  # fmt: skip
        return list(value)
    texts = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            raise RequestError("This moderation model reads text only: image inputs are not supported.",
                               param=f"input[{i}]")  # fmt: skip
        if kind != "text" or not isinstance(part.get("text"), str):
            raise RequestError(f"Invalid 'input[{i}]': expected a string or an object with type 'text' and 'text'.",
                               param=f"input[{i}]", code="invalid_type")  # fmt: skip
        texts.append(part["text"])
    return ["\n".join(texts)]


def _model(state, body: dict) -> LoadedModel:
    """The request's model; without one, the only guard model served."""
    if body.get("model") is None:
        guards = [m for m in state.registry.models.values() if m.kind == "moderation"]
        if len(guards) == 1:
            return guards[0]
    model = state.registry.get(body.get("model"))
    if model.guard is None:
        raise RequestError(f"'{model.id}' is not a moderation model.", param="model")
    return model


def _result(model: LoadedModel, choice: dict) -> dict:
    unsafe, codes = verdict(choice["text"])
    flagged = model.guard.flags(codes)
    score = 0.0
    if choice["logprobs"]:
        tokenizer = model.tokenizer
        # the first token that is not blank space: where the model chose between its two words
        first = next((lp for lp in choice["logprobs"] if tokenizer.decode([lp.token_id]).strip()), None)
        if first is not None:
            seen = [(tokenizer.decode([t]), v) for t, v in [(first.token_id, first.logprob), *first.top]]
            score = unsafe_probability(seen, unsafe)
    return {
        "flagged": unsafe,
        "categories": {c: c in flagged for c in OPENAI_CATEGORIES},
        "category_scores": {c: round(score, 6) if c in flagged else 0.0 for c in OPENAI_CATEGORIES},
        "category_applied_input_types": {c: ["text"] for c in OPENAI_CATEGORIES},
    }


async def moderations(request: Request, body: dict) -> JSONResponse:
    state = request.app.state
    model = _model(state, body)
    texts = read_inputs(body)
    prompts = [model.tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True)
               for t in texts]  # fmt: skip
    for ids in prompts:
        if len(ids) + VERDICT_TOKENS > model.max_model_len:
            raise ContextLengthExceeded(model.max_model_len, len(ids), VERDICT_TOKENS, "input")
    check_reservation(request.headers, sum(len(ids) for ids in prompts))
    runs = []
    for ids in prompts:
        gen = read_generation({"max_tokens": VERDICT_TOKENS, "temperature": 0, "logprobs": True, "top_logprobs": TOP,
                               "priority": body.get("priority", 0), "cache_salt": body.get("cache_salt")},
                              model.vocab_size, chat=True)  # fmt: skip
        gen.params.guide = model.guard.guide  # compiled at the model's load
        runs.append(Run(request, state, model, ids, gen, "moderation"))
    answers = await asyncio.gather(*(run.collect() for run in runs))
    prompt_tokens = sum(run.prompt_tokens for run in runs)
    completion_tokens = sum(choices[0]["tokens"] for choices in answers)
    return JSONResponse({
        "id": new_id("modr"), "model": model.id,
        "results": [_result(model, choices[0]) for choices in answers],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })  # fmt: skip
