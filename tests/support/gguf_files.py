"""GGUF files as llama.cpp's convert_hf_to_gguf.py writes them, from tiny random-weight HF checkpoints.

Each family's checkpoint is written by transformers with a byte-level BPE tokenizer trained here (offline, on a
few sentences) with the family's pre-tokenizer regex, as Qwen's and Llama 3's tokenizer.json files split text.
``write_gguf`` then does what llama.cpp does: tensor names ``blk.N.attn_q`` ..., the q/k rows (and biases) of
``llama`` files permuted for llama.cpp's interleaved rope, Llama 3.1's rope scaling turned into a
``rope_freqs`` tensor of per-frequency divisors, the vocabulary as tokens + types + merges. Matrices are F32
or quantized (``gguf.quants``); norms, biases and rope_freqs stay F32 as llama.cpp keeps them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import gguf
import torch
from gguf import GGMLQuantizationType, quants
from safetensors.torch import load_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tests.support.checkpoints import _randomize, _save

# the split regexes of the HF tokenizer.json files (Qwen2.5's, Llama 3's): digits alone vs in threes
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
# Mistral-Nemo's tokenizer.json (Tekken): letters split at capitals, digits alone, "/" kept with punctuation
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
    r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "The capital of France is Paris. Once upon a time, in a small village by the sea, there lived a fisher.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n",
    "In 2024 we sold 1234567 units; they'll say it's 12.5% more than we'd planned. Don't you THINK so?",
    "Größe, café, naïve, 東京 and こんにちは: unicode text\r\nwith CRLF lines\t\tand  double  spaces.",
]
# llama.cpp token types
NORMAL, CONTROL = 1, 3


def bpe_tokenizer(pattern: str = QWEN2_PATTERN, bos: str | None = None, vocab_size: int = 360) -> Tokenizer:
    """A byte-level BPE split by ``pattern`` (isolated), as Qwen / Llama 3 tokenizer.json files are; ``bos``: a
    special token every encoding starts with (Llama 3's ``<|begin_of_text|>``)."""
    specials = SPECIALS + ([bos] if bos else [])
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in specials],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 3, trainer)
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    return tokenizer


# --- the HF checkpoints -------------------------------------------------------------------------------------


def _common(vocab: int, layers: int = 2, max_positions: int = 256) -> dict:
    return dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4,
        max_position_embeddings=max_positions, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None,
        pad_token_id=None,
    )  # fmt: skip


def llama3_checkpoint(path: Path, tokenizer: Tokenizer, factor: float = 8.0, tied: bool = False) -> Path:
    """Llama 3.1 (``factor`` 8) or 3.2 (32, ``tied`` embeddings as the 1B / 3B): llama3 rope over an 8192-token
    original context, head_dim 16 with base 500000, so the frequencies fall in all three bands; GQA 4/2, q/k/v/o
    biases (llama.cpp permutes q/k biases too)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    rope = {"rope_type": "llama3", "rope_theta": 500_000.0, "factor": factor, "low_freq_factor": 1.0}
    rope |= {"high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    config = LlamaConfig(
        **_common(tokenizer.get_vocab_size(), max_positions=131072), num_key_value_heads=2, head_dim=16,
        attention_bias=True, tie_word_embeddings=tied, rope_parameters=rope,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    _randomize(model, seed=11, embed_std=0.1 if tied else 1.0)  # tied: see _randomize
    return _save(model, path)


def mistral_checkpoint(path: Path, tokenizer: Tokenizer, sliding_window: int | None = None) -> Path:
    """Mistral v0.2 on: no sliding window (v0.1: ``sliding_window``), GQA 4/1, head_dim 32 (explicit, != 64 / 4),
    base 1e6, untied head."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(
        **_common(tokenizer.get_vocab_size()), num_key_value_heads=1, head_dim=32, sliding_window=sliding_window,
        tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )  # fmt: skip
    model = MistralForCausalLM(config)
    _randomize(model, seed=12, embed_std=1.0)
    return _save(model, path)


def qwen2_checkpoint(path: Path, tokenizer: Tokenizer) -> Path:
    """q/k/v biases, GQA 4/2, tied embeddings, linear rope scaling (factor 2), 3 layers."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        **_common(tokenizer.get_vocab_size(), layers=3), num_key_value_heads=2, tie_word_embeddings=True,
        use_sliding_window=False, rope_parameters={"rope_type": "linear", "rope_theta": 1_000_000.0, "factor": 2.0},
    )  # fmt: skip
    model = Qwen2ForCausalLM(config)
    _randomize(model, seed=13, embed_std=0.1)
    return _save(model, path)


def qwen3_checkpoint(path: Path, tokenizer: Tokenizer) -> Path:
    """q/k RMSNorms per head, head_dim 32 (explicit, != 64 / 4), GQA 4/2, no biases, tied embeddings."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(
        **_common(tokenizer.get_vocab_size()), num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
        use_sliding_window=False, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )  # fmt: skip
    model = Qwen3ForCausalLM(config)
    _randomize(model, seed=14, embed_std=0.1)
    return _save(model, path)


# --- the GGUF writer ----------------------------------------------------------------------------------------

_BLOCK = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    # mixture of experts: the router, a shared expert and its gate (the experts themselves are stacked)
    "block_sparse_moe.gate": "ffn_gate_inp", "mlp.gate": "ffn_gate_inp", "mlp.shared_expert_gate": "ffn_gate_inp_shexp",
    "mlp.shared_expert.gate_proj": "ffn_gate_shexp", "mlp.shared_expert.up_proj": "ffn_up_shexp",
    "mlp.shared_expert.down_proj": "ffn_down_shexp",
    # DeepSeek-V2: MLA's projections and norms, the shared experts (one MLP)
    "self_attn.q_a_proj": "attn_q_a", "self_attn.q_a_layernorm": "attn_q_a_norm", "self_attn.q_b_proj": "attn_q_b",
    "self_attn.kv_a_proj_with_mqa": "attn_kv_a_mqa", "self_attn.kv_a_layernorm": "attn_kv_a_norm",
    "self_attn.kv_b_proj": "attn_kv_b", "mlp.shared_experts.gate_proj": "ffn_gate_shexp",
    "mlp.shared_experts.up_proj": "ffn_up_shexp", "mlp.shared_experts.down_proj": "ffn_down_shexp",
}  # fmt: skip
_GLOBAL = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_EXPERT = re.compile(r"model\.layers\.(\d+)\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(\w+)\.weight")
_EXPERT_STACK = {"w1": "gate", "gate_proj": "gate", "w3": "up", "up_proj": "up", "w2": "down", "down_proj": "down"}


def _gguf_tensors(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF tensors under llama.cpp's names; each layer's experts stacked as ``ffn_{gate,up,down}_exps`` [E, ...]."""
    tensors, experts = {}, {}
    for name, weight in hf.items():
        if match := _EXPERT.fullmatch(name):
            layer, expert, proj = match.groups()
            experts.setdefault(f"blk.{layer}.ffn_{_EXPERT_STACK[proj]}_exps.weight", {})[int(expert)] = weight
        else:
            tensors[_gguf_name(name)] = weight
    for name, by_expert in experts.items():
        tensors[name] = torch.stack([by_expert[e] for e in sorted(by_expert)])
    return tensors


def _gguf_name(hf: str) -> str:
    base, _, kind = hf.rpartition(".")
    if base in _GLOBAL:
        return f"{_GLOBAL[base]}.{kind}"
    _, _, layer, module = base.split(".", 3)  # model.layers.N.<module>
    return f"blk.{layer}.{_BLOCK[module]}.{kind}"


def _permute(weights: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's LlamaModel.permute: each head's rows from rotate-half order to interleaved pairs."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def llama3_rope_divisors(rope: dict, head_dim: int) -> torch.Tensor:
    """convert_hf_to_gguf.py's rope_freqs for a llama3 rope (LlamaModel.generate_extra_tensors)."""
    base = rope["rope_theta"]
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old_context_len = rope["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context_len / low, old_context_len / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32)


def hf_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    weights: dict[str, torch.Tensor] = {}
    for file in sorted(Path(hf_dir).glob("*.safetensors")):
        weights.update(load_file(file))
    return weights


def write_gguf(
    hf_dir: Path, tokenizer: Tokenizer, path: Path, arch: str, pre: str, qtype: str = "F32",
    metadata: dict | None = None, rope_freqs: torch.Tensor | None = None,
) -> Path:  # fmt: skip
    """``hf_dir``'s checkpoint and ``tokenizer`` as a GGUF of llama.cpp architecture ``arch`` with tokenizer preset
    ``pre``; ``qtype``: the type of every matrix (F32, or one ``gguf.quants`` can write such as Q8_0);
    ``metadata``: extra ``{arch}.<key>`` integers; ``rope_freqs``: written instead of the one llama.cpp computes."""
    config = json.loads((Path(hf_dir) / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer = gguf.GGUFWriter(path, arch)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    if config.get("moe_intermediate_size"):
        writer.add_expert_feed_forward_length(config["moe_intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if config.get("head_dim") and config["head_dim"] != config["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = config["rope_parameters"]
    writer.add_rope_freq_base(rope["rope_theta"])
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])
    for key, value in (metadata or {}).items():
        writer.add_uint32(f"{arch}.{key}", value)
    _add_vocab(writer, tokenizer, pre)

    tensors = {name: w.float() for name, w in _gguf_tensors(hf_weights(hf_dir)).items()}
    if config.get("tie_word_embeddings"):
        tensors.pop("output.weight", None)
    if rope["rope_type"] == "llama3":
        tensors["rope_freqs.weight"] = llama3_rope_divisors(rope, head_dim) if rope_freqs is None else rope_freqs
    for name, weight in tensors.items():
        if arch == "llama" and name.endswith((".attn_q.weight", ".attn_q.bias")):
            weight = _permute(weight, heads)
        elif arch == "llama" and name.endswith((".attn_k.weight", ".attn_k.bias")):
            weight = _permute(weight, kv_heads)
        _add_tensor(writer, name, weight, qtype)
    return _finish(writer, path)


def _add_tensor(writer: gguf.GGUFWriter, name: str, weight: torch.Tensor, qtype: str) -> None:
    """A matrix in ``qtype``; vectors, and rows that are no whole number of blocks, in F32 (llama.cpp falls back
    to a type that fits as well)."""
    array = weight.float().numpy()
    if qtype == "F32" or array.ndim == 1 or array.shape[-1] % gguf.GGML_QUANT_SIZES[GGMLQuantizationType[qtype]][0]:
        writer.add_tensor(name, array)
    else:
        kind = GGMLQuantizationType[qtype]
        writer.add_tensor(name, quants.quantize(array, kind), raw_dtype=kind)


def _finish(writer: gguf.GGUFWriter, path: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_deepseek2_gguf(hf_dir: Path, tokenizer: Tokenizer, path: Path, pre: str, qtype: str = "F32",
                         split_kv_b: bool = True) -> Path:  # fmt: skip
    """A DeepSeek-V2 checkpoint as convert_hf_to_gguf.py's DeepseekV2Model writes it: MLA as one KV head, the
    experts stacked, yarn's mscale_all_dim as its log multiplier; ``split_kv_b``: kv_b_proj split per head into
    attn_k_b (W_UK transposed) and attn_v_b (W_UV) with the MLA lengths apart, as current llama.cpp does, else
    one attn_kv_b as older files have."""
    c = json.loads((Path(hf_dir) / "config.json").read_text())
    keys = ("num_attention_heads", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "kv_lora_rank")
    heads, nope, rope_dim, v_dim, latent = (c[k] for k in keys)
    w = gguf.GGUFWriter(path, "deepseek2")
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(c["num_hidden_layers"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_vocab_size(c["vocab_size"])
    w.add_leading_dense_block_count(c["first_k_dense_replace"])
    if c.get("q_lora_rank"):
        w.add_q_lora_rank(c["q_lora_rank"])
    w.add_kv_lora_rank(latent)
    if split_kv_b:
        w.add_key_length(latent + rope_dim)
        w.add_value_length(latent)
        w.add_key_length_mla(nope + rope_dim)
        w.add_value_length_mla(v_dim)
    else:
        w.add_key_length(nope + rope_dim)
        w.add_value_length(v_dim)
    w.add_expert_feed_forward_length(c["moe_intermediate_size"])
    w.add_expert_count(c["n_routed_experts"])
    w.add_expert_used_count(c["num_experts_per_tok"])
    w.add_expert_shared_count(c["n_shared_experts"])
    w.add_expert_weights_scale(c["routed_scaling_factor"])
    w.add_expert_weights_norm(c["norm_topk_prob"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SOFTMAX)
    if c.get("topk_method") == "group_limited_greedy":
        w.add_expert_group_count(c["n_group"])
        w.add_expert_group_used_count(c["topk_group"])
    w.add_rope_dimension_count(rope_dim)
    rope = c["rope_parameters"]
    w.add_rope_freq_base(rope["rope_theta"])
    if rope["rope_type"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        w.add_rope_scaling_yarn_log_mul(0.1 * rope["mscale_all_dim"])
    _add_vocab(w, tokenizer, pre)
    for name, weight in _gguf_tensors(hf_weights(hf_dir)).items():
        if split_kv_b and name.endswith(".attn_kv_b.weight"):
            k_b, v_b = weight.view(heads, nope + v_dim, latent).split([nope, v_dim], dim=1)
            _add_tensor(w, name.replace("attn_kv_b", "attn_k_b"), k_b.transpose(1, 2).contiguous(), qtype)
            _add_tensor(w, name.replace("attn_kv_b", "attn_v_b"), v_b.contiguous(), qtype)
        else:
            _add_tensor(w, name, weight, qtype)
    return _finish(w, path)


def _add_vocab(writer: gguf.GGUFWriter, tokenizer: Tokenizer, pre: str) -> None:
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = sorted(vocab, key=vocab.__getitem__)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if t in special else NORMAL for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_eos_token_id(vocab["<|endoftext|>"])
    bos = [t for t in special if t not in SPECIALS]
    writer.add_bos_token_id(vocab[bos[0]] if bos else vocab["<|endoftext|>"])
    writer.add_add_bos_token(bool(bos))


# --- mixtures of experts -------------------------------------------------------------------------------------


def mixtral_checkpoint(path: Path, tokenizer: Tokenizer) -> Path:
    """Mixtral: 6 experts of 96 (the feed-forward length), the top 2, GQA 4/2; llama.cpp writes it as a ``llama``
    file with experts."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    config = MixtralConfig(
        **_common(tokenizer.get_vocab_size()), num_key_value_heads=2, num_local_experts=6,
        num_experts_per_tok=2, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )  # fmt: skip
    model = MixtralForCausalLM(config)
    _randomize(model, seed=15, embed_std=1.0)
    return _save(model, path)


def qwen2_moe_checkpoint(path: Path, tokenizer: Tokenizer) -> Path:
    """Qwen2-MoE: 5 experts of 32, the top 2 not renormalised, a shared expert of 40 with its gate, q/k/v biases."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen2MoeConfig(
        **_common(tokenizer.get_vocab_size()), num_key_value_heads=2, moe_intermediate_size=32, num_experts=5,
        num_experts_per_tok=2, norm_topk_prob=False, shared_expert_intermediate_size=40, decoder_sparse_step=1,
        mlp_only_layers=[], use_sliding_window=False, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )  # fmt: skip
    model = Qwen2MoeForCausalLM(config)
    _randomize(model, seed=16, embed_std=1.0)
    return _save(model, path)


def qwen3_moe_checkpoint(path: Path, tokenizer: Tokenizer) -> Path:
    """Qwen3-MoE: QK-norm, head_dim 32, 6 experts of 32, the top 3 renormalised."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        **_common(tokenizer.get_vocab_size()), num_key_value_heads=2, head_dim=32, moe_intermediate_size=32,
        num_experts=6, num_experts_per_tok=3, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        use_sliding_window=False, tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )  # fmt: skip
    model = Qwen3MoeForCausalLM(config)
    _randomize(model, seed=17, embed_std=1.0)
    return _save(model, path)
