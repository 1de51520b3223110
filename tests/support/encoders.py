"""Tiny random-weight embedding checkpoints written with transformers, with the sentence-transformers files
(``modules.json``, ``1_Pooling/config.json``, ``2_Normalize``) that name their pooling, as published embedding
models ship them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from tests.support import checkpoints
from tests.support.checkpoints import _randomize, _save

VOCAB = 300


def write_sentence_transformers_files(path: Path, dim: int, mode: str, normalize: bool, legacy: bool = False) -> Path:
    """The pipeline Transformer → Pooling(``mode``) [→ Normalize]. ``legacy``: the names and one-flag-per-mode
    pooling config of sentence-transformers < 5 (what bge-m3 and all-MiniLM-L6-v2 carry)."""
    path = Path(path)
    prefix = "sentence_transformers.models." if legacy else "sentence_transformers.sentence_transformer.modules."
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": f"{prefix}Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": f"{prefix}Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": f"{prefix}Normalize"})
        (path / "2_Normalize").mkdir(exist_ok=True)
    (path / "modules.json").write_text(json.dumps(modules, indent=2))
    if legacy:
        legacy_names = {"cls": "cls_token", "mean": "mean_tokens", "max": "max_tokens", "lasttoken": "lasttoken"}
        pooling = {"word_embedding_dimension": dim}
        pooling |= {f"pooling_mode_{name}": name == legacy_names[mode] for name in legacy_names.values()}
    else:
        pooling = {"embedding_dimension": dim, "pooling_mode": mode, "include_prompt": True}
    (path / "1_Pooling").mkdir(exist_ok=True)
    (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    return path


def xlm_roberta_checkpoint(path: Path, torch_bin: bool = False) -> Path:
    """bge-m3's shape in miniature: XLM-R, padding index 1 (positions start at 2), one token type, a pooler (which
    the encoder must ignore). ``torch_bin``: weights in ``pytorch_model.bin`` instead of safetensors."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    config = XLMRobertaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=66,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
    )
    model = XLMRobertaModel(config)
    _randomize(model, seed=5, embed_std=1.0)
    path = _save(model, path)
    if torch_bin:
        torch.save(model.state_dict(), path / "pytorch_model.bin")
        for f in path.glob("*.safetensors"):
            f.unlink()
    return path


def bert_checkpoint(path: Path) -> Path:
    """checkpoints' 2-layer BERT over this module's vocabulary."""
    return checkpoints.bert_checkpoint(path, vocab=VOCAB, seed=6)


# the tiny decoder embedding models' shape: GQA 4/2, tied embeddings (no lm head), no BOS / EOS
_EMBEDDING_DECODER = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=None,
    eos_token_id=None, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
)  # fmt: skip


def qwen2_checkpoint(path: Path) -> Path:
    """A causal Qwen2 (GQA 4/2, q/k/v biases, tied embeddings: no lm head) to embed with last-token pooling."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(**_EMBEDDING_DECODER)
    model = Qwen2ForCausalLM(config)
    _randomize(model, seed=7, embed_std=1.0)
    return _save(model, path)


def qwen3_checkpoint(path: Path, headless: bool = False) -> Path:
    """Qwen3-Embedding's shape in miniature: QK-norm, head_dim 32 != 64 / 4, tied embeddings. ``headless``: saved
    from ``Qwen3Model`` (no ``model.`` prefix, no lm_head), as sentence-transformers saves embedding models."""
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    torch.manual_seed(0)
    config = Qwen3Config(**_EMBEDDING_DECODER, head_dim=32)
    model = (Qwen3Model if headless else Qwen3ForCausalLM)(config)
    _randomize(model, seed=8, embed_std=1.0)
    return _save(model, path)


JINA_CONFIG = {
    "architectures": ["JinaBertModel"],
    "model_type": "bert",
    "position_embedding_type": "alibi",
    "feed_forward_type": "geglu",
    "vocab_size": VOCAB,
    "hidden_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 6,  # not a power of two: the slopes' extension
    "intermediate_size": 80,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
    "pad_token_id": 0,
}


def jina_bert_state_dict(config: dict, seed: int = 9) -> dict[str, torch.Tensor]:
    """Random weights under jinaai/jina-bert-implementation's ``JinaBertModel`` names (pooler included)."""
    gen = torch.Generator().manual_seed(seed)
    H, inner = config["hidden_size"], config["intermediate_size"]

    def linear(prefix: str, out: int, fan_in: int, bias: bool = True) -> dict[str, torch.Tensor]:
        weights = {f"{prefix}.weight": torch.randn(out, fan_in, generator=gen) / math.sqrt(fan_in)}
        return weights | ({f"{prefix}.bias": torch.randn(out, generator=gen) * 0.2} if bias else {})

    def norm(prefix: str) -> dict[str, torch.Tensor]:
        return {
            f"{prefix}.weight": torch.rand(H, generator=gen) + 0.5,
            f"{prefix}.bias": torch.randn(H, generator=gen) * 0.2,
        }

    state = {
        "embeddings.word_embeddings.weight": torch.randn(config["vocab_size"], H, generator=gen),
        "embeddings.token_type_embeddings.weight": torch.randn(config["type_vocab_size"], H, generator=gen),
        **norm("embeddings.LayerNorm"),
        **linear("pooler.dense", H, H),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            state |= linear(f"{p}.attention.self.{name}", H, H)
        state |= linear(f"{p}.attention.output.dense", H, H) | norm(f"{p}.attention.output.LayerNorm")
        state |= linear(f"{p}.mlp.gated_layers", 2 * inner, H, bias=False) | linear(f"{p}.mlp.wo", H, inner)
        state |= norm(f"{p}.mlp.layernorm")
    return state


def jina_bert_checkpoint(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny jina-embeddings-v2 (its modeling code is remote, not in transformers: the weights are written by name)
    and the state dict written, for the test's own reference implementation."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = jina_bert_state_dict(JINA_CONFIG)
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(JINA_CONFIG, indent=2))
    return path, state


# --- cross-encoders (rerank) -----------------------------------------------------------------------------------

RERANK_MAX_POSITIONS = 48  # short, so that the tests' longer documents are cut
# what the two tiny rerankers share: their encoder's size, one label
_RERANKER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                 max_position_embeddings=RERANK_MAX_POSITIONS, num_labels=1)  # fmt: skip


def bert_reranker_checkpoint(path: Path) -> Path:
    """ms-marco-MiniLM-L-6-v2's shape in miniature: ``BertForSequenceClassification`` with one label, two token
    types, all-MiniLM-L6-v2's WordPiece tokenizer (the packaged model's: [CLS] query [SEP] document [SEP])."""
    import shutil

    from transformers import BertConfig, BertForSequenceClassification

    from inference.packaged import minilm_dir

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, type_vocab_size=2, **_RERANKER)
    model = BertForSequenceClassification(config)
    _randomize(model, seed=11, embed_std=1.0)
    path = _save(model, path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_dir() / name, path / name)
    return path


def byte_tokenizer():
    """A byte-level BPE (any text encodes) with XLM-R's special tokens at XLM-R's ids (<s> 0, <pad> 1, </s> 2,
    <unk> 3) and RoBERTa's template (``<s> a </s>``, a pair ``<s> a </s></s> b </s>``), ``VOCAB`` entries: the
    tokenizer the tests' models of this vocabulary are served with."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(  # every byte in the alphabet: any text encodes
        vocab_size=VOCAB, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    backend.train_from_iterator(checkpoints._ASCII_CORPUS * 3, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", model_max_length=RERANK_MAX_POSITIONS - 2,
    )  # fmt: skip


def xlm_roberta_reranker_checkpoint(path: Path, activation: str | None = None) -> Path:
    """bge-reranker-v2-m3's shape in miniature: ``XLMRobertaForSequenceClassification`` with one label (RoBERTa's
    dense + tanh + out_proj head), positions offset by the padding index. ``activation``: the score activation
    sentence-transformers' CrossEncoder records in config.json (e.g. ``torch.nn.modules.linear.Identity``)."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=VOCAB, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                              layer_norm_eps=1e-5, **_RERANKER)  # fmt: skip
    model = XLMRobertaForSequenceClassification(config)
    _randomize(model, seed=12, embed_std=1.0)
    path = _save(model, path)
    byte_tokenizer().save_pretrained(path)
    if activation is not None:
        data = json.loads((path / "config.json").read_text())
        data["sentence_transformers"] = {"activation_fn": activation}
        (path / "config.json").write_text(json.dumps(data, indent=2))
    return path
