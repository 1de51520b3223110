"""POST /v1/chat/completions and /v1/completions, streaming and not, in OpenAI's format. Each reads straight
through: parse the body (``parse.py``), build the prompt (``prompt.py``), check it against the gateway's
reservation, submit it to the engine, then stream or collect the answer (``answers.py`` shapes a chat's)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from inference.engine.output import SeqDelta
from inference.errors import RequestError
from inference.function_calling.parsers import ToolCallParser
from inference.sampling_params import ThinkMarks
from inference.server import answers
from inference.server.beam_search import BeamRun, check_unconstrained, read_beam_search
from inference.server.errors import check_reservation
from inference.server.parse import GenerationRequest, parse_chat, parse_completion
from inference.server.prompt import build_chat, build_completion
from inference.server.reasoning import ReasoningSplitter, answers_reasoning_tokens
from inference.server.registry import LoadedModel
from inference.server.streams import ClientGone, counted_sse, deltas, new_id, sse, wait_disconnect
from inference.server.tally import tally_of
from inference.server.token_outputs import logprobs_chat, logprobs_completion, prompt_outputs


def _usage(prompt: int, completion: int, reasoning: int | None = None, cached: int = 0) -> dict:
    """``reasoning``: a reasoning model's tokens in its think blocks, already part of ``completion``; ``cached``: the
    prompt tokens the prefix cache held (part of ``prompt``), OpenAI's ``prompt_tokens_details.cached_tokens``."""
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
             "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return usage


class Run:
    """One generation request: submitted to the engine, consumed as a stream or collected."""

    def __init__(
        self,
        request: Request,
        app_state,
        model: LoadedModel,
        prompt_ids: list[int],
        gen: GenerationRequest,
        kind: str,
        parser: Callable[[], ToolCallParser | None] | None = None,
        mm=None,
        splitter: Callable[[], ReasoningSplitter | None] | None = None,
        think: ThinkMarks | None = None,
        more: list[list[int]] | None = None,
    ):
        """``more``: a streamed completion's other prompts, each its own engine request on the same queue, whose
        choices follow the first prompt's (prompt ``p``'s choice ``i`` is choice ``p * n + i``, as OpenAI's)."""
        self.request, self.state, self.model, self.gen, self.kind = request, app_state, model, gen, kind
        self.parser = parser or (lambda: None)  # a chat's tool-call parser, one per choice
        self.splitter = splitter or (lambda: None)  # a reasoning model's think block apart, one per choice
        self.think = think
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")
        self.created = int(time.time())
        self.prompt_ids = prompt_ids
        self.prompts = [prompt_ids, *(more or [])]
        self.ids = [self.id] + [f"{self.id}-{p}" for p in range(1, len(self.prompts))]  # the engine's requests
        self.choices = gen.n * len(self.prompts)
        # usage counts each prompt once, whatever n (OpenAI's and vLLM's): its choices share it
        self.prompt_tokens = sum(map(len, self.prompts))
        params = gen.params if model.lora_id is None else dataclasses.replace(gen.params, lora_id=model.lora_id)
        self.queue = model.worker.submit(self.id, prompt_ids, params, gen.n, mm)
        for request_id, ids in zip(self.ids[1:], self.prompts[1:], strict=True):
            model.worker.submit(request_id, ids, params, gen.n, mm, queue=self.queue)
        self._first = {request_id: p * gen.n for p, request_id in enumerate(self.ids)}  # its first choice's index
        self.state.metrics.prompt_tokens.labels(model.id).inc(self.prompt_tokens)
        self.tally = tally_of(request)  # what a hub that dies before metering this is metered from
        self.tally.prompt(self.prompt_tokens)

    def _base(self) -> dict:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model.id}

    def _no_usage(self) -> dict:
        """A chunk before any token was counted: ``usage`` null where the client asked for a usage chunk."""
        if self.gen.continuous_usage:
            return {"usage": _usage(self.prompt_tokens, 0)}
        return {"usage": None} if self.gen.include_usage else {}

    def _count(self, delta: SeqDelta) -> int:
        """Count a numbered delta (metrics, tally); returns the cached prompt tokens its usage counts: its prompt's
        first choice's only, as the prompt is counted once, and that choice's prefill is the one that found what was
        cached before the request (the other choices find that prefill too)."""
        cached = delta.cached_tokens if delta.index % self.gen.n == 0 else 0
        self.state.metrics.generation_tokens.labels(self.model.id).inc(len(delta.token_ids))
        self.tally.output(self.id, delta.index, delta.completion_tokens, cached)
        return cached

    def stream(self, echo: list[str] | None = None):
        """``echo``: each prompt's text written before its choices' answers (completions' echo, vLLM's chat echo)."""
        echo = echo or [""] * len(self.prompts)
        return counted_sse(self._events(echo), self.state.metrics, self.model.id, self.kind)

    def reasoning_tokens(self, outputs: list[list[int]]) -> int | None:
        """The choices' tokens in think blocks (None: not a reasoning model)."""
        return answers_reasoning_tokens(self.model.reasoning is not None and self.kind == "chat", self.think, outputs)

    async def _events(self, echo: list[str]):
        n, total = self.gen.n, self.choices
        completion_tokens: dict[int, int] = {}
        outputs: list[list[int]] = [[] for _ in range(total)]
        parsers = [self.parser() for _ in range(total)]
        splitters = [self.splitter() for _ in range(total)]
        called = [False] * total
        wanted = self.gen.outputs  # vLLM's token outputs
        prompt_of, echo_of = [self.prompts[c // n] for c in range(total)], [echo[c // n] for c in range(total)]
        prompt_ids = [{"prompt_token_ids": ids} if wanted.token_ids else {} for ids in prompt_of]
        if self.kind == "chat":
            # content null, not "": an answer of tool calls only has no content (as the non-streamed one)
            first = {"role": "assistant", "content": None if parsers[0] else "", "refusal": None}
            for i in range(total):
                choice = {"index": i, "delta": first, "logprobs": None}
                yield sse({**self._base(), "choices": [{**choice, "finish_reason": None}], **self._no_usage(),
                           **prompt_ids[i]})  # fmt: skip
                if echo_of[i]:  # vLLM's chat echo: the final assistant message, before the answer
                    choice = {"index": i, "delta": {"content": echo_of[i]}, "logprobs": None, "finish_reason": None}
                    yield sse({**self._base(), "choices": [choice], **self._no_usage()})
        # echo with logprobs: the prompt's text comes with its logprobs, which come with the first token (vLLM's)
        pending = [self.kind != "chat" and bool(text) and self.gen.params.logprobs is not None for text in echo_of]
        for i in range(total) if self.kind != "chat" else ():
            if (echo_of[i] or prompt_ids[i]) and not pending[i]:
                choice = {"index": i, "text": echo_of[i], "logprobs": None, "finish_reason": None, **prompt_ids[i]}
                yield sse({**self._base(), "choices": [choice], **self._no_usage()})
        cached: dict[int, int] = {}
        shown = [len(text) for text in echo_of]  # each choice's text so far: its next token's text_offset
        async for delta in deltas(self.model, self.ids, self.queue, total, self.state.metrics):
            delta = self._numbered(delta)
            cached[delta.index] = self._count(delta)
            completion_tokens[delta.index] = delta.completion_tokens
            if self.model.reasoning is not None:  # only a reasoning model's usage reads the tokens back
                outputs[delta.index] += delta.token_ids
            ids = {"token_ids": delta.token_ids} if wanted.token_ids else {}
            if not delta.text and not delta.finish_reason and not delta.logprobs and not ids:
                continue
            if self.kind == "chat":
                parser, splitter = parsers[delta.index], splitters[delta.index]
                parts = [("content", delta.text)] if splitter is None else splitter.feed(delta.text)
                if splitter is not None and delta.finish_reason:
                    parts += splitter.finish()
                pieces = []
                for kind, text in parts:
                    if kind == "reasoning":
                        pieces.append(answers.reasoning_delta(text))
                    elif parser is None:
                        pieces += [{"content": text}] if text else []
                    else:
                        pieces += answers.stream_deltas(parser.feed(text))
                if parser is not None:
                    pieces += answers.stream_deltas(parser.finish()) if delta.finish_reason else []
                    called[delta.index] = called[delta.index] or bool(parser.calls)
                if not pieces and not delta.finish_reason and not delta.logprobs and not ids:
                    continue  # text held back (a call's markup, a think tag): nothing to send yet
                choices = [{"index": delta.index, "delta": piece, "logprobs": None, "finish_reason": None}
                           for piece in pieces or [{}]]  # fmt: skip
                choices[0].update(logprobs=logprobs_chat(delta, self.model.tokenizer, wanted.as_ids), **ids)
                choices[-1]["finish_reason"] = answers.finish_reason(delta.finish_reason, called[delta.index])
            elif pending[delta.index]:
                pending[delta.index] = False
                items = (delta.prompt_logprobs or []) + delta.logprobs
                lp = logprobs_completion(items, self.model.tokenizer, 0, wanted.as_ids, self.gen.params.logprobs,
                                         prompt_of[delta.index][0])  # fmt: skip
                shown[delta.index] += len(delta.text)
                choices = [{"index": delta.index, "text": echo_of[delta.index] + delta.text, "logprobs": lp,
                            "finish_reason": delta.finish_reason, **prompt_ids[delta.index], **ids}]  # fmt: skip
            else:
                lp = (logprobs_completion(delta.logprobs, self.model.tokenizer, shown[delta.index], wanted.as_ids)
                      if delta.logprobs else None)  # fmt: skip
                shown[delta.index] += len(delta.text)
                choices = [{"index": delta.index, "text": delta.text, "logprobs": lp,
                            "finish_reason": delta.finish_reason, **ids}]  # fmt: skip
            for choice in choices:
                chunk = {**self._base(), "choices": [choice]}
                if self.gen.continuous_usage:  # what a gateway meters from if the client goes away
                    chunk["usage"] = _usage(self.prompt_tokens, sum(completion_tokens.values()),
                                            cached=sum(cached.values()))  # fmt: skip
                elif self.gen.include_usage:  # OpenAI: every chunk but the last carries "usage": null
                    chunk["usage"] = None
                yield sse(chunk)
        if self.gen.include_usage:
            usage = _usage(self.prompt_tokens, sum(completion_tokens.values()), self.reasoning_tokens(outputs),
                           sum(cached.values()))  # fmt: skip
            yield sse({**self._base(), "choices": [], "usage": usage})
        yield sse("[DONE]")

    def _numbered(self, delta: SeqDelta) -> SeqDelta:
        """``delta`` as the choice it is among all the prompts' (its engine request's first choice on)."""
        first = self._first[delta.request_id]
        return dataclasses.replace(delta, index=first + delta.index) if first else delta

    async def collect(self) -> list[dict]:
        """Every choice's full text, token logprobs and finish reason; aborts if the client leaves."""
        disconnected = asyncio.ensure_future(wait_disconnect(self.request.receive))
        choices = [{"text": "", "ids": [], "logprobs": [], "prompt_logprobs": None, "finish": None, "tokens": 0,
                    "cached": 0} for _ in range(self.choices)]  # fmt: skip
        try:
            async for delta in deltas(self.model, self.ids, self.queue, self.choices, self.state.metrics,
                                      disconnected):  # fmt: skip
                delta = self._numbered(delta)
                cached = self._count(delta)
                c = choices[delta.index]
                c["text"] += delta.text
                c["ids"] += delta.token_ids  # the usage's reasoning tokens, vLLM's return_token_ids
                c["logprobs"] += delta.logprobs
                c["finish"] = delta.finish_reason or c["finish"]
                c["tokens"] = delta.completion_tokens
                c["cached"] = cached
                if delta.prompt_logprobs is not None:
                    c["prompt_logprobs"] = delta.prompt_logprobs
        except ClientGone:
            self.state.metrics.requests.labels(self.model.id, self.kind, "aborted").inc()
            raise
        finally:
            disconnected.cancel()
        self.state.metrics.requests.labels(self.model.id, self.kind, "ok").inc()
        return choices


async def chat_completions(request: Request, body: dict) -> JSONResponse | StreamingResponse:
    state = request.app.state
    model = state.registry.get(body.get("model"))
    chat = parse_chat(body, model)
    beams = read_beam_search(body, chat.generation)
    prompt = await build_chat(chat, model, state.image_policy)
    gen = chat.generation
    check_reservation(request.headers, len(prompt.ids))
    run: Run | BeamRun
    if beams is not None:
        check_unconstrained(gen)
        run = BeamRun(request, state, model, prompt.ids, gen, "chat", beams, prompt.mm, prompt.think)
    else:
        run = Run(request, state, model, prompt.ids, gen, "chat", lambda: answers.new_parser(chat, prompt), prompt.mm,
                  lambda: answers.new_splitter(model, prompt), prompt.think)  # fmt: skip
    if gen.stream:
        return StreamingResponse(run.stream([chat.echo]), media_type="text/event-stream")
    choices = await run.collect()
    replies = []
    for c in choices:
        splitter = answers.new_splitter(model, prompt)
        c["reasoning"], c["text"] = splitter.split(c["text"]) if splitter else (None, c["text"])
        parser = answers.new_parser(chat, prompt)
        replies.append(parser.parse(c["text"]) if parser else None)
    reasons, wanted = model.reasoning is not None, gen.outputs
    return JSONResponse({
        "id": run.id, "object": "chat.completion", "created": run.created, "model": model.id,
        "choices": [
            {
                "index": i,
                "message": _echoed(chat.echo, answers.message(reply, c["text"], c["reasoning"], reasons)),
                "logprobs": logprobs_chat(SeqDelta(run.id, i, "", [], c["logprobs"]), model.tokenizer, wanted.as_ids)
                if gen.params.logprobs is not None else None,
                "finish_reason": answers.finish_reason(c["finish"], bool(reply and reply.tool_calls)),
                **({"token_ids": c["ids"]} if wanted.token_ids else {}),
            }
            for i, (c, reply) in enumerate(zip(choices, replies, strict=True))
        ],
        "usage": _usage(run.prompt_tokens, sum(c["tokens"] for c in choices),
                        run.reasoning_tokens([c["ids"] for c in choices]), sum(c["cached"] for c in choices)),
        **prompt_outputs(wanted, run.prompt_ids, choices[0]["prompt_logprobs"], model.tokenizer),
    })  # fmt: skip


def _echoed(echo: str, message: dict) -> dict:
    """vLLM's chat echo: the final assistant message's text before the answer's content."""
    if echo:
        message["content"] = echo + (message.get("content") or "")
    return message


async def completions(request: Request, body: dict) -> JSONResponse | StreamingResponse:
    state = request.app.state
    model = state.registry.get(body.get("model"))
    completion = parse_completion(body, model)
    beams = read_beam_search(body, completion.generation)
    if beams is not None and completion.best_of > completion.generation.n:
        raise RequestError("'best_of' above 'n' cannot be combined with beam search.", param="best_of")
    encoded = await build_completion(completion, model)
    gen, echo = completion.generation, completion.echo
    check_reservation(request.headers, sum(len(ids) for ids in encoded))
    if gen.stream:  # every prompt's choices in one stream, prompt p's i-th as choice p * n + i
        echoed = [model.tokenizer.decode(ids, skip_special_tokens=True) if echo else "" for ids in encoded]
        run = Run(request, state, model, encoded[0], gen, "completion", more=encoded[1:])
        return StreamingResponse(run.stream(echoed), media_type="text/event-stream")
    candidates = _candidates(gen, completion.best_of)
    runs: list[Run] | list[BeamRun]
    if beams is not None:
        check_unconstrained(gen)
        runs = [BeamRun(request, state, model, ids, gen, "completion", beams) for ids in encoded]
    else:
        runs = [Run(request, state, model, ids, candidates, "completion") for ids in encoded]
    results = [_best(choices, gen.n) for choices in await asyncio.gather(*(r.collect() for r in runs))]
    out_choices, prompt_total, completion_total, cached_total = [], 0, 0, 0
    for p, (run, (choices, every)) in enumerate(zip(runs, results, strict=True)):
        prefix = model.tokenizer.decode(run.prompt_ids, skip_special_tokens=True) if echo else ""
        prompt_total += run.prompt_tokens
        completion_total += sum(c["tokens"] for c in every)  # every candidate was generated: all are counted
        cached_total += sum(c["cached"] for c in every)
        wanted = gen.outputs
        for i, c in enumerate(choices):
            logprobs = None
            if gen.params.logprobs is not None:
                items = (c["prompt_logprobs"] or []) + c["logprobs"] if echo else c["logprobs"]
                logprobs = logprobs_completion(items, model.tokenizer, 0, wanted.as_ids, gen.params.logprobs,
                                               run.prompt_ids[0] if echo else None)  # fmt: skip
            out_choices.append({
                "index": p * gen.n + i, "text": prefix + c["text"], "logprobs": logprobs, "finish_reason": c["finish"],
                **prompt_outputs(wanted, run.prompt_ids, c["prompt_logprobs"], model.tokenizer),
                **({"token_ids": c["ids"]} if wanted.token_ids else {}),
            })  # fmt: skip
    return JSONResponse({
        "id": runs[0].id, "object": "text_completion", "created": runs[0].created, "model": model.id,
        "choices": out_choices, "usage": _usage(prompt_total, completion_total, cached=cached_total),
    })  # fmt: skip


def _candidates(gen: GenerationRequest, best_of: int) -> GenerationRequest:
    """``best_of`` candidates instead of ``n`` choices, each with its sampled tokens' logprobs (to rank them)."""
    if best_of == gen.n:
        return gen
    logprobs = 0 if gen.params.logprobs is None else gen.params.logprobs
    return dataclasses.replace(gen, n=best_of, params=dataclasses.replace(gen.params, logprobs=logprobs))


def _best(choices: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """(the ``n`` candidates with the highest log probability per token, best first; all of them). OpenAI's
    ``best_of``; a candidate's tokens include the one that stopped it. Ties keep the candidates' order."""
    if len(choices) == n:
        return choices, choices
    mean = [sum(lp.logprob for lp in c["logprobs"]) / max(1, len(c["logprobs"])) for c in choices]
    ranked = sorted(range(len(choices)), key=lambda i: -mean[i])
    return [choices[i] for i in ranked[:n]], choices
