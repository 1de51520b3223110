"""VITS text to speech (HF ``VitsModel``: Meta's MMS-TTS, kakao-enterprise's VITS): a text encoder with relative
attention, a duration predictor, a flow from the prior's latents to the spectrogram's and a HiFi-GAN vocoder, in
one pass an utterance (``synthesize``). Noise comes from the request's own generator, in the order transformers
draws it, so an utterance does not depend on what else the service is saying, and a seed repeats it.

Checkpoints load as HF saves them: weight norm (``weight_g``/``weight_v``, or ``parametrizations.weight.original0/1``)
is folded into plain weights; what only trains (the posterior encoder and flows) is skipped."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers.activation import get_activation
from inference.layers.linear import load_hf_weights
from inference.models.vits_config import VitsConfig
from inference.models.vits_flows import (
    VitsDurationPredictor,
    VitsResidualCouplingBlock,
    VitsStochasticDurationPredictor,
)


class VitsAttention(nn.Module):
    """Self-attention with relative position embeddings for keys and values, ``window_size`` positions each side."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.heads, self.window = config.num_attention_heads, config.window_size
        self.head_dim = config.hidden_size // self.heads
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (
            nn.Linear(config.hidden_size, config.hidden_size, bias=config.use_bias) for _ in range(4)
        )
        if self.window:
            self.emb_rel_k = nn.Parameter(torch.empty(1, 2 * self.window + 1, self.head_dim))
            self.emb_rel_v = nn.Parameter(torch.empty(1, 2 * self.window + 1, self.head_dim))

    def _relative(self, table: torch.Tensor, length: int) -> torch.Tensor:
        """[1, 2 * length - 1, head_dim]: the embedding of each offset -(length - 1) .. length - 1 (zero past the
        window)."""
        pad = max(length - (self.window + 1), 0)
        table = F.pad(table, (0, 0, pad, pad))
        start = max(self.window + 1 - length, 0)
        return table[:, start : start + 2 * length - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [1, T, hidden] → [1, T, hidden]."""
        _, length, hidden = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # [heads, T, head_dim]
            return t.view(length, self.heads, self.head_dim).transpose(0, 1)

        q = heads(self.q_proj(x) * self.head_dim**-0.5)
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        scores = torch.bmm(q, k.transpose(1, 2))  # [heads, T, T]
        if self.window:
            relative = torch.matmul(q, self._relative(self.emb_rel_k, length).transpose(-2, -1))  # [heads, T, 2T-1]
            # row i's offsets -(T-1)..T-1 to its absolute columns: column j is offset j - i
            scores = scores + _relative_to_absolute(relative)
        probs = torch.softmax(scores, dim=-1)
        out = torch.bmm(probs, v)
        if self.window:
            out = out + torch.matmul(_absolute_to_relative(probs), self._relative(self.emb_rel_v, length))
        return self.out_proj(out.transpose(0, 1).reshape(1, length, hidden))


def _relative_to_absolute(x: torch.Tensor) -> torch.Tensor:
    """[B, T, 2T-1] by offset → [B, T, T] by column (the pad-and-reshape skew of Shaw et al.)."""
    batch, length, _ = x.shape
    flat = F.pad(F.pad(x, (0, 1)).reshape(batch, length * 2 * length), (0, length - 1))
    return flat.view(batch, length + 1, 2 * length - 1)[:, :length, length - 1 :]


def _absolute_to_relative(x: torch.Tensor) -> torch.Tensor:
    """[B, T, T] by column → [B, T, 2T-1] by offset."""
    batch, length, _ = x.shape
    flat = F.pad(F.pad(x, (0, length - 1)).reshape(batch, length * (2 * length - 1)), (length, 0))
    return flat.view(batch, length, 2 * length)[:, :, 1:]


class VitsFeedForward(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.conv_1 = nn.Conv1d(config.hidden_size, config.ffn_dim, config.ffn_kernel_size)
        self.conv_2 = nn.Conv1d(config.ffn_dim, config.hidden_size, config.ffn_kernel_size)
        self.act = get_activation(config.hidden_act)
        k = config.ffn_kernel_size
        self.padding = ((k - 1) // 2, k // 2)  # "same" length, the extra on the right for an even kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv_1(F.pad(x.transpose(1, 2), self.padding)))
        return self.conv_2(F.pad(h, self.padding)).transpose(1, 2)


class VitsEncoderLayer(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.attention = VitsAttention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = VitsFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.attention(x))  # post-norm
        return self.final_layer_norm(x + self.feed_forward(x))


class VitsEncoder(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.layers = nn.ModuleList(VitsEncoderLayer(config) for _ in range(config.num_hidden_layers))


class VitsTextEncoder(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.scale = math.sqrt(config.hidden_size)
        self.flow_size = config.flow_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.encoder = VitsEncoder(config)
        self.project = nn.Conv1d(config.hidden_size, config.flow_size * 2, kernel_size=1)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``ids`` [1, T] → hidden [1, hidden, T], the prior's means and log deviations [1, flow, T]."""
        x = self.embed_tokens(ids) * self.scale
        for layer in self.encoder.layers:
            x = layer(x)
        x = x.transpose(1, 2)
        means, log_deviations = torch.split(self.project(x), self.flow_size, dim=1)
        return x, means, log_deviations


def _planar(conv: nn.Conv1d | nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on ``x`` [1, C, 1, T] laid out channels last: as a (1, k) 2D convolution, which oneDNN runs 1.1x to
    5x faster than the 1D one on this vocoder's shapes (the most on its long, narrow last stages)."""
    weight = conv.weight.unsqueeze(2)
    if isinstance(conv, nn.ConvTranspose1d):
        return F.conv_transpose2d(x, weight, conv.bias, stride=(1, conv.stride[0]), padding=(0, conv.padding[0]))
    return F.conv2d(x, weight, conv.bias, padding=(0, conv.padding[0]), dilation=(1, conv.dilation[0]),
                    groups=conv.groups)  # fmt: skip


class HifiGanResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], slope: float):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                              padding=(kernel_size * d - d) // 2) for d in dilations)  # fmt: skip
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
                                    for _ in dilations)  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [1, C, 1, T] channels last."""
        for conv1, conv2 in zip(self.convs1, self.convs2, strict=True):
            x = x + _planar(conv2, F.leaky_relu(_planar(conv1, F.leaky_relu(x, self.slope)), self.slope))
        return x


class VitsHifiGan(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.slope = config.leaky_relu_slope
        self.kernels = len(config.resblock_kernel_sizes)
        start = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.flow_size, start, kernel_size=7, padding=3)
        self.upsampler = nn.ModuleList(
            nn.ConvTranspose1d(start // 2**i, start // 2 ** (i + 1), kernel, stride=rate, padding=(kernel - rate) // 2)
            for i, (rate, kernel) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True))
        )
        self.resblocks = nn.ModuleList(
            HifiGanResidualBlock(start // 2 ** (i + 1), kernel, dilations, self.slope)
            for i in range(len(self.upsampler))
            for kernel, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True)
        )
        self.conv_post = nn.Conv1d(start // 2 ** len(self.upsampler), 1, kernel_size=7, padding=3, bias=False)
        self.reach = _reach(config)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, start, 1)

    def forward(self, latents: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """[1, flow, frames] → the waveform [1, frames * hop], in [-1, 1]."""
        x = self.conv_pre(latents)
        if speaker is not None:
            x = x + self.cond(speaker)
        x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # [1, C, 1, T]: see _planar
        for i, up in enumerate(self.upsampler):
            x = _planar(up, F.leaky_relu(x, self.slope))
            blocks = self.resblocks[i * self.kernels : (i + 1) * self.kernels]
            x = sum(block(x) for block in blocks) / self.kernels
        return torch.tanh(_planar(self.conv_post, F.leaky_relu(x)))[:, 0, 0]  # the default slope here, as VITS


def _reach(config: VitsConfig) -> int:
    """Spectrogram frames each side of a frame that its samples depend on through the vocoder (its receptive field,
    rounded up), two more to spare: each convolution's reach at its stage's resolution, summed."""
    frames, resolution = 3.0, 1  # conv_pre: kernel 7
    for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
        frames += math.ceil(kernel / rate) / resolution  # the transposed convolution, at its input's resolution
        resolution *= rate
        frames += max(sum((k - 1) // 2 * (d + 1) for d in dilations)  # convs1 dilated d, convs2 not
                      for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes,
                                              strict=True)) / resolution  # fmt: skip
    return math.ceil(frames + 3 / resolution) + 2  # conv_post: kernel 7


class VitsModel(nn.Module):
    config_class = VitsConfig

    def __init__(self, config: VitsConfig):
        super().__init__()
        self.config = config
        self.text_encoder = VitsTextEncoder(config)
        self.flow = VitsResidualCouplingBlock(config)
        self.decoder = VitsHifiGan(config)
        stochastic = config.use_stochastic_duration_prediction
        self.duration_predictor = (VitsStochasticDurationPredictor if stochastic else VitsDurationPredictor)(config)
        if config.num_speakers > 1:
            self.embed_speaker = nn.Embedding(config.num_speakers, config.speaker_embedding_size)

    @torch.inference_mode()
    def synthesize(self, ids: list[int], speaker: int = 0, speaking_rate: float | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """Token ids → the waveform [samples] float32 at ``config.sampling_rate``. ``speaking_rate`` scales the
        durations (the config's by default); ``generator`` draws the duration and prior noise."""
        latents, voice = self.spectrogram(ids, speaker, speaking_rate, generator)
        return self.vocode(latents, voice)

    @torch.inference_mode()
    def vocode(self, latents: torch.Tensor, voice: torch.Tensor | None, start: int = 0,
               stop: int | None = None) -> torch.Tensor:  # fmt: skip
        """The waveform of frames [start, stop) of ``latents`` [1, flow, frames]: the vocoder run on them and on
        ``decoder.reach`` frames of context each side, which every sample of theirs depends on, so that the pieces of a
        spectrogram vocoded one after another make the waveform vocoding it whole would (to float rounding)."""
        frames = latents.shape[-1]
        stop = frames if stop is None else min(stop, frames)
        low, high = max(0, start - self.decoder.reach), min(frames, stop + self.decoder.reach)
        wave = self.decoder(latents[..., low:high], voice)[0].float()
        hop = self.config.hop_length
        return wave[(start - low) * hop : (stop - low) * hop]

    @torch.inference_mode()
    def spectrogram(self, ids: list[int], speaker: int = 0, speaking_rate: float | None = None,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Token ids → the spectrogram's latents [1, flow, frames] for the vocoder, and the speaker's embedding
        [1, embedding, 1] (None for a model of one speaker)."""
        cfg = self.config
        device = self.text_encoder.embed_tokens.weight.device
        hidden, means, log_deviations = self.text_encoder(torch.tensor([ids], device=device))
        voice = None
        if cfg.num_speakers > 1:
            voice = self.embed_speaker(torch.tensor([speaker], device=device)).unsqueeze(-1)  # [1, embedding, 1]
        noise = None
        if cfg.use_stochastic_duration_prediction:
            noise = torch.randn(1, 2, len(ids), generator=generator).to(device, hidden.dtype) * cfg.noise_scale_duration
        log_durations = self.duration_predictor(hidden, voice, noise)
        rate = speaking_rate or cfg.speaking_rate
        durations = torch.ceil(torch.exp(log_durations[0, 0]) * (1.0 / rate)).long()  # frames per token
        frames = max(int(durations.sum()), 1)
        index = torch.repeat_interleave(torch.arange(len(ids), device=device), durations.clamp_min(0))
        if index.numel() == 0:  # every duration rounded to nothing: one frame of the first token, as transformers
            means, log_deviations = means[..., :1] * 0, log_deviations[..., :1] * 0
            index = torch.zeros(frames, dtype=torch.long, device=device)
        means, log_deviations = means[..., index], log_deviations[..., index]  # [1, flow, frames]
        # drawn into a transposed [1, flow, frames] view: transformers' randn_like fills one laid out so, and
        # normal_ draws differently into it than into a contiguous tensor
        draw = torch.empty(1, means.shape[-1], cfg.flow_size).transpose(1, 2).normal_(generator=generator)
        draw = draw.to(device, means.dtype)
        latents = means + draw * torch.exp(log_deviations) * cfg.noise_scale
        return self.flow.reverse(latents, voice), voice

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        load_hf_weights(self, _folded(weights), skip=_trains_only)


def _trains_only(name: str) -> bool:
    """The posterior encoder and the duration predictor's posterior flows: used in training, never to speak."""
    return name.startswith(("posterior_encoder.", "duration_predictor.post_"))


_NORMED = {"weight_g": "g", "weight_v": "v", "parametrizations.weight.original0": "g",
           "parametrizations.weight.original1": "v"}  # fmt: skip


def _folded(weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """HF names with weight norm's (g, v) pairs folded into each layer's weight: g * v / |v| (the norm over every
    dimension but the first, as ``torch.nn.utils.weight_norm`` with dim 0)."""
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in weights:
        part = next((suffix for suffix in _NORMED if name.endswith("." + suffix)), None)
        if part is None:
            yield name, tensor
            continue
        layer = name[: -len(part) - 1]
        pair = halves.setdefault(layer, {})
        pair[_NORMED[part]] = tensor
        if len(pair) == 2:
            g, v = pair["g"].float(), pair["v"].float()
            norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
            yield f"{layer}.weight", (g * v / norm).to(tensor.dtype)
            del halves[layer]
    if halves:
        raise ValueError(f"weight norm without both halves: {', '.join(sorted(halves))}")
