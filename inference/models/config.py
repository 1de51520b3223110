"""Typed model configs, built from an HF ``config.json`` dict and validated on construction.

``from_hf`` reads both ways transformers has stored RoPE settings: v4's top-level ``rope_theta`` /
``rope_scaling`` and v5's ``rope_parameters`` (flat for Llama / Qwen2, nested per layer type for
Gemma 3). Anything we cannot run faithfully is rejected here with a message naming the field,
rather than producing a model that silently computes something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.layers.activation import ACTIVATIONS
from inference.layers.rotary import ROPE_TYPES, RopeParams

GEMMA3_LAYER_TYPES = ("sliding_attention", "full_attention")


class ConfigError(ValueError):
    """A config.json we cannot build a model from; the message names the field and the problem."""


def _require(hf: dict[str, Any], key: str, owner: str) -> Any:
    if hf.get(key) is None:
        raise ConfigError(f"{owner}: config.json has no {key!r}")
    return hf[key]


def _check_activation(owner: str, field: str, name: str) -> None:
    if name not in ACTIVATIONS:
        raise ConfigError(f"{owner}: {field} {name!r} is not supported ({', '.join(ACTIVATIONS)})")


def _check_heads(owner: str, hidden_size: int, num_attention_heads: int) -> None:
    """Encoders split ``hidden_size`` evenly over the heads."""
    if hidden_size % num_attention_heads:
        raise ConfigError(
            f"{owner}: hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})"
        )


def _check_positive(owner: str, **values: int | float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{owner}: {name} must be > 0, got {value!r}")


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, kw_only=True)
class RopeConfig(RopeParams):
    """The rotary layer's ``RopeParams`` (theta, type, scaling), read from an HF config and validated."""

    def __post_init__(self) -> None:
        if self.type not in ROPE_TYPES:
            raise ConfigError(f"rope type {self.type!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
        _check_positive("rope", theta=self.theta, factor=self.factor)
        if self.type in ("llama3", "yarn", "dynamic"):
            if self.original_max_position_embeddings is None:
                raise ConfigError(f"{self.type} rope needs original_max_position_embeddings")
            _check_positive(f"{self.type} rope", original_max_position_embeddings=self.original_max_position_embeddings)
        if self.type == "llama3" and not self.high_freq_factor > self.low_freq_factor > 0:
            raise ConfigError(
                f"llama3 rope needs high_freq_factor > low_freq_factor > 0, "
                f"got {self.high_freq_factor} and {self.low_freq_factor}"
            )
        if self.type in ("yarn", "dynamic") and self.factor < 1:
            raise ConfigError(f"{self.type} rope: factor must be >= 1 (it stretches the context), got {self.factor}")
        if self.type == "yarn":
            if self.attention_factor is not None:
                _check_positive("yarn rope", attention_factor=self.attention_factor)
            if not self.beta_fast > self.beta_slow > 0:
                raise ConfigError(
                    f"yarn rope needs beta_fast > beta_slow > 0, got beta_fast={self.beta_fast} and "
                    f"beta_slow={self.beta_slow}"
                )
            for name in ("mscale", "mscale_all_dim"):
                value = getattr(self, name)
                if value is not None and value < 0:
                    raise ConfigError(f"yarn rope: {name} must be >= 0, got {value}")

    @classmethod
    def from_hf(cls, params: dict[str, Any] | None, theta: float, max_position_embeddings: int) -> RopeConfig:
        """``params``: a v5 ``rope_parameters`` dict or a v4 ``rope_scaling`` dict (or None); ``theta``: the
        base to use when ``params`` carries no ``rope_theta``. Defaults as transformers fills them in."""
        params = params or {}
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise ConfigError(f"partial_rotary_factor={params['partial_rotary_factor']} is not supported")
        rope_type = params.get("rope_type", params.get("type", "default"))
        original = params.get("original_max_position_embeddings", max_position_embeddings)
        factor = params.get("factor", 1.0)
        if rope_type == "yarn" and factor is None:  # as transformers (DeepSeek-V3): the ratio of the contexts
            factor = max_position_embeddings / original
        if factor is None and rope_type != "default":
            raise ConfigError(f"{rope_type} rope needs a factor")
        if rope_type == "dynamic":  # transformers' dynamic NTK divides by the config's own context
            original = max_position_embeddings
        return cls(
            theta=float(params.get("rope_theta", theta)),
            type=rope_type,
            factor=float(factor) if rope_type != "default" else 1.0,
            low_freq_factor=float(params.get("low_freq_factor", 1.0)),
            high_freq_factor=float(params.get("high_freq_factor", 4.0)),
            original_max_position_embeddings=original,
            attention_factor=_float_or_none(params.get("attention_factor")),
            mscale=_float_or_none(params.get("mscale")),
            mscale_all_dim=_float_or_none(params.get("mscale_all_dim")),
            beta_fast=float(params.get("beta_fast") or 32.0),  # `or`: transformers treats null (and 0) as unset
            beta_slow=float(params.get("beta_slow") or 1.0),
            truncate=bool(params.get("truncate", True)),
        )


def _flat_rope(hf: dict[str, Any], max_pos: int) -> RopeConfig:
    """Llama-style single rope: v5 ``rope_parameters`` wins over v4 ``rope_scaling`` / ``rope_theta``."""
    params = {**(hf.get("rope_scaling") or {}), **(hf.get("rope_parameters") or {})}
    if hf.get("partial_rotary_factor") is not None:
        params.setdefault("partial_rotary_factor", hf["partial_rotary_factor"])
    return RopeConfig.from_hf(params, theta=hf.get("rope_theta", 10_000.0), max_position_embeddings=max_pos)


@dataclass(kw_only=True)
class DecoderConfig:
    """What every decoder-only model here shares; the fields the engine reads are part of the interface."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rope: RopeConfig = field(default_factory=RopeConfig)
    rms_norm_eps: float = 1e-6
    hidden_act: str = "silu"
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    # per layer: the attention window (a query at p sees keys p-w < pos <= p) or None for full attention;
    # left empty it means no sliding window anywhere
    sliding_windows: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_positive(
            owner,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps,
        )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"{owner}: num_attention_heads ({self.num_attention_heads}) must be divisible by "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim % 2:
            raise ConfigError(f"{owner}: head_dim must be even for rotary embeddings, got {self.head_dim}")
        _check_activation(owner, "hidden_act", self.hidden_act)
        if not self.sliding_windows:
            self.sliding_windows = [None] * self.num_hidden_layers
        if len(self.sliding_windows) != self.num_hidden_layers:
            raise ConfigError(
                f"{owner}: {len(self.sliding_windows)} sliding windows for {self.num_hidden_layers} layers"
            )
        for window in self.sliding_windows:
            if window is not None and window <= 0:
                raise ConfigError(f"{owner}: sliding windows must be > 0 or None, got {window!r}")

    @property
    def context_length(self) -> int:
        """The longest sequence the model serves: ``max_position_embeddings``, or the context a rope that stretches
        it names, as vLLM reads it (yarn: the original context times the factor, e.g. Qwen2.5's 32k x 4; dynamic
        NTK: the context times the factor, the length its frequencies are fixed at)."""
        rope = self.rope
        if rope.type == "yarn":
            return max(self.max_position_embeddings, int(rope.original_max_position_embeddings * rope.factor))
        if rope.type == "dynamic":
            return int(self.max_position_embeddings * rope.factor)
        return self.max_position_embeddings

    @staticmethod
    def _common_from_hf(hf: dict[str, Any], owner: str) -> dict[str, Any]:
        """The fields every decoder reads the same way from config.json."""
        hidden = _require(hf, "hidden_size", owner)
        heads = _require(hf, "num_attention_heads", owner)
        max_pos = hf.get("max_position_embeddings", 2048)
        return dict(
            vocab_size=_require(hf, "vocab_size", owner),
            hidden_size=hidden,
            intermediate_size=_require(hf, "intermediate_size", owner),
            num_hidden_layers=_require(hf, "num_hidden_layers", owner),
            num_attention_heads=heads,
            num_key_value_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hidden // heads,
            max_position_embeddings=max_pos,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
        )


@dataclass(kw_only=True)
class LlamaConfig(DecoderConfig):
    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> LlamaConfig:
        common = cls._common_from_hf(hf, cls.__name__)
        bias = bool(hf.get("attention_bias", False))
        return cls(
            **common,
            rope=_flat_rope(hf, common["max_position_embeddings"]),
            hidden_act=hf.get("hidden_act", "silu"),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=bias,
            o_bias=bias,
            mlp_bias=bool(hf.get("mlp_bias", False)),
        )


@dataclass(kw_only=True)
class MistralConfig(LlamaConfig):
    """Llama's layers with an optional sliding window on every layer (Mistral 7B v0.1; null from v0.2 on)."""

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> MistralConfig:
        base = LlamaConfig.from_hf(hf)
        window = hf.get("sliding_window")
        return cls(**{**base.__dict__, "sliding_windows": [window] * base.num_hidden_layers if window else []})


def _qwen_sliding_windows(hf: dict[str, Any], layers: int) -> list[int | None]:
    """Qwen2 / Qwen3's per-layer windows, as transformers derives them: none unless ``use_sliding_window``; then
    explicit layer_types, else sliding from layer max_window_layers on."""
    if not (hf.get("use_sliding_window") and hf.get("sliding_window")):
        return [None] * layers
    first = hf.get("max_window_layers", 28)
    types = hf.get("layer_types") or ["sliding_attention" if i >= first else "full_attention" for i in range(layers)]
    return [hf["sliding_window"] if t == "sliding_attention" else None for t in types]


def _qwen_fields(hf: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """What Qwen2 and Qwen3 read alike besides the common fields: rope, activation, tying, sliding windows."""
    return dict(
        **common,
        rope=_flat_rope(hf, common["max_position_embeddings"]),
        hidden_act=hf.get("hidden_act", "silu"),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        sliding_windows=_qwen_sliding_windows(hf, common["num_hidden_layers"]),
    )


@dataclass(kw_only=True)
class Qwen2Config(DecoderConfig):
    qkv_bias: bool = True  # Qwen2: biases on q/k/v, none on o_proj

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> Qwen2Config:
        return cls(**_qwen_fields(hf, cls._common_from_hf(hf, cls.__name__)))


@dataclass(kw_only=True)
class Qwen3Config(DecoderConfig):
    """Qwen3: Llama's layers with RMSNorm over each head's q and k (the model's concern, nothing to configure),
    an explicit head_dim (transformers' default 128 when absent), ``attention_bias`` on q/k/v and o, and Qwen2's
    optional sliding window."""

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> Qwen3Config:
        common = cls._common_from_hf(hf, cls.__name__)
        common["head_dim"] = hf.get("head_dim") or 128
        bias = bool(hf.get("attention_bias", False))
        return cls(**_qwen_fields(hf, common), qkv_bias=bias, o_bias=bias)


@dataclass(kw_only=True)
class Gemma3TextConfig(DecoderConfig):
    hidden_act: str = "gelu_pytorch_tanh"
    tie_word_embeddings: bool = True
    query_pre_attn_scalar: float = 256.0  # attention scale is query_pre_attn_scalar ** -0.5
    sliding_window: int = 4096
    # per layer "sliding_attention" or "full_attention"; empty: transformers' default, every 6th layer full
    layer_types: list[str] = field(default_factory=list)
    rope_local: RopeConfig = field(default_factory=RopeConfig)  # sliding layers; `rope` is for full layers
    final_logit_softcapping: float | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if not self.layer_types:
            self.layer_types = [
                "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(self.num_hidden_layers)
            ]
        if len(self.layer_types) != self.num_hidden_layers:
            raise ConfigError(f"{owner}: {len(self.layer_types)} layer_types for {self.num_hidden_layers} layers")
        unknown = sorted(set(self.layer_types) - set(GEMMA3_LAYER_TYPES))
        if unknown:
            raise ConfigError(f"{owner}: unknown layer_types {unknown} (known: {', '.join(GEMMA3_LAYER_TYPES)})")
        _check_positive(owner, query_pre_attn_scalar=self.query_pre_attn_scalar, sliding_window=self.sliding_window)
        if self.final_logit_softcapping is not None:
            _check_positive(owner, final_logit_softcapping=self.final_logit_softcapping)
        self.sliding_windows = [self.sliding_window if t == "sliding_attention" else None for t in self.layer_types]
        super().__post_init__()

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> Gemma3TextConfig:
        owner = cls.__name__
        if hf.get("attn_logit_softcapping") is not None:
            raise ConfigError(f"{owner}: attn_logit_softcapping is not supported by our Attention")
        if hf.get("use_bidirectional_attention"):
            raise ConfigError(f"{owner}: use_bidirectional_attention (embedding Gemma) is not supported")
        common = cls._common_from_hf(hf, owner)
        max_pos = common["max_position_embeddings"]
        params = hf.get("rope_parameters") or {}
        if set(params) & set(GEMMA3_LAYER_TYPES):  # v5: one dict per layer type
            global_params, local_params = params.get("full_attention"), params.get("sliding_attention")
        else:  # v4: rope_theta / rope_scaling for full layers, rope_local_base_freq for sliding ones
            global_params, local_params = {**(hf.get("rope_scaling") or {}), **params}, None
        pattern = hf.get("sliding_window_pattern") or hf.get("_sliding_window_pattern") or 6
        layer_types = hf.get("layer_types") or [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
            for i in range(common["num_hidden_layers"])
        ]
        bias = bool(hf.get("attention_bias", False))
        return cls(
            **common,
            rope=RopeConfig.from_hf(global_params, hf.get("rope_theta", 1_000_000.0), max_pos),
            rope_local=RopeConfig.from_hf(local_params, hf.get("rope_local_base_freq", 10_000.0), max_pos),
            hidden_act=hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh",
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
            qkv_bias=bias,
            o_bias=bias,
            query_pre_attn_scalar=hf.get("query_pre_attn_scalar", 256),
            sliding_window=hf.get("sliding_window") or 4096,
            layer_types=layer_types,
            final_logit_softcapping=hf.get("final_logit_softcapping"),
        )
