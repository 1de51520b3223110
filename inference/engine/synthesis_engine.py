"""Speech synthesized piece by piece (``inference/synthesis/pieces.py``): each step speaks the next piece of the
request that waited longest, then puts that request back at the end of the line. So requests take turns, a long
text does not hold a short one back for its whole length, and each piece's audio is its own pass (nothing in it
depends on the other requests: a request's noise comes from its own generator, in the order it speaks).

A piece that fails fails its request alone."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from inference.engine.output import RequestFailed

log = logging.getLogger("inference.synthesis")

PAUSE_SECONDS = 0.2  # of silence after each piece but the last: a sentence's end


@dataclass
class Utterance:
    """What a request speaks: its pieces' token ids in order, its voice (speaker index) and speed, its noise."""

    pieces: list[list[int]]
    speaker: int = 0
    speaking_rate: float = 1.0
    generator: torch.Generator | None = None
    characters: int = 0  # of the text: what it is billed by
    spoken: int = 0  # pieces done
    samples: int = 0  # written so far, pauses included


@dataclass
class SynthesisOutput:
    request_id: str
    samples: np.ndarray  # float32 mono at the model's sampling rate: this piece (and its pause)
    finish_reason: str | None = None  # "stop" with the last piece
    utterance: Utterance | None = None
    index: int = 0


class SynthesisEngine:
    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.rate = model.config.sampling_rate
        self.max_model_len = 0  # no context: a request is cut into pieces
        self.line: deque[str] = deque()  # the requests with pieces to speak, the next first
        self.requests: dict[str, Utterance] = {}

    def add_request(self, request_id: str, utterance: Utterance) -> None:
        if not utterance.pieces or not all(utterance.pieces):
            raise ValueError("an utterance needs at least one piece, and no empty piece")
        self.requests[request_id] = utterance
        self.line.append(request_id)

    def abort(self, request_id: str) -> list:
        if self.requests.pop(request_id, None) is not None:
            self.line.remove(request_id)
        return []

    @property
    def has_work(self) -> bool:
        return bool(self.line)

    @property
    def num_waiting(self) -> int:
        return sum(1 for r in self.line if self.requests[r].spoken == 0)

    @property
    def num_running(self) -> int:
        return len(self.line) - self.num_waiting

    def step(self) -> list[SynthesisOutput | RequestFailed]:
        request_id = self.line.popleft()
        utterance = self.requests[request_id]
        ids = utterance.pieces[utterance.spoken]
        try:
            wave = self.model.synthesize(ids, utterance.speaker, utterance.speaking_rate, utterance.generator)
        except Exception as exc:  # noqa: BLE001 - this request's own failure: only it fails
            log.error("synthesizing a piece of %s failed", request_id, exc_info=exc)
            del self.requests[request_id]
            return [RequestFailed(request_id, exc)]
        utterance.spoken += 1
        samples = wave.cpu().numpy()
        if utterance.spoken < len(utterance.pieces):
            samples = np.concatenate([samples, np.zeros(round(PAUSE_SECONDS * self.rate), np.float32)])
            self.line.append(request_id)
            finish = None
        else:
            del self.requests[request_id]
            finish = "stop"
        utterance.samples += len(samples)
        return [SynthesisOutput(request_id, samples, finish, utterance)]
