"""Whisper's typed config, built from an HF ``config.json`` (``model_type`` whisper) and validated on construction,
like ``inference.models.config``: what we cannot run faithfully is refused here, naming the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.models.config import ConfigError, _check_activation, _check_heads, _check_positive, _require

MEL_BINS = (80, 128)  # up to large-v2; large-v3


@dataclass(frozen=True, kw_only=True)
class WhisperConfig:
    vocab_size: int
    num_mel_bins: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int = 1500  # encoder positions: 3000 mel frames, halved by the second convolution
    max_target_positions: int = 448
    activation_function: str = "gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_positive(
            owner,
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            encoder_ffn_dim=self.encoder_ffn_dim,
            decoder_ffn_dim=self.decoder_ffn_dim,
            max_source_positions=self.max_source_positions,
            max_target_positions=self.max_target_positions,
        )
        if self.num_mel_bins not in MEL_BINS:
            raise ConfigError(f"{owner}: num_mel_bins must be one of {MEL_BINS}, got {self.num_mel_bins}")
        _check_heads(owner, self.d_model, self.encoder_attention_heads)
        _check_heads(owner, self.d_model, self.decoder_attention_heads)
        _check_activation(owner, "activation_function", self.activation_function)

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> WhisperConfig:
        owner = "WhisperForConditionalGeneration"
        if hf.get("scale_embedding"):
            raise ConfigError(f"{owner}: scale_embedding = true is not supported")
        keys = ("vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers",
                "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim")  # fmt: skip
        return cls(
            **{key: int(_require(hf, key, owner)) for key in keys},
            max_source_positions=int(hf.get("max_source_positions", 1500)),
            max_target_positions=int(hf.get("max_target_positions", 448)),
            activation_function=hf.get("activation_function", "gelu"),
        )
