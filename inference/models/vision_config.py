"""Typed configs of the vision-language models: the CLIP vision tower and LLaVA (1.5 and NeXT) around a decoder.

Built from an HF ``config.json`` (``model_type`` llava / llava_next) and validated on construction, like
``inference.models.config``: what we cannot run faithfully is refused here, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.models.config import (
    ConfigError,
    DecoderConfig,
    LlamaConfig,
    MistralConfig,
    _check_activation,
    _check_heads,
    _check_positive,
    _require,
)

FEATURE_STRATEGIES = ("default", "full")  # default: drop CLS from the tower's features; full: keep it


@dataclass(kw_only=True)
class CLIPVisionConfig:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    image_size: int  # the square tile the tower sees (336 for LLaVA 1.5 / 1.6)
    patch_size: int
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_positive(
            owner, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            image_size=self.image_size, patch_size=self.patch_size, num_channels=self.num_channels,
        )  # fmt: skip
        _check_heads(owner, self.hidden_size, self.num_attention_heads)
        if self.image_size % self.patch_size:
            raise ConfigError(f"{owner}: image_size ({self.image_size}) must be a multiple of patch_size")
        _check_activation(owner, "hidden_act", self.hidden_act)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid(self) -> int:
        """Patches per side of one tile."""
        return self.image_size // self.patch_size

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> CLIPVisionConfig:
        owner = cls.__name__
        if hf.get("model_type", "clip_vision_model") != "clip_vision_model":
            raise ConfigError(f"LLaVA vision tower {hf.get('model_type')!r} is not supported (supported: CLIP)")
        for key in ("image_size", "patch_size"):
            if isinstance(hf.get(key), (list, tuple)):
                raise ConfigError(f"{owner}: a non-square {key} is not supported")
        return cls(
            hidden_size=hf.get("hidden_size", 768),
            intermediate_size=hf.get("intermediate_size", 3072),
            num_hidden_layers=hf.get("num_hidden_layers", 12),
            num_attention_heads=hf.get("num_attention_heads", 12),
            image_size=hf.get("image_size", 224),
            patch_size=hf.get("patch_size", 32),
            num_channels=hf.get("num_channels", 3),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-5),
            hidden_act=hf.get("hidden_act", "quick_gelu"),
        )


TEXT_CONFIGS: dict[str, type[DecoderConfig]] = {"llama": LlamaConfig, "mistral": MistralConfig}


@dataclass(kw_only=True)
class LlavaConfig:
    """LLaVA-1.5; with ``image_grid_pinpoints`` set, LLaVA-NeXT (any-resolution tiles and an image newline)."""

    text: DecoderConfig
    text_model_type: str  # llama | mistral (Vicuna is llama)
    vision: CLIPVisionConfig
    image_token_id: int
    vision_feature_layers: list[int]  # indices into the tower's hidden states (0 = the embeddings), concatenated
    feature_strategy: str = "default"
    projector_hidden_act: str = "gelu"
    projector_bias: bool = True
    image_grid_pinpoints: list[tuple[int, int]] = field(default_factory=list)  # (height, width); NeXT only

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if self.feature_strategy not in FEATURE_STRATEGIES:
            raise ConfigError(f"{owner}: vision_feature_select_strategy must be one of {FEATURE_STRATEGIES}")
        _check_activation(owner, "projector_hidden_act", self.projector_hidden_act)
        depth = self.vision.num_hidden_layers
        for layer in self.vision_feature_layers:
            if not -(depth + 1) <= layer <= depth:
                raise ConfigError(f"{owner}: vision_feature_layer {layer} is outside the tower's {depth} layers")
        if not 0 <= self.image_token_id:
            raise ConfigError(f"{owner}: image_token_index must be >= 0")
        for height, width in self.image_grid_pinpoints:
            if height % self.vision.image_size or width % self.vision.image_size:
                raise ConfigError(
                    f"{owner}: image_grid_pinpoints must be multiples of the tile ({self.vision.image_size})"
                )

    @property
    def is_next(self) -> bool:
        return bool(self.image_grid_pinpoints)

    @property
    def feature_layer_indices(self) -> list[int]:
        """The hidden-state indices as non-negative numbers (the tower has num_hidden_layers + 1 of them)."""
        n = self.vision.num_hidden_layers + 1
        return [layer % n for layer in self.vision_feature_layers]

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> LlavaConfig:
        owner = cls.__name__
        text_hf = dict(_require(hf, "text_config", owner))
        text_type = text_hf.get("model_type", "llama")
        if text_type not in TEXT_CONFIGS:
            raise ConfigError(
                f"{owner}: language model {text_type!r} is not supported (supported: {', '.join(TEXT_CONFIGS)})"
            )
        layers = hf.get("vision_feature_layer", -2)
        pinpoints = hf.get("image_grid_pinpoints") or []
        if hf.get("model_type") == "llava_next" and not pinpoints:
            raise ConfigError(f"{owner}: a llava_next config needs image_grid_pinpoints")
        if hf.get("model_type") == "llava" and pinpoints:
            pinpoints = []  # 1.5 configs may carry the field unused
        token = hf.get("image_token_id", hf.get("image_token_index"))
        if token is None:
            raise ConfigError(f"{owner}: config.json has no image_token_index")
        return cls(
            text=TEXT_CONFIGS[text_type].from_hf(text_hf),
            text_model_type=text_type,
            vision=CLIPVisionConfig.from_hf(_require(hf, "vision_config", owner)),
            image_token_id=int(token),
            vision_feature_layers=[layers] if isinstance(layers, int) else list(layers),
            feature_strategy=hf.get("vision_feature_select_strategy", "default"),
            projector_hidden_act=hf.get("projector_hidden_act", "gelu"),
            projector_bias=bool(hf.get("multimodal_projector_bias", True)),
            image_grid_pinpoints=[(int(h), int(w)) for h, w in pinpoints],
        )
