"""One request's way through a recording (Whisper's sequential long-form algorithm, as OpenAI's ``transcribe``).

The recording's features are cut into 30 s windows starting at ``seek``. Each window is decoded with timestamps;
the timestamp pairs close segments, and the next window starts where the last closed segment ended (or after the
whole window when it ends on a single timestamp). A window whose text compresses too well (a loop: compression
ratio > 2.4) or whose tokens were unlikely (average log-probability < -1) is decoded again at the next temperature;
one that is likely silence (no-speech probability > 0.6 and unlikely tokens) is skipped. The text so far is the
next window's prompt, until a window needed a temperature above 0.5.

The engine (``inference/engine/speech_engine.py``) runs many of these at once; this file holds no tensors of the
decoder, only the request's own state and arithmetic.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from inference.audio.decode import SAMPLE_RATE
from inference.audio.features import CHUNK_FRAMES, FRAMES_PER_SECOND, HOP_LENGTH, window_at
from inference.speech.alignment import Word, WordTiming, place_words
from inference.speech.vocab import TIME_PRECISION, WhisperVocab

COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
TEMPERATURE_STEP = 0.2  # the fallback's schedule: T, T + 0.2, ... up to 1.0
INPUT_STRIDE = 2  # mel frames per timestamp step (0.02 s)
MAX_PROMPT_TOKENS = 223  # of the previous text, before <|startoftranscript|> (n_text_ctx // 2 - 1)
MAX_WINDOW_TOKENS = 224  # sampled per window (n_text_ctx // 2)


@dataclass(frozen=True)
class SpeechOptions:
    task: str = "transcribe"  # or "translate" (to English)
    language: str | None = None  # a code the model knows; None: detected on the first window
    temperature: float = 0.0  # the first attempt's; the fallback raises it
    prompt: str | None = None
    seed: int | None = None
    word_timestamps: bool = False  # each segment's words with their times (a decoder pass more per window)

    def temperatures(self) -> list[float]:
        steps = [self.temperature]
        while steps[-1] + TEMPERATURE_STEP <= 1.0 + 1e-6:
            steps.append(round(steps[-1] + TEMPERATURE_STEP, 2))
        return steps


@dataclass
class Segment:
    id: int
    seek: int  # the window's first mel frame
    start: float  # seconds
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    logprobs: list[float] = field(default_factory=list)  # each of ``tokens``' log-probability (as sampled)
    words: list[Word] = field(default_factory=list)  # with word timestamps


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass
class Transcription:
    """A request's state: where it is in the recording, what it has written, the attempt under way."""

    features: torch.Tensor  # [n_mels, frames + 3000]: the recording's log-mel with 30 s of silence after it
    samples: int  # 16 kHz samples of the recording itself
    vocab: WhisperVocab
    options: SpeechOptions
    seek: int = 0
    language: str | None = None
    segments: list[Segment] = field(default_factory=list)
    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    attempt: int = 0  # index into the temperatures of the window under way
    sampled_tokens: int = 0  # every token sampled, retries included: what the request cost
    done: bool = False
    generator: torch.Generator | None = None
    single_ending: bool = False  # the last accepted window ended on one timestamp (word timestamps read it)
    last_speech: float = 0.0  # seconds: where the last placed words ended

    def __post_init__(self) -> None:
        self.language = self.options.language
        self.temperatures = self.options.temperatures()
        if self.options.prompt:
            self.all_tokens = self.vocab.encode_text(" " + self.options.prompt.strip())
        self.initial_prompt_tokens = len(self.all_tokens)
        if self.options.seed is not None:
            self.generator = torch.Generator().manual_seed(self.options.seed)
        self.done = self.frames <= 0
        # (looped, -avg logprob, temperature, tokens, ratio, logprobs) of the window's attempts so far
        self._attempts: list[tuple] = []

    @property
    def frames(self) -> int:
        """Mel frames of the recording itself."""
        return self.samples // HOP_LENGTH

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def temperature(self) -> float:
        return self.temperatures[self.attempt]

    def window(self) -> torch.Tensor:
        """The current window's features [n_mels, 3000]."""
        return window_at(self.features, self.seek)

    def prefix(self) -> tuple[list[int], int]:
        """(the tokens the window's decoding starts from, the index of ``<|startoftranscript|>`` in them)."""
        v = self.vocab
        task = v.translate if self.options.task == "translate" else v.transcribe
        prompt = self.all_tokens[self.prompt_reset_since :][-MAX_PROMPT_TOKENS:]
        head = [v.sot_prev, *prompt] if prompt else []
        return [*head, v.sot, v.languages[self.language], task], len(head)

    def finish_window(self, tokens: list[int], logprobs: list[float], no_speech_prob: float) -> list[Segment] | None:
        """An attempt at the current window ended (``tokens``: what it sampled, without the end token, and each
        one's log-probability; the end token's is not counted, as in Whisper's own sum). Returns the
        window's new segments (maybe none) and moves on, or None when the window is to be decoded again at the
        next temperature. When every temperature fails, the attempt with the best average log-probability among
        those that did not loop is kept (as faster-whisper does; OpenAI's keeps the last)."""
        v = self.vocab
        text = v.decode_text(tokens)
        ratio = compression_ratio(text)
        avg_logprob = sum(logprobs) / (len(tokens) + 1)
        silent = no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD
        failed = ratio > COMPRESSION_RATIO_THRESHOLD or avg_logprob < LOGPROB_THRESHOLD
        looped = ratio > COMPRESSION_RATIO_THRESHOLD
        self._attempts.append((looped, -avg_logprob, self.temperature, tokens, ratio, logprobs))
        if failed and not silent and self.attempt + 1 < len(self.temperatures):
            self.attempt += 1
            return None
        if failed and not silent:
            _, neg_logprob, temperature, tokens, ratio, logprobs = min(self._attempts, key=lambda a: a[:2])
            avg_logprob = -neg_logprob
            self.attempt = self.temperatures.index(temperature)
        self._attempts = []
        temperature, self.attempt = self.temperature, 0
        size = self.window_frames(self.seek)
        if silent:
            self.seek += size
            self._check_done()
            return []
        self.single_ending = [t >= v.timestamp_begin for t in tokens[-2:]] == [False, True]
        stats = {"temperature": temperature, "avg_logprob": avg_logprob, "compression_ratio": ratio,
                 "no_speech_prob": no_speech_prob}  # fmt: skip
        pieces, advance = self._split(tokens, size)
        offset = self.seek / FRAMES_PER_SECOND
        segments = []
        for start, end, lo, hi in pieces:
            piece = tokens[lo:hi]
            piece_text = v.decode_text(piece)
            # ends within the recording's last whole mel frame (10 ms steps: rounded to 2 places, never past its end)
            begin, finish = offset + start, min(offset + end, self.frames / FRAMES_PER_SECOND)
            if finish <= begin or not piece_text.strip():
                continue  # an instant or an empty segment
            segment = Segment(id=len(self.segments), seek=self.seek, start=round(begin, 2), end=round(finish, 2),
                              text=piece_text, tokens=piece, logprobs=logprobs[lo:hi], **stats)  # fmt: skip
            self.segments.append(segment)
            segments.append(segment)
        self.all_tokens.extend(t for s in segments for t in s.tokens)
        if temperature > 0.5:
            self.prompt_reset_since = len(self.all_tokens)
        self.seek += advance
        self._check_done()
        return segments

    def _split(self, tokens: list[int], size: int) -> tuple[list[tuple[float, float, int, int]], int]:
        """The window's pieces (start s, end s, and where in ``tokens`` they begin and end), and how many frames
        to advance."""
        ts = self.vocab.timestamp_begin
        is_ts = [t >= ts for t in tokens]
        single_ending = self.single_ending
        cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
        if cuts:
            if single_ending:
                cuts.append(len(tokens))
            pieces, last = [], 0
            for cut in cuts:
                pieces.append(
                    ((tokens[last] - ts) * TIME_PRECISION, (tokens[cut - 1] - ts) * TIME_PRECISION, last, cut)
                )
                last = cut
            advance = size if single_ending else (tokens[last - 1] - ts) * INPUT_STRIDE
            return pieces, max(advance, 1)
        duration = size / FRAMES_PER_SECOND
        stamps = [t for t in tokens if t >= ts]
        if stamps and stamps[-1] != ts:
            duration = (stamps[-1] - ts) * TIME_PRECISION
        return [(0.0, duration, 0, len(tokens))], size

    def window_frames(self, seek: int) -> int:
        """Mel frames of the recording in the window at ``seek`` (a last window is shorter than 30 s)."""
        return min(CHUNK_FRAMES, self.frames - seek)

    def add_words(self, segments: list[Segment], words: list[WordTiming]) -> None:
        """The window's ``segments`` (just accepted) get their ``words`` (times from the window's start); as
        Whisper, the next window then starts where the last word ended, unless the window ended on one timestamp."""
        window = segments[0].seek
        offset = window / FRAMES_PER_SECOND
        self.last_speech = place_words(segments, words, offset, self.last_speech, self.vocab.eot)
        if self.single_ending:
            return
        last_end = next((w.end for s in reversed(segments) for w in reversed(s.words)), segments[-1].end)
        if last_end > offset:
            self.seek = max(window + 1, round(last_end * FRAMES_PER_SECOND))
            self._check_done()

    def _check_done(self) -> None:
        self.done = self.seek >= self.frames

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()
