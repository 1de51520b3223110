"""Uploads to samples: every format OpenAI lists decodes to the same 16 kHz mono audio, and every way a file can be
wrong is an OpenAI-shaped 400 naming the file, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from inference.audio.decode import SAMPLE_RATE, AudioError, decode_audio, sniff_format
from tests.support import speech


@pytest.fixture(scope="module")
def sentence(tmp_path_factory) -> tuple[np.ndarray, bytes]:
    path = speech.speak(speech.ENGLISH[0], "en", tmp_path_factory.mktemp("audio") / "s.wav")
    return speech.samples(path), path.read_bytes()


@pytest.mark.parametrize("container", list(speech.CONTAINERS))
def test_every_openai_format_decodes_to_the_same_audio(sentence, container, tmp_path):
    samples, _ = sentence
    data = speech.encode(samples, container, tmp_path / f"s.{container}").read_bytes()
    decoded = decode_audio(data, max_seconds=60)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # lossy codecs pad a few milliseconds at either end
    assert abs(len(decoded) - len(samples)) < 0.1 * SAMPLE_RATE
    n = min(len(decoded), len(samples))
    energy = lambda x: float(np.sqrt(np.mean(x[:n] ** 2)))  # noqa: E731
    assert energy(decoded) == pytest.approx(energy(samples), rel=0.2)


def test_a_resampled_wav_keeps_its_length(sentence):
    samples, raw = sentence  # espeak-ng writes 22.05 kHz
    assert raw[24:28] == (22050).to_bytes(4, "little")
    assert abs(len(samples) / SAMPLE_RATE - (len(raw) - 44) / 2 / 22050) < 0.01


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"hello, this is a text file and not audio at all", "unsupported_format"),
        (b"FORM\x00\x00\x10\x00AIFFCOMM", "unsupported_format"),  # AIFF: audio, but not a format OpenAI takes
        (b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunkjunk", "invalid_audio"),  # a wav header and nothing it can read
        (b"OggS" + bytes(range(256)) * 4, "invalid_audio"),
    ],
    ids=["empty", "text", "aiff", "broken-wav", "garbage-ogg"],
)
def test_bad_files_are_refused_with_a_reason(data, code):
    with pytest.raises(AudioError) as caught:
        decode_audio(data, max_seconds=60)
    assert caught.value.code == code and caught.value.param == "file" and caught.value.status == 400


def test_a_cut_off_file_is_refused(sentence, tmp_path):
    samples, raw = sentence
    with pytest.raises(AudioError) as caught:
        decode_audio(raw[: len(raw) // 2], max_seconds=60)  # the header still says the whole length
    assert caught.value.code == "truncated_file"
    flac = speech.encode(samples, "flac", tmp_path / "s.flac").read_bytes()
    with pytest.raises(AudioError):
        decode_audio(flac[: len(flac) // 3], max_seconds=60)


def test_audio_over_the_duration_limit_is_refused(sentence, tmp_path):
    samples, raw = sentence
    with pytest.raises(AudioError) as caught:
        decode_audio(raw, max_seconds=1)
    assert caught.value.code == "audio_too_long"
    # a stream without a stated duration (raw mp3 frames) is cut off while it decodes
    mp3 = speech.encode(samples, "mp3", tmp_path / "s.mp3").read_bytes()
    with pytest.raises(AudioError) as caught:
        decode_audio(mp3, max_seconds=1)
    assert caught.value.code == "audio_too_long"


def test_formats_are_told_by_their_bytes_not_their_names():
    assert sniff_format(b"RIFF\x00\x00\x00\x00WAVE") == "wav"
    assert sniff_format(b"\x00\x00\x00\x20ftypM4A ") == "mp4"
    assert sniff_format(b"\x1a\x45\xdf\xa3") == "matroska"
    assert sniff_format(b"#EXTM3U\nhttp://example.com/a.mp3") is None  # a playlist is never opened
