"""Embeddings: waiting inputs are batched into one forward pass per step, then pooled into sentence vectors.

Encoders (BERT, XLM-R, JinaBERT) run bidirectionally through their ``encode``; a decoder (Qwen3-Embedding, any
causal LM without its head) runs its causal forward over each input. The pooling is the one the checkpoint's
sentence-transformers files name (``model.pooling``, set by the loader), else the family's ``default_pooling``,
else the last token, L2-normalised (decoder embedding models).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inference.layers.context import ForwardContext, forward_context
from inference.models.pooling import Pooling, pool

DECODER_POOLING = Pooling("lasttoken", normalize=True)  # Qwen3-Embedding's pipeline


@dataclass
class EmbeddingResult:
    request_id: str
    embeddings: torch.Tensor  # [num_inputs, hidden] float32 (L2-normalised unless the checkpoint says otherwise)
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
    with forward_context(ForwardContext.for_prompts(lengths, causal=True)):
        return model(input_ids, positions)  # a causal LM's forward stops at the final norm: no logits


def embed(model: torch.nn.Module, input_ids_list: list[list[int]]) -> torch.Tensor:
    """Token id lists -> [S, H] float32 sentence vectors, pooled as ``model_pooling`` says."""
    lengths = [len(ids) for ids in input_ids_list]
    return pool(hidden_states(model, input_ids_list), lengths, model_pooling(model))


class EmbeddingEngine:
    def __init__(self, model: torch.nn.Module, max_batched_tokens: int = 8192):
        self.model = model
        self.max_batched_tokens = max_batched_tokens
        self.max_model_len = max_input_len(model)
        self.waiting: list[tuple[str, list[list[int]]]] = []
        self.requests: dict[str, object] = {}

    def add_request(self, request_id: str, inputs: list[list[int]]) -> None:
        if not inputs or any(not ids for ids in inputs):
            raise ValueError("empty input")
        self.waiting.append((request_id, inputs))
        self.requests[request_id] = inputs

    def abort(self, request_id: str) -> list:
        self.waiting = [(r, i) for r, i in self.waiting if r != request_id]
        self.requests.pop(request_id, None)
        return []

    @property
    def has_work(self) -> bool:
        return bool(self.waiting)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    num_running = 0

    @torch.inference_mode()
    def step(self) -> list[EmbeddingResult]:
        batch: list[tuple[str, list[list[int]]]] = []
        tokens = 0
        while self.waiting and (not batch or tokens + sum(map(len, self.waiting[0][1])) <= self.max_batched_tokens):
            request_id, inputs = self.waiting.pop(0)
            batch.append((request_id, inputs))
            tokens += sum(map(len, inputs))
        flat = [ids for _, inputs in batch for ids in inputs]
        vectors = embed(self.model, flat)
        results, offset = [], 0
        for request_id, inputs in batch:
            results.append(EmbeddingResult(request_id, vectors[offset : offset + len(inputs)], sum(map(len, inputs))))
            offset += len(inputs)
            self.requests.pop(request_id, None)
        return results
