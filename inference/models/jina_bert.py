"""JinaBERT (jina-embeddings-v2-*): BERT with ALiBi instead of position embeddings and a gated (GEGLU) MLP.

The architecture of jinaai/jina-bert-implementation's ``JinaBertModel`` (remote code, not in transformers):
embeddings = LayerNorm(word + token type), no position table; self-attention scores get the symmetric ALiBi bias
-slope_h * |i - j| (the encoder's ``alibi`` buffer), post-LN as BERT; the MLP is
``layernorm(wo(gelu(gated) * non_gated) + x)`` where ``gated_layers`` (no bias) yields [gated | non_gated].
Weight names are HF's (``encoder.layer.N.mlp.gated_layers`` ...), with or without ``bert.``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inference.layers.activation import ActAndMul
from inference.layers.linear import load_hf_weights
from inference.layers.norm import LayerNorm
from inference.models.bert import PACKED_MODULES, BertAttention, BertModel
from inference.models.bert_config import BertConfig
from inference.models.config import ConfigError
from inference.models.pooling import Pooling

FEED_FORWARD = {"geglu": "gelu", "reglu": "relu"}  # feed_forward_type -> activation of the gated half


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's head slopes (Press et al.): 2^(-8 i / n) for i = 1..n when n is a power of two; otherwise those of
    the largest power of two below n, then every other slope of twice that many."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_2(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


@dataclass
class JinaBertConfig(BertConfig):
    max_position_embeddings: int = 8192  # ALiBi: no table, only the longest input served
    feed_forward_type: str = "geglu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feed_forward_type not in FEED_FORWARD:
            raise ConfigError(
                f"{type(self).__name__}: feed_forward_type {self.feed_forward_type!r} is not supported "
                f"(supported: {', '.join(FEED_FORWARD)})"
            )

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> JinaBertConfig:
        if hf.get("position_embedding_type") != "alibi":
            raise ConfigError(f"{cls.__name__}: position_embedding_type must be 'alibi'")
        # BERT's fields otherwise; max_position_embeddings only bounds the input length here
        positions = hf.get("max_position_embeddings", 8192)
        base = super().from_hf({**hf, "position_embedding_type": "absolute", "max_position_embeddings": positions})
        return dataclasses.replace(base, feed_forward_type=hf.get("feed_forward_type", "geglu"))


class JinaBertEmbeddings(nn.Module):
    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class JinaBertGLUMLP(nn.Module):
    """[T, H] -> layernorm(wo(act(gated) * non_gated) + x), gated_layers [T, 2I] = [gated | non_gated]."""

    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = ActAndMul(FEED_FORWARD[config.feed_forward_type])
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.wo(self.act(self.gated_layers(x))) + x)


class JinaBertLayer(nn.Module):
    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.attention = BertAttention(config, alibi_slopes(config.num_attention_heads))
        self.mlp = JinaBertGLUMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attention(x))


class JinaBertEncoder(nn.Module):
    def __init__(self, config: JinaBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(JinaBertLayer(config) for _ in range(config.num_hidden_layers))


class JinaBertModel(BertModel):
    config_class = JinaBertConfig
    default_pooling = Pooling("mean", normalize=True)  # jina-embeddings-v2's card

    def __init__(self, config: JinaBertConfig):
        nn.Module.__init__(self)
        self.config = config
        self.embeddings = JinaBertEmbeddings(config)
        self.encoder = JinaBertEncoder(config)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """HF names of ``JinaBertModel`` (or ``JinaBertForMaskedLM``'s ``bert.*``); pooler and MLM head ignored."""

        def skip(name: str) -> bool:
            return name.startswith(("pooler.", "cls.")) or name in ("embeddings.position_ids", "encoder.alibi")

        load_hf_weights(self, weights, PACKED_MODULES, skip=skip, rename=lambda n: n.removeprefix("bert."))
