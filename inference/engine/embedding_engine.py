"""Embeddings and rerank scores: waiting inputs are batched into one forward pass per step, then pooled into
sentence vectors (embedding models) or read through a cross-encoder's head into relevance scores (rerank models,
whose inputs are query-document pairs with their token types).

Encoders (BERT, XLM-R, JinaBERT) run bidirectionally through their ``encode``; a decoder (Qwen3-Embedding, any
causal LM without its head) runs its causal forward over each input. The pooling is the one the checkpoint's
sentence-transformers files name (``model.pooling``, set by the loader), else the family's ``default_pooling``,
else the last token, L2-normalised (decoder embedding models).
"""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass
from typing import NamedTuple

import torch

from inference.engine.output import RequestFailed
from inference.layers.context import ForwardContext, forward_context
from inference.models.pooling import Pooling, pool

log = logging.getLogger("inference.embeddings")

DECODER_POOLING = Pooling("lasttoken", normalize=True)  # Qwen3-Embedding's pipeline


@dataclass
class EmbeddingResult:
    request_id: str
    # [num_inputs, hidden] float32 vectors (L2-normalised unless the checkpoint says otherwise), or for a
    # cross-encoder [num_inputs] float32 relevance scores
    values: torch.Tensor
    prompt_tokens: int
    finish_reason: str = "stop"


def model_pooling(model: torch.nn.Module) -> Pooling:
    return getattr(model, "pooling", None) or getattr(model, "default_pooling", None) or DECODER_POOLING


def max_input_len(model: torch.nn.Module) -> int:
    return getattr(model, "max_input_len", None) or model.config.max_position_embeddings


@torch.inference_mode()
def hidden_states(model: torch.nn.Module, input_ids_list: list[list[int]]) -> torch.Tensor:
    """Token id lists -> last hidden states [T, H] of the flat batch, each sequence attending to its own tokens."""
    if hasattr(model, "encode"):
        return model.encode(input_ids_list)
    lengths = [len(ids) for ids in input_ids_list]
    if not lengths or min(lengths) == 0:
        raise ValueError("embed needs at least one sequence and no empty sequence")
    device = next(model.parameters()).device
    input_ids = torch.tensor([t for ids in input_ids_list for t in ids], dtype=torch.long, device=device)
    positions = torch.cat([torch.arange(n, device=device) for n in lengths])
    with forward_context(ForwardContext.for_prompts(lengths, causal=True, roles=True)):  # batch invariant
        return model(input_ids, positions)  # a causal LM's forward stops at the final norm: no logits


def embed(model: torch.nn.Module, input_ids_list: list[list[int]]) -> torch.Tensor:
    """Token id lists -> [S, H] float32 sentence vectors, pooled as ``model_pooling`` says."""
    lengths = [len(ids) for ids in input_ids_list]
    return pool(hidden_states(model, input_ids_list), lengths, model_pooling(model))


class _Waiting(NamedTuple):
    request_id: str
    inputs: list[list[int]]
    token_types: list[list[int]] | None
    order: tuple[int, int]  # (priority, arrival): vLLM's priority, a lower value first


class EmbeddingEngine:
    def __init__(self, model: torch.nn.Module, max_batched_tokens: int = 8192):
        self.model = model
        self.max_batched_tokens = max_batched_tokens
        self.max_model_len = max_input_len(model)
        self.scores = hasattr(model, "scores")  # a cross-encoder: pairs in, one relevance score each out
        self.waiting: list[_Waiting] = []  # in the order they run
        self.requests: dict[str, object] = {}
        self._arrivals = itertools.count()

    def add_request(
        self, request_id: str, inputs: list[list[int]], token_types: list[list[int]] | None = None, priority: int = 0
    ) -> None:
        """``inputs``: token id lists; ``token_types``: a cross-encoder's segment ids, one list per input;
        ``priority``: requests run by it (a lower value first: a batch's lines behind interactive ones), then in
        arrival order."""
        if not inputs or any(not ids for ids in inputs):
            raise ValueError("empty input")
        if token_types is not None and [len(t) for t in token_types] != [len(i) for i in inputs]:
            raise ValueError("token_types must give one type per token")
        entry = _Waiting(request_id, inputs, token_types, (priority, next(self._arrivals)))
        bisect.insort(self.waiting, entry, key=lambda w: w.order)
        self.requests[request_id] = inputs

    def abort(self, request_id: str) -> list:
        self.waiting = [w for w in self.waiting if w.request_id != request_id]
        self.requests.pop(request_id, None)
        return []

    @property
    def has_work(self) -> bool:
        return bool(self.waiting)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    num_running = 0

    def step(self) -> list[EmbeddingResult | RequestFailed]:
        batch: list[_Waiting] = []
        tokens = 0
        while self.waiting and (not batch or tokens + sum(map(len, self.waiting[0].inputs)) <= self.max_batched_tokens):
            batch.append(self.waiting.pop(0))
            tokens += sum(map(len, batch[-1].inputs))
        try:
            return self._run(batch)
        except Exception as exc:  # noqa: BLE001 - whose input failed is unknown: each request runs again, alone
            log.error("an embedding step over %d request(s) failed", len(batch), exc_info=exc)
            if len(batch) == 1:
                return [self._failed(batch[0].request_id, exc)]
        results: list[EmbeddingResult | RequestFailed] = []
        for item in batch:
            try:
                results += self._run([item])
            except Exception as exc:  # noqa: BLE001 - this request's own failure: only it fails
                results.append(self._failed(item.request_id, exc))
        return results

    def _failed(self, request_id: str, error: Exception) -> RequestFailed:
        self.requests.pop(request_id, None)
        return RequestFailed(request_id, error)

    @torch.inference_mode()
    def _run(self, batch: list[_Waiting]) -> list[EmbeddingResult]:
        """One forward pass over ``batch``: every request's vectors (or scores)."""
        flat = [ids for w in batch for ids in w.inputs]
        if self.scores:
            types = [t for w in batch for t in (w.token_types or [[0] * len(i) for i in w.inputs])]
            values = self.model.scores(flat, types)
        else:
            values = embed(self.model, flat)
        results, offset = [], 0
        for request_id, inputs, _, _ in batch:
            results.append(EmbeddingResult(request_id, values[offset : offset + len(inputs)], sum(map(len, inputs))))
            offset += len(inputs)
            self.requests.pop(request_id, None)
        return results
