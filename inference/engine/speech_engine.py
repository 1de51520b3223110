"""Transcriptions batched: each step encodes the windows that are waiting (each alone: see ``_encode``), starts their
decoding, and advances every decoding row by one token in one decoder pass.

A request is one row at a time (its current window); a long recording goes window after window while short ones
join and leave beside it, so nothing waits for a whole file. Rows live in one ``DecoderState`` of ``max_rows``
rows: the first ``len(self.rows)`` are in use; a row that leaves takes the last row's place, so the rows in use
stay one contiguous view and a step copies nothing.

A request's failure fails it alone: its own window, language or prefix, its window's end; and a decoder step that
raises runs again request by request, so that only the one that fails alone fails (the rest go on as if nothing
had happened: a row's numbers never depend on the batch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from inference.engine.output import RequestFailed
from inference.speech.alignment import find_words
from inference.speech.rules import apply_rules, sample
from inference.speech.transcription import MAX_WINDOW_TOKENS, Segment, Transcription
from inference.speech.vocab import WhisperVocab

log = logging.getLogger("inference.speech")


@dataclass
class SpeechOutput:
    request_id: str
    segments: list[Segment]  # accepted this step (a window's segments arrive together)
    sampled_tokens: int  # tokens sampled this step, retries included (metering of aborted streams)
    finish_reason: str | None = None  # "stop" once the whole recording is written
    transcription: Transcription | None = None  # with the finish: the whole result
    index: int = 0


@dataclass
class _Row:
    request_id: str
    job: Transcription
    sot_index: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # each sampled token's, for the fallback and the answer
    no_speech_prob: float = 0.0
    prefix_len: int = 0


class SpeechEngine:
    def __init__(self, model: torch.nn.Module, vocab: WhisperVocab, max_rows: int = 16, max_windows_per_step: int = 4):
        self.model = model
        self.vocab = vocab
        self.max_rows = max_rows
        self.max_windows_per_step = max_windows_per_step
        self.max_model_len = model.config.max_target_positions
        self.state = model.new_state(max_rows)
        self.rows: list[_Row] = []
        # [max_rows, vocab] float32: each row's logits for its next token (the first len(rows) rows are in use)
        weight = model.model.decoder.embed_tokens.weight
        self.next_logits = torch.zeros(max_rows, model.config.vocab_size, device=weight.device)
        cfg = model.config
        self.alignment_heads = vocab.alignment_heads or tuple(  # Whisper's default: the second half's heads
            (layer, head) for layer in range(cfg.decoder_layers // 2, cfg.decoder_layers)
            for head in range(cfg.decoder_attention_heads)
        )  # fmt: skip
        wrong = [(layer, head) for layer, head in self.alignment_heads
                 if not (0 <= layer < cfg.decoder_layers and 0 <= head < cfg.decoder_attention_heads)]  # fmt: skip
        if wrong:
            raise ValueError(f"generation_config.json's alignment_heads name {wrong}, which this decoder of "
                             f"{cfg.decoder_layers} layers x {cfg.decoder_attention_heads} heads has not")  # fmt: skip
        self.waiting: list[tuple[str, Transcription]] = []  # need a window encoded (new, or past their last one)
        self.requests: dict[str, Transcription] = {}

    # --- the worker's interface ------------------------------------------------------------------

    def add_request(self, request_id: str, job: Transcription) -> None:
        self.requests[request_id] = job
        self.waiting.append((request_id, job))

    def abort(self, request_id: str) -> list:
        self.requests.pop(request_id, None)
        self.waiting = [(r, j) for r, j in self.waiting if r != request_id]
        for i in reversed(range(len(self.rows))):
            if self.rows[i].request_id == request_id:
                self._drop(i)
        return []

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.rows)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.rows)

    # --- a step ----------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[SpeechOutput | RequestFailed]:
        outputs: dict[str, SpeechOutput | RequestFailed] = {}
        self._admit(outputs)
        if self.rows:
            self._advance(outputs)
        return list(outputs.values())

    def _output(self, outputs: dict[str, SpeechOutput], request_id: str) -> SpeechOutput:
        return outputs.setdefault(request_id, SpeechOutput(request_id, [], 0))

    def _admit(self, outputs: dict[str, SpeechOutput | RequestFailed]) -> None:
        """Encode the waiting windows that fit, one batch; detect languages; prefill each new row. A request whose
        own part fails (its window, its language, its prefix) fails alone."""
        room = min(self.max_rows - len(self.rows), self.max_windows_per_step)
        if room <= 0 or not self.waiting:
            return
        admitted, windows = [], []
        for request_id, job in self.waiting[:room]:
            try:
                windows.append(job.window())
            except Exception as exc:  # noqa: BLE001 - this request's audio: only it fails
                self._failed(request_id, exc, outputs)
            else:
                admitted.append((request_id, job))
        self.waiting = self.waiting[room:]
        if not admitted:
            return
        admitted, encoded = self._encode(admitted, windows, outputs)
        if not admitted:
            return
        first = len(self.rows)
        self.model.set_audio(self.state.view(first, first + len(admitted)), encoded)
        failed: list[tuple[int, Exception]] = []
        for offset, (request_id, job) in enumerate(admitted):
            slot = first + offset
            self.rows.append(_Row(request_id, job, 0))  # its audio is in this slot, whatever happens next
            try:
                if job.language is None:
                    job.language = self._detect_language(slot)
                self._prefill(slot)
            except Exception as exc:  # noqa: BLE001 - this request's own row: only it fails
                failed.append((slot, exc))
        for slot, exc in reversed(failed):  # descending: _drop moves the last row into the place it frees
            request_id = self.rows[slot].request_id
            self._drop(slot)
            self._failed(request_id, exc, outputs)

    def _encode(self, admitted: list, windows: list[torch.Tensor], outputs: dict) -> tuple[list, torch.Tensor]:
        """The windows encoded -> (the requests, [n, 1500, d]), each window alone: a GEMM's rounding may follow its
        row count (oneDNN's bf16 one does at Whisper base's 512 x 1536), so a batch would change a window's numbers
        (and the words' times) with what else is in it; at 1,500 rows a window fills the GEMMs anyway (measured: 4
        windows alone take no longer than the 4 as one batch). A window that fails fails only its request."""
        weight = self.model.model.encoder.conv1.weight
        kept, parts = [], []
        for (request_id, job), window in zip(admitted, windows, strict=True):
            try:
                parts.append(self.model.encode(window[None].to(weight.device, weight.dtype)))
            except Exception as exc:  # noqa: BLE001 - this window: only its request fails
                self._failed(request_id, exc, outputs)
            else:
                kept.append((request_id, job))
        return kept, torch.cat(parts) if parts else torch.empty(0)

    def _decode_step(self, tokens: list[int], ended: list[int]) -> dict[int, Exception]:
        """One sampled token for every row, in one decoder pass (the rows in ``ended`` ride along at position 0).
        If the pass raises, each row still decoding runs its token again alone (the caches' lengths set back
        first: a row's keys and values at its length are simply written again): a row that fails alone is the
        cause. Returns {row: its error}; the other rows' next logits are as if nothing had failed."""
        n = len(self.rows)
        step = torch.tensor([[t] for t in tokens], device=self.state.lengths.device)
        lengths = self.state.lengths[:n].clone()
        try:
            self.next_logits[:n] = self.model.decode(step, self.state.view(0, n))[:, -1]
            return {}
        except Exception:  # noqa: BLE001 - retried row by row below
            log.warning("a decoder step of %d rows failed; decoding each row alone", n, exc_info=True)
        self.state.lengths[:n] = lengths
        failed: dict[int, Exception] = {}
        for i in range(n):
            if i in ended:
                continue
            try:
                self.next_logits[i] = self.model.decode(step[i : i + 1], self.state.view(i, i + 1))[0, -1]
            except Exception as exc:  # noqa: BLE001 - this row: only its request fails
                failed[i] = exc
        return failed

    def _detect_language(self, slot: int) -> str:
        """The likeliest language token after ``<|startoftranscript|>`` (on the request's first window)."""
        view = self.state.view(slot, slot + 1)
        logits = self.model.decode(torch.tensor([[self.vocab.sot]], device=view.lengths.device), view)[0, -1]
        view.lengths.zero_()
        codes = list(self.vocab.languages)
        ids = torch.tensor([self.vocab.languages[c] for c in codes], device=logits.device)
        return codes[int(logits[ids].argmax())]

    def _prefill(self, slot: int) -> None:
        """Start (or restart, at the next temperature) the decoding of a row's window."""
        row = self.rows[slot]
        prefix, row.sot_index = row.job.prefix()
        row.tokens, row.logprobs, row.prefix_len = [], [], len(prefix)
        view = self.state.view(slot, slot + 1)
        view.lengths.zero_()
        logits = self.model.decode(torch.tensor([prefix], device=view.lengths.device), view, prompt=True)[0]  # [T, V]
        row.no_speech_prob = float(torch.softmax(logits[row.sot_index], dim=-1)[self.vocab.no_speech])
        self.next_logits[slot] = logits[-1]

    def _advance(self, outputs: dict[str, SpeechOutput]) -> None:
        """Sample one token for every row; rows whose window ended leave; the rest decode it together."""
        logits = apply_rules(self.next_logits[: len(self.rows)].clone(), [r.tokens for r in self.rows], self.vocab)
        temperatures = [r.job.temperature for r in self.rows]
        tokens, logprobs = sample(logits, temperatures, [r.job.generator for r in self.rows])
        ended: list[int] = []
        for i, (row, token, logprob) in enumerate(zip(self.rows, tokens, logprobs, strict=True)):
            row.job.sampled_tokens += 1
            self._output(outputs, row.request_id).sampled_tokens += 1
            if token == self.vocab.eot:
                ended.append(i)
                continue
            row.tokens.append(token)
            row.logprobs.append(logprob)
            if len(row.tokens) >= MAX_WINDOW_TOKENS or row.prefix_len + len(row.tokens) >= self.max_model_len:
                ended.append(i)
        failed: dict[int, Exception] = {}
        if len(ended) < len(self.rows):
            # the rows that ended ride along at position 0 (their caches are reset or left behind next)
            self.state.lengths[ended] = 0
            failed = self._decode_step(tokens, ended)
        for i in sorted({*ended, *failed}, reverse=True):  # descending: a row moved into a place by _drop was seen
            request_id = self.rows[i].request_id
            if i in failed:
                self._drop(i)
                self._failed(request_id, failed[i], outputs)
                continue
            try:
                self._end_window(i, outputs)
            except Exception as exc:  # noqa: BLE001 - this request's segments or its retry: only it fails
                if i < len(self.rows) and self.rows[i].request_id == request_id:  # not dropped before it failed
                    self._drop(i)
                self._failed(request_id, exc, outputs)

    def _end_window(self, i: int, outputs: dict[str, SpeechOutput]) -> None:
        row = self.rows[i]
        job = row.job
        segments = job.finish_window(row.tokens, row.logprobs, row.no_speech_prob)
        if segments is None:  # decode the window again, hotter, from the same encoded audio
            self._prefill(i)
            return
        if segments and job.options.word_timestamps:
            self._align(i, segments)
        out = self._output(outputs, row.request_id)
        out.segments.extend(segments)
        self._drop(i)
        if job.done:
            self.requests.pop(row.request_id, None)
            out.finish_reason, out.transcription = "stop", job
        else:
            self.waiting.append((row.request_id, job))

    def _align(self, i: int, segments: list[Segment]) -> None:
        """Word timestamps for a window's accepted ``segments``: its text decoded once more on row i (whose audio is
        still the window's) after ``<|notimestamps|>``, and the alignment heads' cross-attention read."""
        job, v = self.rows[i].job, self.vocab
        task = v.translate if job.options.task == "translate" else v.transcribe
        prefix = [v.sot, v.languages[job.language], task, v.no_timestamps]
        text = [t for s in segments for t in s.tokens if t < v.eot]
        view = self.state.view(i, i + 1)
        tokens = torch.tensor([[*prefix, *text, v.eot]], device=view.lengths.device)
        wanted = {layer for layer, _ in self.alignment_heads}
        layers = self.model.cross_attention_scores(tokens, view, wanted)  # {layer: [1, H, T, 1500]}
        scores = torch.stack([layers[layer][0, head] for layer, head in self.alignment_heads])  # [heads, T, 1500]
        frames = job.window_frames(segments[0].seek)
        job.add_words(segments, find_words(scores, text, len(prefix), frames, v, job.language))

    def _failed(self, request_id: str, error: Exception, outputs: dict) -> None:
        log.error("transcription %s failed", request_id, exc_info=error)
        self.requests.pop(request_id, None)
        outputs[request_id] = RequestFailed(request_id, error)

    def _drop(self, i: int) -> None:
        """Row i leaves; the last row takes its place."""
        last = len(self.rows) - 1
        if i != last:
            self.state.move_row(last, i)
            self.rows[i] = self.rows[last]
            self.next_logits[i] = self.next_logits[last]
        self.rows.pop()
