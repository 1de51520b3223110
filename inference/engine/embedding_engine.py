"""Embeddings: waiting inputs are batched into one encoder forward pass per step."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EmbeddingResult:
    request_id: str
    embeddings: torch.Tensor  # [num_inputs, hidden] float32, L2-normalised
    prompt_tokens: int
    finish_reason: str = "stop"


class EmbeddingEngine:
    def __init__(self, model: torch.nn.Module, max_batched_tokens: int = 8192):
        self.model = model
        self.max_batched_tokens = max_batched_tokens
        self.max_model_len = model.config.max_position_embeddings
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
        vectors = self.model.embed(flat).float()
        results, offset = [], 0
        for request_id, inputs in batch:
            results.append(EmbeddingResult(request_id, vectors[offset : offset + len(inputs)], sum(map(len, inputs))))
            offset += len(inputs)
            self.requests.pop(request_id, None)
        return results
