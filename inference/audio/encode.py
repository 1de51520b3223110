"""Speech samples → the bytes of OpenAI's ``response_format``s, piece by piece as they are synthesized, with PyAV:
every format at 24 kHz mono, as OpenAI's (``pcm`` is raw 16-bit little-endian at 24 kHz, and clients assume it).

``wav`` is written as OpenAI streams it: a header whose sizes say "unknown" (0xFFFFFFFF), then the samples, so its
first bytes go out before the last piece is spoken. The compressed formats are muxed into a stream that never seeks
(MP3 and AAC frames, Ogg Opus pages, FLAC frames), their bytes handed on as the muxer writes them."""

from __future__ import annotations

import struct
from fractions import Fraction

import av
import numpy as np

RATE = 24000
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac", "wav": "audio/wav",
               "pcm": "audio/pcm"}  # fmt: skip
# format → (muxer, encoder, the encoder's sample format)
_CODECS = {"mp3": ("mp3", "libmp3lame", "s16p"), "opus": ("ogg", "libopus", "s16"), "aac": ("adts", "aac", "fltp"),
           "flac": ("flac", "flac", "s16")}  # fmt: skip


class _Sink:
    """A write-only, unseekable file for the muxer: what it wrote since the last ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def wav_header(rate: int = RATE) -> bytes:
    """A 16-bit mono WAV header whose RIFF and data sizes are unknown (the most), as a stream's."""
    unknown = struct.pack("<I", 0xFFFFFFFF)
    return (
        b"RIFF" + unknown + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + unknown
    )


class AudioEncoder:
    """``feed(samples)`` float32 mono at ``rate`` → the bytes ready so far; ``finish()`` → the rest."""

    def __init__(self, response_format: str, rate: int) -> None:
        if response_format not in FORMATS:
            raise ValueError(f"unknown response_format {response_format!r}")
        self.format, self.started = response_format, False
        codec = _CODECS.get(response_format)
        sample_format = codec[2] if codec else "s16"
        self.resampler = av.AudioResampler(format=sample_format, layout="mono", rate=RATE)
        self.input_rate = rate
        self.pts = 0
        self.container = self.stream = None
        if codec is not None:
            self.sink = _Sink()
            # Ogg: a page every 20 ms of audio, not the muxer's default second, so pages go out as they are spoken
            options = {"page_duration": "20000"} if codec[0] == "ogg" else {}
            self.container = av.open(self.sink, "w", format=codec[0], options=options)
            self.stream = self.container.add_stream(codec[1], rate=RATE, layout="mono")
            self.stream.format = sample_format
            if response_format in ("mp3", "aac"):  # LAME's default for 24 kHz mono is 32 kb/s: audibly thin speech
                self.stream.bit_rate = 64000

    def _frames(self, samples: np.ndarray | None) -> list[av.AudioFrame]:
        if samples is None:
            return self.resampler.resample(None)
        pcm = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = self.input_rate, self.pts, Fraction(1, self.input_rate)
        self.pts += pcm.shape[1]
        return self.resampler.resample(frame)

    def _encoded(self, frames: list[av.AudioFrame], flush: bool = False) -> bytes:
        if self.container is None:  # wav and pcm: the resampled 16-bit samples themselves
            data = b"".join(f.to_ndarray().astype("<i2", copy=False).tobytes() for f in frames)
            if self.format == "wav" and not self.started:
                data = wav_header() + data
            self.started = True
            return data
        for frame in frames:
            frame.pts = None  # the encoder counts its own
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        if flush:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
        return self.sink.take()

    def feed(self, samples: np.ndarray) -> bytes:
        return self._encoded(self._frames(samples))

    def finish(self) -> bytes:
        return self._encoded(self._frames(None), flush=True)
