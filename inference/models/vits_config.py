"""VITS's typed config (text to speech: Kim et al. 2021; Meta's MMS-TTS checkpoints), built from an HF ``config.json``
(``model_type`` vits, architecture ``VitsModel``) and validated on construction, like ``inference.models.config``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.models.config import ConfigError, _check_activation, _check_heads, _check_positive, _require


@dataclass(frozen=True, kw_only=True)
class VitsConfig:
    vocab_size: int
    hidden_size: int = 192
    num_hidden_layers: int = 6
    num_attention_heads: int = 2
    window_size: int | None = 4  # relative attention's reach each side (None: plain attention)
    use_bias: bool = True
    ffn_dim: int = 768
    ffn_kernel_size: int = 3
    hidden_act: str = "relu"
    layer_norm_eps: float = 1e-5
    flow_size: int = 192
    # the duration predictor: stochastic (a normalizing flow sampled with noise) or a plain regression
    use_stochastic_duration_prediction: bool = True
    depth_separable_channels: int = 2
    depth_separable_num_layers: int = 3
    duration_predictor_flow_bins: int = 10
    duration_predictor_tail_bound: float = 5.0
    duration_predictor_kernel_size: int = 3
    duration_predictor_num_flows: int = 4
    duration_predictor_filter_channels: int = 256
    prior_encoder_num_flows: int = 4
    prior_encoder_num_wavenet_layers: int = 4
    wavenet_kernel_size: int = 5
    wavenet_dilation_rate: int = 1
    # the HiFi-GAN vocoder
    upsample_initial_channel: int = 512
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    leaky_relu_slope: float = 0.1
    num_speakers: int = 1
    speaker_embedding_size: int = 0
    speaking_rate: float = 1.0
    noise_scale: float = 0.667
    noise_scale_duration: float = 0.8
    sampling_rate: int = 16000
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_positive(
            owner,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            ffn_dim=self.ffn_dim,
            flow_size=self.flow_size,
            upsample_initial_channel=self.upsample_initial_channel,
            num_speakers=self.num_speakers,
            speaking_rate=self.speaking_rate,
            sampling_rate=self.sampling_rate,
        )
        _check_heads(owner, self.hidden_size, self.num_attention_heads)
        _check_activation(owner, "hidden_act", self.hidden_act)
        if self.flow_size % 2:
            raise ConfigError(f"{owner}: flow_size must be even (its flows split it in halves), got {self.flow_size}")
        if len(self.upsample_rates) != len(self.upsample_kernel_sizes):
            raise ConfigError(f"{owner}: upsample_rates and upsample_kernel_sizes must be as long as each other")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError(f"{owner}: resblock_kernel_sizes and resblock_dilation_sizes must be as long as another")
        if self.upsample_initial_channel % 2 ** len(self.upsample_rates):
            raise ConfigError(f"{owner}: upsample_initial_channel must halve {len(self.upsample_rates)} times")
        if self.num_speakers > 1 and self.speaker_embedding_size <= 0:
            raise ConfigError(f"{owner}: {self.num_speakers} speakers need a speaker_embedding_size")
        if self.duration_predictor_flow_bins * 1e-3 > 1.0:
            raise ConfigError(f"{owner}: duration_predictor_flow_bins too large for the spline's minimal bin")

    @property
    def hop_length(self) -> int:
        """Waveform samples per spectrogram frame: the vocoder's upsampling."""
        hop = 1
        for rate in self.upsample_rates:
            hop *= rate
        return hop

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> VitsConfig:
        owner = "VitsModel"
        ints = ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "ffn_kernel_size", "flow_size",
                "depth_separable_channels", "depth_separable_num_layers", "duration_predictor_flow_bins",
                "duration_predictor_kernel_size", "duration_predictor_num_flows", "duration_predictor_filter_channels",
                "prior_encoder_num_flows", "prior_encoder_num_wavenet_layers", "wavenet_kernel_size",
                "wavenet_dilation_rate", "upsample_initial_channel", "num_speakers", "speaker_embedding_size",
                "sampling_rate")  # fmt: skip
        floats = ("layer_norm_eps", "duration_predictor_tail_bound", "leaky_relu_slope", "speaking_rate",
                  "noise_scale", "noise_scale_duration")  # fmt: skip
        window = hf.get("window_size", 4)
        return cls(
            vocab_size=int(_require(hf, "vocab_size", owner)),
            **{key: int(hf[key]) for key in ints if hf.get(key) is not None},
            **{key: float(hf[key]) for key in floats if hf.get(key) is not None},
            window_size=int(window) if window else None,
            use_bias=bool(hf.get("use_bias", True)),
            hidden_act=hf.get("hidden_act", "relu"),
            use_stochastic_duration_prediction=bool(hf.get("use_stochastic_duration_prediction", True)),
            upsample_rates=tuple(hf.get("upsample_rates", (8, 8, 2, 2))),
            upsample_kernel_sizes=tuple(hf.get("upsample_kernel_sizes", (16, 16, 4, 4))),
            resblock_kernel_sizes=tuple(hf.get("resblock_kernel_sizes", (3, 7, 11))),
            resblock_dilation_sizes=tuple(tuple(d) for d in hf.get("resblock_dilation_sizes", ((1, 3, 5),) * 3)),
            pad_token_id=hf.get("pad_token_id"),
        )
