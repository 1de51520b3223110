"""Speech synthesized piece by piece (``inference/synthesis/pieces.py``), and each piece's audio a stretch at a
time: each step makes the next ``VOCODER_FRAMES`` spectrogram frames' audio of the request that waited longest (a
new piece's spectrogram first: a cheap pass of the text encoder, durations and flow), then puts that request back at
the end of the line. So requests take turns, a long text does not hold a short one back, a step stays short (the
vocoder is 97 % of the work: ``docs/benchmarks.md``) for the other models the engine loop steps, and the first audio
goes out after one stretch, not a whole sentence. Each stretch is vocoded with the context its samples depend on
(``VitsModel.vocode``), so the pieces join as the whole would; nothing in a request's audio depends on the other
requests (its noise comes from its own generator, in the order it speaks).

A step that fails fails its request alone."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from inference.engine.output import RequestFailed

log = logging.getLogger("inference.synthesis")

PAUSE_SECONDS = 0.2  # of silence after each piece but the last: a sentence's end
# spectrogram frames a step vocodes: 2 s of an MMS-TTS voice's audio, ~0.6 s on 2 cores; each stretch is vocoded
# with its context (17 frames each side for MMS-TTS), which costs 1.27x a whole piece's pass (docs/benchmarks.md)
VOCODER_FRAMES = 128


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
    latents: torch.Tensor | None = None  # the current piece's spectrogram latents [1, flow, frames]
    voice: torch.Tensor | None = None
    frame: int = 0  # of the current piece's, the first not yet vocoded


@dataclass
class SynthesisOutput:
    request_id: str
    samples: np.ndarray  # float32 mono at the model's sampling rate: this stretch (and a finished piece's pause)
    finish_reason: str | None = None  # "stop" with the last piece
    total_samples: int = 0  # the request's so far, this stretch's included (the engine goes on meanwhile)
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
        return sum(1 for r in self.line if self.requests[r].spoken == 0 and self.requests[r].latents is None)

    @property
    def num_running(self) -> int:
        return len(self.line) - self.num_waiting

    def step(self) -> list[SynthesisOutput | RequestFailed]:
        request_id = self.line.popleft()
        utterance = self.requests[request_id]
        try:
            wave = self._next_stretch(utterance)
        except Exception as exc:  # noqa: BLE001 - this request's own failure: only it fails
            log.error("synthesizing %s failed", request_id, exc_info=exc)
            del self.requests[request_id]
            return [RequestFailed(request_id, exc)]
        samples = wave.cpu().numpy()
        finish = None
        if utterance.latents is None:  # the piece is done
            utterance.spoken += 1
            if utterance.spoken < len(utterance.pieces):
                samples = np.concatenate([samples, np.zeros(round(PAUSE_SECONDS * self.rate), np.float32)])
            else:
                finish = "stop"
        if finish is None:
            self.line.append(request_id)
        else:
            del self.requests[request_id]
        utterance.samples += len(samples)
        return [SynthesisOutput(request_id, samples, finish, utterance.samples)]

    def _next_stretch(self, utterance: Utterance) -> torch.Tensor:
        """The next ``VOCODER_FRAMES`` frames' audio of the utterance's current piece (its spectrogram made first
        where the piece is new); the piece's latents are dropped once it is all vocoded."""
        if utterance.latents is None:
            ids = utterance.pieces[utterance.spoken]
            utterance.latents, utterance.voice = self.model.spectrogram(ids, utterance.speaker, utterance.speaking_rate,
                                                                        utterance.generator)  # fmt: skip
            utterance.frame = 0
        start = utterance.frame
        utterance.frame = min(start + VOCODER_FRAMES, utterance.latents.shape[-1])
        wave = self.model.vocode(utterance.latents, utterance.voice, start, utterance.frame)
        if utterance.frame >= utterance.latents.shape[-1]:
            utterance.latents = utterance.voice = None
        return wave
