"""HF ``architectures`` names -> our model classes (each carries its ``config_class``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from inference.models.bert import BertModel
from inference.models.cross_encoder import BertForSequenceClassification, XLMRobertaForSequenceClassification
from inference.models.deepseek_v2 import DeepseekV2ForCausalLM
from inference.models.gemma3 import Gemma3ForCausalLM
from inference.models.headless import Qwen2Model, Qwen3Model
from inference.models.jina_bert import JinaBertModel
from inference.models.llama import LlamaForCausalLM
from inference.models.llava import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration
from inference.models.mistral import MistralForCausalLM
from inference.models.mixtral import MixtralForCausalLM
from inference.models.qwen2 import Qwen2ForCausalLM
from inference.models.qwen2_moe import Qwen2MoeForCausalLM
from inference.models.qwen3 import Qwen3ForCausalLM
from inference.models.qwen3_moe import Qwen3MoeForCausalLM
from inference.models.vits import VitsModel
from inference.models.whisper import WhisperForConditionalGeneration
from inference.models.xlm_roberta import XLMRobertaModel

MODELS: dict[str, type[nn.Module]] = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "Qwen2ForCausalLM": Qwen2ForCausalLM,
    "Qwen3ForCausalLM": Qwen3ForCausalLM,
    "Gemma3ForCausalLM": Gemma3ForCausalLM,
    "MistralForCausalLM": MistralForCausalLM,
    "MixtralForCausalLM": MixtralForCausalLM,  # mixtures of experts
    "Qwen2MoeForCausalLM": Qwen2MoeForCausalLM,
    "Qwen3MoeForCausalLM": Qwen3MoeForCausalLM,
    "DeepseekV2ForCausalLM": DeepseekV2ForCausalLM,  # MLA and experts
    "BertModel": BertModel,
    "XLMRobertaModel": XLMRobertaModel,
    "JinaBertModel": JinaBertModel,
    "JinaBertForMaskedLM": JinaBertModel,  # jina-embeddings-v2's config names its MLM class; the head is skipped
    "BertForSequenceClassification": BertForSequenceClassification,  # cross-encoders: rerank
    "XLMRobertaForSequenceClassification": XLMRobertaForSequenceClassification,
    "Qwen2Model": Qwen2Model,  # decoder bodies without a head: embedding checkpoints (Qwen3-Embedding)
    "Qwen3Model": Qwen3Model,
    "LlavaForConditionalGeneration": LlavaForConditionalGeneration,
    "LlavaNextForConditionalGeneration": LlavaNextForConditionalGeneration,
    "WhisperForConditionalGeneration": WhisperForConditionalGeneration,
    "VitsModel": VitsModel,  # text to speech (MMS-TTS)
}


class UnsupportedArchitectureError(ValueError):
    pass


def supported_architectures() -> list[str]:
    return sorted(MODELS)


def resolve_model_class(hf_config: dict[str, Any]) -> type[nn.Module]:
    """The class for the first supported name in the config's ``architectures``."""
    architectures = hf_config.get("architectures") or []
    for name in architectures:
        if name in MODELS:
            return MODELS[name]
    found = ", ".join(architectures) if architectures else "none listed in config.json"
    raise UnsupportedArchitectureError(
        f"unsupported model architecture ({found}); supported: {', '.join(supported_architectures())}"
    )


def build_model(hf_config: dict[str, Any]) -> nn.Module:
    """Config dict -> freshly initialised model on the current default device and dtype (``load_model`` builds it
    on the meta device and loads every weight afterwards)."""
    cls = resolve_model_class(hf_config)
    return cls(cls.config_class.from_hf(hf_config))
