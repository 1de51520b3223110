"""Whisper's log-mel front end in torch: 25 ms Hann windows every 10 ms, a Slaney mel bank, log10, clipped to 8
below the maximum, scaled to about [-1, 1] (what transformers' ``WhisperFeatureExtractor`` and OpenAI's
``log_mel_spectrogram`` compute). 80 mel bins for Whisper up to large-v2, 128 for large-v3.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from inference.audio.decode import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
CHUNK_SECONDS = 30
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE  # 480000
CHUNK_FRAMES = CHUNK_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's scale: linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = 3.0 * hz / 200.0
    log_step = 27.0 / np.log(6.4)
    above = hz >= 1000.0
    return np.where(above, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * log_step, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), 200.0 * mel / 3.0)


@functools.cache
def mel_filters(n_mels: int) -> np.ndarray:
    """[n_freq = 201, n_mels] triangular filters from 0 to 8 kHz, each scaled to unit area (Slaney's norm)."""
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(8000.0), n_mels + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]  # [n_freq, n_mels + 2]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    bank = np.maximum(0.0, np.minimum(rising, falling))
    return bank * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def log_mel(samples: torch.Tensor, n_mels: int) -> torch.Tensor:
    """[num_samples] or [B, num_samples] float32 at 16 kHz -> [n_mels, frames] / [B, n_mels, frames] with
    frames = num_samples // 160; the 8-below-max clip is taken per row, over all of its frames."""
    window = torch.hann_window(N_FFT, device=samples.device)
    stft = torch.stft(samples.float(), N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2  # [..., n_freq, frames]: the last frame is dropped, as Whisper does
    bank = torch.from_numpy(mel_filters(n_mels)).to(samples.device, torch.float32)
    spec = torch.clamp(bank.T @ power, min=1e-10).log10()
    peak = spec.amax(dim=(-2, -1), keepdim=True)
    return (torch.maximum(spec, peak - 8.0) + 4.0) / 4.0


def padded_log_mel(samples: np.ndarray, n_mels: int) -> torch.Tensor:
    """The whole recording's features with 30 s of silence after it, so that every window (``window_at``) has
    its full 3000 frames: [n_mels, len(samples) // 160 + 3000]. For a recording under 30 s its first window
    equals ``WhisperFeatureExtractor``'s features for it (the silence never raises the maximum)."""
    padded = np.concatenate([samples.astype(np.float32, copy=False), np.zeros(CHUNK_SAMPLES, np.float32)])
    return log_mel(torch.from_numpy(padded), n_mels)


def window_at(features: torch.Tensor, frame: int) -> torch.Tensor:
    """The 30 s window starting at mel frame ``frame``: [n_mels, 3000]."""
    return features[:, frame : frame + CHUNK_FRAMES]
