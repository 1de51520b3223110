"""An uploaded audio file -> float32 samples, 16 kHz mono, with PyAV (FFmpeg bundled in its wheel).

Only OpenAI's formats are opened (flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm), and each with the one
demuxer its leading bytes name: FFmpeg never probes, so a playlist or concat file can not make it open anything
beyond the upload. Every way a file can be wrong is an ``AudioError`` (a 400 in OpenAI's shape), never a 500.
"""

from __future__ import annotations

import io

import av
import numpy as np

from inference.errors import RequestError

SAMPLE_RATE = 16000
FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
# the decoded length may fall short of the container's stated one by this much before the file counts as cut off
_TRUNCATION_SLACK_SECONDS = 0.5


class AudioError(RequestError):
    """The upload is not audio we can transcribe; the message says why."""

    def __init__(self, message: str, code: str = "invalid_audio") -> None:
        super().__init__(message, param="file", code=code)


def sniff_format(data: bytes) -> str | None:
    """The FFmpeg demuxer for a file of one of OpenAI's formats, from its leading bytes; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if data[4:8] == b"ftyp":
        return "mp4"  # FFmpeg's mov demuxer: m4a and mp4
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # webm
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"  # an ID3 tag or an MPEG audio frame sync (mp3, mpeg, mpga)
    return None


def decode_audio(data: bytes, max_seconds: float) -> np.ndarray:
    """The upload's first audio stream as float32 samples in [-1, 1], 16 kHz mono: [num_samples]."""
    if not data:
        raise AudioError("The audio file is empty.", code="empty_file")
    demuxer = sniff_format(data)
    if demuxer is None:
        raise AudioError(f"Invalid file format. Supported formats: {list(FORMATS)}", code="unsupported_format")
    if demuxer == "wav" and _wav_cut_off(data):
        raise AudioError("The audio file is cut off: its data chunk is longer than the file.", code="truncated_file")
    try:
        with av.open(io.BytesIO(data), format=demuxer, mode="r") as container:
            streams = container.streams.audio
            if not streams:
                raise AudioError("The file has no audio stream.")
            stated = float(container.duration / av.time_base) if container.duration else None
            if stated is not None and stated > max_seconds:
                raise AudioError(_too_long(stated, max_seconds), code="audio_too_long")
            samples = _decode(container, streams[0], max_seconds)
    except av.FFmpegError as exc:
        raise AudioError(f"The audio file could not be decoded ({type(exc).__name__}: {exc.strerror}).") from None
    seconds = len(samples) / SAMPLE_RATE
    if not len(samples):
        raise AudioError("The audio file holds no audio samples (is it cut off?).")
    if stated is not None and seconds < stated - _TRUNCATION_SLACK_SECONDS:
        raise AudioError(
            f"The audio file is cut off: it says {stated:.1f} s but holds {seconds:.1f} s of audio.",
            code="truncated_file",
        )
    return samples


def _decode(container, stream, max_seconds: float) -> np.ndarray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total, limit = 0, int(max_seconds * SAMPLE_RATE)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1)
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # a file whose header understates its length: stop decoding, refuse it
            raise AudioError(_too_long(total / SAMPLE_RATE, max_seconds), code="audio_too_long")
    for out in resampler.resample(None):  # flush the resampler's tail
        chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


def _wav_cut_off(data: bytes) -> bool:
    """A wav whose data chunk states more bytes than the file holds (FFmpeg trims the stated length to the file's,
    so the container's duration can not tell). Writers that stream leave the size 0 or 0xFFFFFFFF: not judged."""
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            return 0 < size < 0xFFFFFFFF and pos + 8 + size > len(data)
        pos += 8 + size + (size & 1)
    return False


def _too_long(seconds: float, max_seconds: float) -> str:
    return f"The audio is {seconds:.0f} s long; this server transcribes at most {max_seconds:.0f} s per request."
