"""XLM-RoBERTa encoder (bge-m3, multilingual-e5): BERT's layers with RoBERTa's position ids.

Positions are offset by the padding index: HF's ``create_position_ids_from_input_ids`` numbers the real tokens
``padding_idx + 1, padding_idx + 2, ...`` (rows 0..padding_idx of the table are never used for unpadded input), so
a model with ``max_position_embeddings`` rows takes ``max_position_embeddings - padding_idx - 1`` tokens (bge-m3:
8194 - 2 = 8192). One token type. Weight names are HF's ``XLMRobertaModel`` (with or without ``roberta.``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from inference.layers.linear import load_hf_weights
from inference.models.bert import PACKED_MODULES, BertModel
from inference.models.bert_config import BertConfig
from inference.models.config import ConfigError
from inference.models.pooling import Pooling


@dataclass
class XLMRobertaConfig(BertConfig):
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.pad_token_id < self.max_position_embeddings - 1:
            raise ConfigError(f"{type(self).__name__}: pad_token_id {self.pad_token_id} leaves no position")

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> XLMRobertaConfig:
        hf = {"max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5, **hf}
        base = super().from_hf(hf)
        return dataclasses.replace(base, pad_token_id=hf.get("pad_token_id", 1))


class XLMRobertaModel(BertModel):
    config_class = XLMRobertaConfig
    default_pooling = Pooling("cls", normalize=True)  # bge-m3's dense vectors (its card and modules.json)

    def positions(self, lengths: list[int], device: torch.device) -> torch.Tensor:
        start = self.config.pad_token_id + 1
        return torch.cat([torch.arange(start, start + n, device=device) for n in lengths])

    @property
    def max_input_len(self) -> int:
        return self.config.max_position_embeddings - self.config.pad_token_id - 1

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """HF ``XLMRobertaModel`` names, with or without the ``roberta.`` prefix; the pooler and LM head ignored."""

        def skip(name: str) -> bool:
            return name.startswith(("pooler.", "lm_head.", "classifier.")) or name in (
                "embeddings.position_ids",
                "embeddings.token_type_ids",
            )

        load_hf_weights(self, weights, PACKED_MODULES, skip=skip, rename=lambda n: n.removeprefix("roberta."))
