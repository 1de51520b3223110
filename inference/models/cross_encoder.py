"""Cross-encoders for rerank: a query and a document read together as one sequence, one relevance logit out.

``BertForSequenceClassification`` (the ms-marco MiniLM cross-encoders): BERT's pooler (dense + tanh on [CLS]),
then ``classifier``. ``XLMRobertaForSequenceClassification`` (bge-reranker-v2-m3): RoBERTa's head on ``<s>``:
``classifier.dense``, tanh, ``classifier.out_proj``. Dropout is the identity at inference. Rerankers ship one
label (a relevance logit); the score clients see is that logit through the activation sentence-transformers'
``CrossEncoder`` applies (its ``activation_fn`` in config.json; sigmoid by default for one label).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from inference.layers.activation import sigmoid
from inference.layers.linear import load_hf_weights
from inference.models.bert import PACKED_MODULES, BertModel
from inference.models.bert_config import BertConfig
from inference.models.config import ConfigError
from inference.models.xlm_roberta import XLMRobertaConfig, XLMRobertaModel

ACTIVATIONS = ("sigmoid", "identity")
_ST_ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "identity"}


def _classifier_fields(hf: dict[str, Any], owner: str) -> dict[str, Any]:
    """``num_labels`` (from ``id2label`` as transformers saves it) and the score's activation."""
    labels = len(hf["id2label"]) if isinstance(hf.get("id2label"), dict) else int(hf.get("num_labels", 2))
    st = hf.get("sentence_transformers") or {}
    name = st.get("activation_fn") or hf.get("sbert_ce_default_activation_function") or "Sigmoid"
    short = str(name).rsplit(".", 1)[-1]
    if short not in _ST_ACTIVATIONS:
        raise ConfigError(f"{owner}: score activation {name!r} is not supported ({', '.join(_ST_ACTIVATIONS)})")
    return {"num_labels": labels, "score_activation": _ST_ACTIVATIONS[short]}


def _check_classifier(config: Any) -> None:
    if config.num_labels != 1:
        raise ConfigError(
            f"{type(config).__name__}: a reranker has one label (a relevance logit); this checkpoint has "
            f"{config.num_labels} (a classifier, which rerank cannot serve)"
        )
    if config.score_activation not in ACTIVATIONS:
        raise ConfigError(f"{type(config).__name__}: score_activation must be one of {', '.join(ACTIVATIONS)}")


@dataclass
class _ClassifierFields:
    """The head's fields, read beside the encoder's own (``from_hf`` of the encoder config that follows in the
    MRO) and validated after them."""

    num_labels: int = 1
    score_activation: str = "sigmoid"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_classifier(self)

    @classmethod
    def from_hf(cls, hf: dict[str, Any]):
        return dataclasses.replace(super().from_hf(hf), **_classifier_fields(hf, cls.__name__))


@dataclass
class BertClassifierConfig(_ClassifierFields, BertConfig):
    pass


@dataclass
class XLMRobertaClassifierConfig(_ClassifierFields, XLMRobertaConfig):
    pass


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    return sigmoid(logits) if activation == "sigmoid" else logits


class _CrossEncoder:
    """What rerank needs of a cross-encoder: ``logits`` of token-id pairs and ``scores`` through the activation.
    Each family gives its head as ``classify`` ([S, H] first-token states -> [S, num_labels])."""

    config: Any

    @torch.inference_mode()
    def logits(self, input_ids_list: list[list[int]], token_type_ids_list: list[list[int]] | None = None):
        """Encoded pairs -> [S] float32 relevance logits (each sequence's first token through the head)."""
        hidden = self.encode(input_ids_list, token_type_ids_list)  # [T, H]
        starts = torch.tensor([0, *[len(ids) for ids in input_ids_list]], device=hidden.device).cumsum(0)[:-1]
        return self.classify(hidden[starts]).float()[:, 0]

    def scores(self, input_ids_list: list[list[int]], token_type_ids_list: list[list[int]] | None = None):
        """[S] relevance scores: the logits through the checkpoint's activation (sigmoid: in (0, 1))."""
        return activate(self.logits(input_ids_list, token_type_ids_list), self.config.score_activation)


class BertPooler(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)


class BertForSequenceClassification(_CrossEncoder, BertModel):
    config_class = BertClassifierConfig

    def __init__(self, config: BertClassifierConfig):
        super().__init__(config)
        self.pooler = BertPooler(config.hidden_size)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def classify(self, cls_hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.tanh(self.pooler.dense(cls_hidden)))

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """HF names: ``bert.*`` (the pooler included) and ``classifier.*``."""

        def skip(name: str) -> bool:
            return name in ("embeddings.position_ids", "embeddings.token_type_ids")

        load_hf_weights(self, weights, PACKED_MODULES, skip=skip, rename=lambda n: n.removeprefix("bert."))


class RobertaClassificationHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(torch.tanh(self.dense(x)))


class XLMRobertaForSequenceClassification(_CrossEncoder, XLMRobertaModel):
    config_class = XLMRobertaClassifierConfig

    def __init__(self, config: XLMRobertaClassifierConfig):
        super().__init__(config)
        self.classifier = RobertaClassificationHead(config.hidden_size, config.num_labels)

    def classify(self, cls_hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(cls_hidden)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """HF names: ``roberta.*`` (no pooler in the classification model) and ``classifier.{dense,out_proj}``."""

        def skip(name: str) -> bool:
            return name in ("embeddings.position_ids", "embeddings.token_type_ids")

        load_hf_weights(self, weights, PACKED_MODULES, skip=skip, rename=lambda n: n.removeprefix("roberta."))
