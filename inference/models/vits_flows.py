"""VITS's flows and duration predictors, as inference runs them (``reverse``: from noise to durations and to the
spectrogram's latents), on one utterance at a time: tensors are [1, channels, frames] and carry no padding.

Parameter names are HF ``VitsModel``'s, so its checkpoints load as they are (weight norm folded by the loader)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.models.vits_config import VitsConfig

MIN_BIN, MIN_DERIVATIVE = 1e-3, 1e-3  # the rational-quadratic spline's floors (Durkan et al. 2019, as VITS trains)


def spline_inverse(inputs: torch.Tensor, widths: torch.Tensor, heights: torch.Tensor, derivatives: torch.Tensor,
                   tail_bound: float) -> torch.Tensor:  # fmt: skip
    """The inverse of a monotonic rational-quadratic spline on [-tail_bound, tail_bound], identity outside it.
    ``inputs`` [...]; ``widths``, ``heights`` [..., bins] unnormalized; ``derivatives`` [..., bins - 1] (the two
    ends get the value that makes the slope 1, as the tails' identity)."""
    inside = (inputs >= -tail_bound) & (inputs <= tail_bound)
    outputs = inputs.clone()
    if not inside.any():
        return outputs
    x, w, h = inputs[inside], widths[inside], heights[inside]
    end = float(np.log(np.exp(1 - MIN_DERIVATIVE) - 1))
    d = F.pad(derivatives[inside], (1, 1), value=end)
    bins = w.shape[-1]
    span = 2 * tail_bound

    def knots(unnormalized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = MIN_BIN + (1 - MIN_BIN * bins) * torch.softmax(unnormalized, dim=-1)
        cumulative = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0) * span - tail_bound
        cumulative[..., 0], cumulative[..., -1] = -tail_bound, tail_bound
        return cumulative, cumulative[..., 1:] - cumulative[..., :-1]

    cumwidths, w = knots(w)
    cumheights, h = knots(h)
    d = MIN_DERIVATIVE + F.softplus(d)
    locations = cumheights.clone()
    locations[..., -1] += 1e-6
    index = (torch.sum(x[..., None] >= locations, dim=-1) - 1)[..., None]

    def at(t: torch.Tensor) -> torch.Tensor:
        return t.gather(-1, index)[..., 0]

    delta = h / w
    x0, bin_width, y0, bin_height, slope = at(cumwidths), at(w), at(cumheights), at(h), at(delta)
    d0, d1 = at(d), d[..., 1:].gather(-1, index)[..., 0]
    bend = d0 + d1 - 2 * slope
    # the root of a quadratic: where in its bin the spline reaches x
    rise = x - y0
    a = bin_height * (slope - d0) + rise * bend
    b = bin_height * d0 - rise * bend
    c = -slope * rise
    root = (2 * c) / (-b - torch.sqrt(b.pow(2) - 4 * a * c))
    outputs[inside] = root * bin_width + x0
    return outputs


class VitsDilatedDepthSeparableConv(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        kernel, channels = config.duration_predictor_kernel_size, config.hidden_size
        self.convs_dilated = nn.ModuleList(
            nn.Conv1d(
                channels,
                channels,
                kernel,
                groups=channels,
                dilation=kernel**i,
                padding=(kernel * kernel**i - kernel**i) // 2,
            )  # fmt: skip
            for i in range(config.depth_separable_num_layers)
        )
        self.convs_pointwise = nn.ModuleList(nn.Conv1d(channels, channels, 1)
                                             for _ in range(config.depth_separable_num_layers))  # fmt: skip
        self.norms_1 = nn.ModuleList(nn.LayerNorm(channels) for _ in range(config.depth_separable_num_layers))
        self.norms_2 = nn.ModuleList(nn.LayerNorm(channels) for _ in range(config.depth_separable_num_layers))

    def forward(self, x: torch.Tensor, conditioning: torch.Tensor | None = None) -> torch.Tensor:
        if conditioning is not None:
            x = x + conditioning
        for dilated, pointwise, norm1, norm2 in zip(self.convs_dilated, self.convs_pointwise, self.norms_1,
                                                    self.norms_2, strict=True):  # fmt: skip
            h = F.gelu(norm1(dilated(x).transpose(1, -1)).transpose(1, -1))
            h = F.gelu(norm2(pointwise(h).transpose(1, -1)).transpose(1, -1))
            x = x + h
        return x


class VitsConvFlow(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.filter_channels = config.hidden_size
        self.half = config.depth_separable_channels // 2
        self.bins = config.duration_predictor_flow_bins
        self.tail_bound = config.duration_predictor_tail_bound
        self.conv_pre = nn.Conv1d(self.half, self.filter_channels, 1)
        self.conv_dds = VitsDilatedDepthSeparableConv(config)
        self.conv_proj = nn.Conv1d(self.filter_channels, self.half * (self.bins * 3 - 1), 1)

    def reverse(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(x, [self.half] * 2, dim=1)
        h = self.conv_proj(self.conv_dds(self.conv_pre(first), conditioning))
        batch, channels, length = first.shape
        h = h.reshape(batch, channels, -1, length).permute(0, 1, 3, 2)  # [1, half, frames, 3 * bins - 1]
        scale = math.sqrt(self.filter_channels)
        second = spline_inverse(second, h[..., : self.bins] / scale, h[..., self.bins : 2 * self.bins] / scale,
                                h[..., 2 * self.bins :], self.tail_bound)  # fmt: skip
        return torch.cat([first, second], dim=1)


class VitsElementwiseAffine(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.translate = nn.Parameter(torch.zeros(config.depth_separable_channels, 1))
        self.log_scale = nn.Parameter(torch.zeros(config.depth_separable_channels, 1))

    def reverse(self, x: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        return (x - self.translate) * torch.exp(-self.log_scale)


class VitsStochasticDurationPredictor(nn.Module):
    """Log durations drawn from noise through the flows run backwards (the posterior flows only train)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        channels = config.hidden_size
        self.conv_pre = nn.Conv1d(channels, channels, 1)
        self.conv_proj = nn.Conv1d(channels, channels, 1)
        self.conv_dds = VitsDilatedDepthSeparableConv(config)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, channels, 1)
        self.flows = nn.ModuleList([VitsElementwiseAffine(config)])
        self.flows.extend(VitsConvFlow(config) for _ in range(config.duration_predictor_num_flows))

    def forward(self, x: torch.Tensor, speaker: torch.Tensor | None, noise: torch.Tensor) -> torch.Tensor:
        """``x`` [1, hidden, tokens]; ``noise`` [1, 2, tokens] (scaled) → log durations [1, 1, tokens]."""
        x = self.conv_pre(x)
        if speaker is not None:
            x = x + self.cond(speaker)
        x = self.conv_proj(self.conv_dds(x))
        flows = list(reversed(self.flows))
        latents = noise
        for flow in flows[:-2] + [flows[-1]]:  # as VITS: the last conv flow before the affine one is skipped
            latents = flow.reverse(torch.flip(latents, [1]), x)
        return latents[:, :1]


class VitsDurationPredictor(nn.Module):
    """Log durations by regression (checkpoints with ``use_stochastic_duration_prediction = false``)."""

    def __init__(self, config: VitsConfig):
        super().__init__()
        kernel, filters = config.duration_predictor_kernel_size, config.duration_predictor_filter_channels
        self.conv_1 = nn.Conv1d(config.hidden_size, filters, kernel, padding=kernel // 2)
        self.norm_1 = nn.LayerNorm(filters, eps=config.layer_norm_eps)
        self.conv_2 = nn.Conv1d(filters, filters, kernel, padding=kernel // 2)
        self.norm_2 = nn.LayerNorm(filters, eps=config.layer_norm_eps)
        self.proj = nn.Conv1d(filters, 1, 1)
        if config.speaker_embedding_size:
            self.cond = nn.Conv1d(config.speaker_embedding_size, config.hidden_size, 1)

    def forward(self, x: torch.Tensor, speaker: torch.Tensor | None, noise: torch.Tensor | None = None) -> torch.Tensor:
        if speaker is not None:
            x = x + self.cond(speaker)
        x = self.norm_1(torch.relu(self.conv_1(x)).transpose(1, -1)).transpose(1, -1)
        x = self.norm_2(torch.relu(self.conv_2(x)).transpose(1, -1)).transpose(1, -1)
        return self.proj(x)


class VitsWaveNet(nn.Module):
    def __init__(self, config: VitsConfig, num_layers: int):
        super().__init__()
        self.hidden_size = hidden = config.hidden_size
        kernel, rate = config.wavenet_kernel_size, config.wavenet_dilation_rate
        if config.speaker_embedding_size:
            self.cond_layer = nn.Conv1d(config.speaker_embedding_size, 2 * hidden * num_layers, 1)
        self.in_layers = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden, kernel, dilation=rate**i, padding=(kernel * rate**i - rate**i) // 2)
            for i in range(num_layers)
        )
        self.res_skip_layers = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden if i < num_layers - 1 else hidden, 1) for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        out = torch.zeros_like(x)
        conditioning = self.cond_layer(speaker) if speaker is not None else None
        last = len(self.in_layers) - 1
        for i, (layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            h = layer(x)
            if conditioning is not None:
                h = h + conditioning[:, i * 2 * self.hidden_size : (i + 1) * 2 * self.hidden_size]
            acts = res_skip(torch.tanh(h[:, : self.hidden_size]) * torch.sigmoid(h[:, self.hidden_size :]))
            if i < last:
                x = x + acts[:, : self.hidden_size]
                out = out + acts[:, self.hidden_size :]
            else:
                out = out + acts
        return out


class VitsResidualCouplingLayer(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.half = config.flow_size // 2
        self.conv_pre = nn.Conv1d(self.half, config.hidden_size, 1)
        self.wavenet = VitsWaveNet(config, config.prior_encoder_num_wavenet_layers)
        self.conv_post = nn.Conv1d(config.hidden_size, self.half, 1)

    def reverse(self, x: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        first, second = torch.split(x, [self.half] * 2, dim=1)
        mean = self.conv_post(self.wavenet(self.conv_pre(first), speaker))
        return torch.cat([first, second - mean], dim=1)  # mean-only coupling: VITS's log scale is zero


class VitsResidualCouplingBlock(nn.Module):
    def __init__(self, config: VitsConfig):
        super().__init__()
        self.flows = nn.ModuleList(VitsResidualCouplingLayer(config) for _ in range(config.prior_encoder_num_flows))

    def reverse(self, x: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        for flow in reversed(self.flows):
            x = flow.reverse(torch.flip(x, [1]), speaker)
        return x
