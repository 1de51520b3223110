"""Speech for the Whisper tests: sentences spoken by Debian's ``espeak-ng`` (installed by the Makefile with the
test tools), the word error rate, and the packaged Whisper base loaded once per session."""

from __future__ import annotations

import functools
import re
import string
import subprocess
from pathlib import Path

import numpy as np

from tests.support.markers import require

ENGLISH = [
    "Please send the report to my office before noon.",
    "She bought three apples and a loaf of bread at the market.",
    "Our train leaves the station at half past seven.",
    "The children played football in the park after school.",
]
GERMAN = [
    "Ich habe heute keine Zeit.",
    "Ich fahre morgen mit dem Zug nach Berlin.",
    "Meine Schwester wohnt in einer kleinen Stadt.",
]
VOICES = {"en": "en-us", "de": "de"}


def speak(text: str, language: str, path: Path, words_per_minute: int = 140) -> Path:
    """``text`` spoken into a 22.05 kHz mono wav at ``path``."""
    subprocess.run(["espeak-ng", "-v", VOICES[language], "-s", str(words_per_minute), "-w", str(path), text],
                   check=True, capture_output=True)  # fmt: skip
    return path


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def words(text: str) -> list[str]:
    """A text's words as OpenAI's word timestamps give them: split at spaces, the punctuation around each dropped."""
    return [w for w in (word.strip(string.punctuation) for word in text.split()) if w]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length (lower case, punctuation ignored)."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[-1] / max(len(ref), 1)


def samples(path: Path) -> np.ndarray:
    """A file's 16 kHz mono float32 samples, decoded as the service decodes uploads."""
    from inference.audio.decode import decode_audio

    return decode_audio(Path(path).read_bytes(), max_seconds=3600)


def whisper_dir() -> Path:
    """The packaged Whisper base as an HF-format directory (converted once per machine, cached)."""
    return _whisper_dir()


@functools.cache
def _whisper_dir() -> Path:
    from inference.loader.sources import resolve_source

    return resolve_source("packaged:whisper-base")


def whisper():
    """(model, vocab) of the packaged Whisper base, float32, loaded once per session."""
    require("real_model", "loads the packaged Whisper base")
    return _whisper()


def served_whisper():
    """(model, vocab) of the packaged Whisper base as ``make run`` serves it (its default quantization), once."""
    require("real_model", "loads the packaged Whisper base")
    return _served_whisper()


@functools.cache
def _served_whisper():
    from inference.config import DEFAULT_MODELS
    from inference.server.registry import build_model

    model, vocab, _ = build_model(next(spec for spec in DEFAULT_MODELS if spec.kind == "audio"))
    return model, vocab


@functools.cache
def _whisper():
    from inference.loader.safetensors import load_model
    from inference.speech.vocab import WhisperVocab

    return load_model(whisper_dir()), WhisperVocab.from_dir(whisper_dir())


def transcription(samples: np.ndarray, vocab, **options):
    """A ``Transcription`` of 16 kHz ``samples`` (80 mel bins) with ``SpeechOptions(**options)``."""
    from inference.audio.features import padded_log_mel
    from inference.speech.transcription import SpeechOptions, Transcription

    return Transcription(padded_log_mel(samples, 80), len(samples), vocab, SpeechOptions(**options))


def finish_all(engine) -> dict:
    """Step a ``SpeechEngine`` until it is idle -> {request id: its finished ``Transcription``}, in finishing order."""
    done = {}
    while engine.has_work:
        for out in engine.step():
            if out.finish_reason:
                done[out.request_id] = out.transcription
    return done


def openai_whisper():
    """The packaged Whisper base in OpenAI's own ``whisper`` package (the reference for word timestamps): our HF
    conversion's float32 weights under OpenAI's names, with its alignment heads for base."""
    require("real_model", "loads the packaged Whisper base")
    return _openai_whisper()


# HF Whisper names -> OpenAI's (in this order: the layer norms before the attentions they name)
_OPENAI_NAMES = [
    ("model.", ""), ("embed_positions.weight", "positional_embedding"), ("embed_tokens", "token_embedding"),
    (".layers.", ".blocks."), ("encoder.layer_norm", "encoder.ln_post"), ("decoder.layer_norm", "decoder.ln"),
    ("encoder_attn_layer_norm", "cross_attn_ln"), ("self_attn_layer_norm", "attn_ln"), ("final_layer_norm", "mlp_ln"),
    (".fc1", ".mlp.0"), (".fc2", ".mlp.2"), ("encoder_attn.", "cross_attn."), ("self_attn.", "attn."),
    ("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out"),
]  # fmt: skip


@functools.cache
def _openai_whisper():
    import json

    import whisper
    from safetensors.torch import load_file
    from whisper.model import ModelDimensions, Whisper

    def renamed(name: str) -> str:
        for old, new in _OPENAI_NAMES:
            name = name.replace(old, new, 1) if old == "model." else name.replace(old, new)
        return name

    weights = load_file(str(whisper_dir() / "model.safetensors"))
    state = {renamed(k): v.float() for k, v in weights.items() if k != "proj_out.weight"}
    cfg = json.loads((whisper_dir() / "config.json").read_text())
    dims = ModelDimensions(
        n_mels=cfg["num_mel_bins"], n_audio_ctx=cfg["max_source_positions"], n_audio_state=cfg["d_model"],
        n_audio_head=cfg["encoder_attention_heads"], n_audio_layer=cfg["encoder_layers"], n_vocab=cfg["vocab_size"],
        n_text_ctx=cfg["max_target_positions"], n_text_state=cfg["d_model"], n_text_head=cfg["decoder_attention_heads"],
        n_text_layer=cfg["decoder_layers"],
    )  # fmt: skip
    model = Whisper(dims)
    model.load_state_dict(state)
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS["base"])
    return model.eval()


# container -> (PyAV format, codec, sample rate) for the upload formats OpenAI lists
CONTAINERS = {
    "wav": ("wav", "pcm_s16le", 16000),
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
    "mp4": ("mp4", "aac", 16000),
    "webm": ("webm", "libopus", 48000),
}


def encode(samples: np.ndarray, container: str, path: Path) -> Path:
    """16 kHz mono float32 ``samples`` written as a ``container`` file (see CONTAINERS) with PyAV."""
    import av

    fmt, codec, rate = CONTAINERS[container]
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
