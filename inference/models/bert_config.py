"""The BERT family's encoder config (BERT, XLM-RoBERTa, JinaBERT and their cross-encoders), built from an HF
``config.json`` dict and validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference.models.config import ConfigError, _check_activation, _check_heads, _check_positive, _require


@dataclass(kw_only=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_positive(
            owner,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
        )
        _check_heads(owner, self.hidden_size, self.num_attention_heads)
        _check_activation(owner, "hidden_act", self.hidden_act)

    # the attention-shape fields the engine reads from every model config
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_key_value_heads(self) -> int:
        return self.num_attention_heads

    @property
    def sliding_windows(self) -> list[int | None]:
        return [None] * self.num_hidden_layers

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> BertConfig:
        owner = cls.__name__
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ConfigError(f"{owner}: position_embedding_type {hf['position_embedding_type']!r} is not supported")
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise ConfigError(f"{owner}: decoder / cross-attention BERT is not supported")
        return cls(
            vocab_size=_require(hf, "vocab_size", owner),
            hidden_size=_require(hf, "hidden_size", owner),
            num_hidden_layers=_require(hf, "num_hidden_layers", owner),
            num_attention_heads=_require(hf, "num_attention_heads", owner),
            intermediate_size=_require(hf, "intermediate_size", owner),
            max_position_embeddings=hf.get("max_position_embeddings", 512),
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_act=hf.get("hidden_act", "gelu"),
        )
