"""vLLM's beam search (``use_beam_search``: ``n`` beams, ``length_penalty``), over the engine as vLLM's serving layer
runs it. At each step every live beam asks the engine for its next token's ``2n`` likeliest continuations (one
greedy token, the prompt and the beam so far as its prompt: the prefix cache holds the whole blocks earlier steps
computed); a continuation that is an end token finishes its beam, the ``n`` best of the others live on. At the end
(``max_tokens``, or no beam left) the ``n`` best of the finished and live beams are the answer, best first. Beams
are ranked as vLLM ranks them: cumulative logprob / length ** length_penalty, the prompt counted in the length.

Not streamed, and not with a grammar (tools, a schema: this service's tool calls follow one) or prompt logprobs.
The usage counts the prompt once per beam returned and the returned beams' tokens, as vLLM's does."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from starlette.requests import Request

from inference.engine.sequence import TokenLogprob
from inference.errors import RequestError
from inference.sampling_params import SamplingParams
from inference.server.parse import GenerationRequest
from inference.server.reasoning import answers_reasoning_tokens
from inference.server.registry import LoadedModel
from inference.server.streams import ClientGone, deltas, new_id, wait_disconnect
from inference.server.tally import tally_of

MAX_BEAMS = 10  # each step asks for 2n logprobs, at most the engine's 20


@dataclass(frozen=True)
class BeamSearch:
    width: int
    length_penalty: float = 1.0


def read_beam_search(body: dict, gen: GenerationRequest) -> BeamSearch | None:
    use = body.get("use_beam_search")
    if use is not None and not isinstance(use, bool):
        raise RequestError("'use_beam_search' must be a boolean.", param="use_beam_search", code="invalid_type")
    penalty = body.get("length_penalty", 1.0)
    if penalty is None:
        penalty = 1.0
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)):
        raise RequestError("'length_penalty' must be a number.", param="length_penalty", code="invalid_type")
    if not use:
        return None
    if gen.n > MAX_BEAMS:
        raise RequestError(f"Beam search takes at most {MAX_BEAMS} beams ('n').", param="n")
    if gen.stream:
        raise RequestError("Beam search cannot be streamed: its best beams are known only at the end.",
                           param="use_beam_search")  # fmt: skip
    if gen.outputs.prompt_logprobs is not None:
        raise RequestError("Beam search does not give prompt logprobs.", param="prompt_logprobs")
    return BeamSearch(gen.n, float(penalty))


def check_unconstrained(gen: GenerationRequest) -> None:
    """After the prompt is built: a grammar (a request's tools, where the model's tool format has one; a schema)
    cannot shape beams."""
    if gen.params.guide is not None:
        raise RequestError("Beam search cannot follow a grammar: leave out 'tools' and 'response_format'.",
                           param="use_beam_search")  # fmt: skip


@dataclass
class _Beam:
    tokens: list[int] = field(default_factory=list)  # generated
    logprob: float = 0.0  # cumulative
    logprobs: list[TokenLogprob] = field(default_factory=list)  # per token, when the request asked for them
    finish: str = "length"


class BeamRun:
    """A beam search's request: what ``generate.Run`` gives the routes (id, prompt counts, ``collect``)."""

    def __init__(self, request: Request, app_state, model: LoadedModel, prompt_ids: list[int], gen: GenerationRequest,
                 kind: str, search: BeamSearch, mm=None, think=None):  # fmt: skip
        self.request, self.state, self.model, self.gen, self.kind = request, app_state, model, gen, kind
        self.search, self.mm, self.think = search, mm, think
        self.id = new_id("chatcmpl" if kind == "chat" else "cmpl")
        self.created = int(time.time())
        self.prompt_ids = prompt_ids
        self.prompt_tokens = len(prompt_ids)  # as Run: the prompt once, whatever n
        self.tally = tally_of(request)
        self.tally.prompt(self.prompt_tokens)
        self.state.metrics.prompt_tokens.labels(model.id).inc(self.prompt_tokens)
        k = 2 * search.width  # each step's continuations; the chosen token's top, if asked, within them
        self.step_params = SamplingParams(
            max_tokens=1, temperature=0.0, ignore_eos=True, logprobs=k, priority=gen.params.priority,
            cache_salt=gen.params.cache_salt, lora_id=model.lora_id,
        )  # fmt: skip
        self.ends = set() if gen.params.ignore_eos else set(model.tokenizer.stop_token_ids)
        self.ends |= set(gen.params.stop_token_ids)

    def _score(self, beam: _Beam) -> float:
        length = len(self.prompt_ids) + len(beam.tokens) - (1 if beam.finish == "stop" else 0)
        return beam.logprob / (length**self.search.length_penalty)

    async def _next(self, beam: _Beam, step: int, disconnected) -> list[tuple[int, float]]:
        """The beam's next token's likeliest continuations (token, logprob), best first."""
        request_id = f"{self.id}-{step}-{id(beam)}"
        queue = self.model.worker.submit(request_id, self.prompt_ids + beam.tokens, self.step_params, 1, self.mm)
        top: list[tuple[int, float]] = []
        async for delta in deltas(self.model, request_id, queue, 1, self.state.metrics, disconnected):
            if delta.logprobs:
                top = delta.logprobs[0].top
        return top

    async def collect(self) -> list[dict]:
        """The ``n`` best beams as ``generate.Run.collect`` gives its choices; aborts if the client leaves."""
        disconnected = asyncio.ensure_future(wait_disconnect(self.request.receive))
        width, k = self.search.width, self.gen.params.logprobs
        live, done = [_Beam()], []
        try:
            for step in range(self.gen.params.max_tokens):
                tops = await asyncio.gather(*(self._next(beam, step, disconnected) for beam in live))
                grown = []
                for beam, top in zip(live, tops, strict=True):
                    for token, logprob in top:
                        lps = beam.logprobs + [TokenLogprob(token, logprob, top[:k])] if k is not None else []
                        child = _Beam(beam.tokens + [token], beam.logprob + logprob, lps)
                        if token in self.ends:
                            child.finish = "stop"
                            done.append(child)
                        else:
                            grown.append(child)
                live = sorted(grown, key=self._score, reverse=True)[:width]  # stable: ties keep the engine's order
                for i, beam in enumerate(live):  # so far, for a gateway that meters a client gone midway
                    self.tally.output(self.id, i, len(beam.tokens), 0)
                if not live:
                    break
        except ClientGone:
            self.state.metrics.requests.labels(self.model.id, self.kind, "aborted").inc()
            raise
        finally:
            disconnected.cancel()
        best = sorted(done + live, key=self._score, reverse=True)[:width]
        self.state.metrics.requests.labels(self.model.id, self.kind, "ok").inc()
        return [self._choice(i, beam) for i, beam in enumerate(best)]

    def _choice(self, index: int, beam: _Beam) -> dict:
        self.tally.output(self.id, index, len(beam.tokens), 0)
        self.state.metrics.generation_tokens.labels(self.model.id).inc(len(beam.tokens))
        params = self.gen.params
        shown = beam.tokens[:-1] if beam.finish == "stop" and not params.include_stop_str_in_output else beam.tokens
        text = self.model.tokenizer.decode(shown, skip_special_tokens=params.skip_special_tokens)
        return {"text": text, "ids": beam.tokens, "logprobs": beam.logprobs, "prompt_logprobs": None,
                "finish": beam.finish, "tokens": len(beam.tokens), "cached": 0}  # fmt: skip

    def reasoning_tokens(self, outputs: list[list[int]]) -> int | None:
        return answers_reasoning_tokens(self.model.reasoning is not None and self.kind == "chat", self.think, outputs)
