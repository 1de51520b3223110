"""GGUF files of Llama 3.1 / 3.2 (llama3 rope as a rope_freqs tensor), Mistral (a `llama` file), Qwen2 and Qwen3,
written as llama.cpp writes them from tiny random checkpoints (tests/support/gguf_files.py), converted, and checked
against transformers on the original checkpoints; their tokenizers rebuilt from the GGUF vocabulary."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

from inference.layers.moe import FusedMoE
from inference.layers.rotary import RopeParams
from inference.loader.convert import ConversionError, ensure_converted
from inference.loader.gguf import GGUFFile
from inference.loader.gguf_config import llama3_rope_from_freqs
from inference.loader.safetensors import load_model
from inference.tokenizer.gguf_vocab import build_tokenizer
from inference.weights.gguf import (
    GGUFExperts,
    GGUFLinear,
    block_tensor_names,
    strip_block_weights,
    use_gguf_weights,
)
from tests.support import checkpoints as rc
from tests.support import gguf_files as gf
from tests.support import moe_checkpoints as mc

# name -> (checkpoint builder, llama.cpp architecture, tokenizer preset, extra metadata, HF class after conversion)
FAMILIES = {
    "llama3.1": (gf.llama3_checkpoint, "llama", "llama-bpe", {}, "LlamaForCausalLM"),
    "llama3.2": (
        lambda p, t: gf.llama3_checkpoint(p, t, factor=32.0, tied=True),
        "llama",
        "llama-bpe",
        {},
        "LlamaForCausalLM",
    ),
    "mistral": (gf.mistral_checkpoint, "llama", "llama-bpe", {}, "LlamaForCausalLM"),
    "mistral_swa": (
        lambda p, t: gf.mistral_checkpoint(p, t, sliding_window=8),
        "llama",
        "llama-bpe",
        {"attention.sliding_window": 8},
        "MistralForCausalLM",
    ),  # fmt: skip
    "mistral-nemo": (gf.mistral_checkpoint, "llama", "tekken", {}, "LlamaForCausalLM"),  # Tekken's split
    "qwen2": (gf.qwen2_checkpoint, "qwen2", "qwen2", {}, "Qwen2ForCausalLM"),
    "qwen3": (gf.qwen3_checkpoint, "qwen3", "qwen2", {}, "Qwen3ForCausalLM"),
    "mixtral": (gf.mixtral_checkpoint, "llama", "llama-bpe", {"expert_count": 6, "expert_used_count": 2},
                "MixtralForCausalLM"),
    "qwen2moe": (gf.qwen2_moe_checkpoint, "qwen2moe", "qwen2",
                 {"expert_count": 5, "expert_used_count": 2, "expert_shared_feed_forward_length": 40},
                 "Qwen2MoeForCausalLM"),
    "qwen3moe": (gf.qwen3_moe_checkpoint, "qwen3moe", "qwen2", {"expert_count": 6, "expert_used_count": 3},
                 "Qwen3MoeForCausalLM"),
}  # fmt: skip
PROMPT_LENS = (30, 17)  # longer than mistral_swa's window of 8
NEW_TOKENS = 32
TEXTS = [  # the training sentences (where the merges are) and unseen text
    *gf.CORPUS,
    "The capital of France is Paris.",
    "In 1999 they'LL sell 1234567 units, it's 12.5% more; we'd NOT planned it!\n\n  indented\r\n\tx",
    "naïve café 東京 こんにちは 👋 unseen wörds and   spaces   ",
    "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x ** 2  # squares\n",
]


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    return {
        "qwen2": gf.bpe_tokenizer(gf.QWEN2_PATTERN),
        "llama-bpe": gf.bpe_tokenizer(gf.LLAMA3_PATTERN, bos="<|begin_of_text|>"),
        "tekken": gf.bpe_tokenizer(gf.TEKKEN_PATTERN, bos="<s>"),
    }


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tokenizers, tmp_path_factory):
    """name, the GGUF file, its conversion, the transformers model of the original checkpoint, the tokenizer."""
    name = request.param
    build, arch, pre, metadata, _ = FAMILIES[name]
    tmp = tmp_path_factory.mktemp(name)
    hf_dir = build(tmp / "hf", tokenizers[pre])
    path = gf.write_gguf(hf_dir, tokenizers[pre], tmp / f"{name}.gguf", arch, pre, metadata=metadata)
    converted = ensure_converted(path, cache_root=tmp / "cache", progress=False)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).eval()
    return name, path, converted, hf, tokenizers[pre]


def _prompts(vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def test_converted_config_and_weights(family):
    name, path, converted, _, _ = family
    config = json.loads((converted / "config.json").read_text())
    assert config["architectures"] == [FAMILIES[name][4]]
    rope = config["rope_parameters"]
    if name.startswith("llama3"):  # the rope_freqs tensor became Meta's parameters, and no weight
        factor = 8.0 if name == "llama3.1" else 32.0
        assert rope == {
            "rope_type": "llama3", "rope_theta": 500_000.0, "factor": factor, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
        }  # fmt: skip
        assert "rope_freqs.weight" in GGUFFile(path).tensors
    assert config.get("sliding_window") == (8 if name == "mistral_swa" else None)
    if name == "qwen3":
        assert config["model_type"] == "qwen3" and config["head_dim"] == 32 and config["attention_bias"] is False
    with safe_open(converted / "model.safetensors", "pt") as weights:
        names = set(weights.keys())
    assert not any("rope" in n for n in names)
    assert ("model.layers.0.self_attn.q_norm.weight" in names) == (name in ("qwen3", "qwen3moe"))
    assert ("model.layers.0.self_attn.q_proj.bias" in names) == (name in ("llama3.1", "llama3.2", "qwen2", "qwen2moe"))
    # the experts' stacks written out one matrix per expert, under the family's HF names
    experts = {"mixtral": ("block_sparse_moe.experts.5.w2", 6, 2), "qwen2moe": ("mlp.experts.4.down_proj", 5, 2),
               "qwen3moe": ("mlp.experts.5.down_proj", 6, 3)}.get(name)  # fmt: skip
    if experts is not None:
        key, count, used = experts
        assert f"model.layers.1.{key}.weight" in names
        assert config.get("num_local_experts", config.get("num_experts")) == count
        assert config["num_experts_per_tok"] == used
    assert ("model.layers.0.mlp.shared_expert_gate.weight" in names) == (name == "qwen2moe")


def test_transformers_loads_the_conversion_as_the_original(family):
    name, _, converted, hf, _ = family
    again = AutoModelForCausalLM.from_pretrained(converted, attn_implementation="eager", dtype=torch.float32).eval()
    prompts = _prompts(hf.config.vocab_size)
    diff = (rc.hf_logits(again, prompts) - rc.hf_logits(hf, prompts)).abs().max().item()
    print(f"{name}: max |converted - original| in transformers = {diff:.3g}")
    assert diff < 1e-5


def test_our_model_on_the_conversion_matches_transformers(family):
    name, _, converted, hf, _ = family
    ours = load_model(converted)
    prompts = _prompts(hf.config.vocab_size)
    diff = (rc.prefill_logits(ours, prompts) - rc.hf_logits(hf, prompts)).abs().max().item()
    print(f"{name}: max |ours - transformers| = {diff:.3g}")
    assert diff < 1e-3


@pytest.mark.parametrize("name", ["llama3.1", "llama3.2"])
def test_llama3_rope_from_rope_freqs_over_a_long_prompt(name, tokenizers, tmp_path):
    """llama3 scaling slows only the low frequencies, whose effect grows with distance: over 600 tokens the
    converted model still matches transformers, and the same model with unscaled frequencies does not."""
    build, arch, pre, metadata, _ = FAMILIES[name]
    hf_dir = build(tmp_path / "hf", tokenizers[pre])
    path = gf.write_gguf(hf_dir, tokenizers[pre], tmp_path / "f.gguf", arch, pre, metadata=metadata)
    ours = load_model(ensure_converted(path, cache_root=tmp_path / "cache", progress=False))
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).eval()
    prompt = torch.randint(0, hf.config.vocab_size, (600,), generator=torch.Generator().manual_seed(6)).tolist()
    expected = rc.hf_logits(hf, [prompt])
    logits = rc.prefill_logits(ours, [prompt])
    assert (logits - expected).abs().max().item() < 1e-3
    rotary = ours.model.rotary_emb
    rotary.rope = RopeParams(theta=rotary.rope.theta)  # the base frequencies: what ignoring rope_freqs gives
    rotary._inv_freq.clear()
    assert (rc.prefill_logits(ours, [prompt]) - expected).abs().max().item() > 0.05


def test_greedy_decode_matches_generate(family):
    """32 greedy tokens per prompt; ours recomputes the whole sequence each step (no cache involved)."""
    _, _, converted, hf, _ = family
    ours = load_model(converted)
    for prompt in _prompts(hf.config.vocab_size):
        ids = torch.tensor([prompt])
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
        expected = out[0, len(prompt) :].tolist()
        assert len(expected) == NEW_TOKENS and len(set(expected)) >= 3, expected  # not a degenerate run
        tokens = list(prompt)
        for _ in range(NEW_TOKENS):
            tokens.append(int(rc.prefill_logits(ours, [tokens])[-1].argmax()))
        assert tokens[len(prompt) :] == expected


def test_tokenizer_rebuilt_from_the_gguf_encodes_as_the_original(family):
    _, path, converted, _, original = family
    rebuilt = build_tokenizer(GGUFFile(path).metadata)
    saved = Tokenizer.from_file(str(converted / "tokenizer.json"))
    for text in TEXTS:
        expected = original.encode(text).ids
        assert rebuilt.encode(text).ids == expected, text
        assert saved.encode(text).ids == expected, text
        decoded = original.decode(expected, skip_special_tokens=False)
        assert rebuilt.decode(expected, skip_special_tokens=False) == decoded
    # guards the comparison: another preset's split encodes differently (Llama 3 vs Qwen: digits in threes or one by
    # one; a Qwen vocabulary has no multi-digit pieces, so against GPT-2's split: punctuation kept off letters)
    metadata = dict(GGUFFile(path).metadata)
    metadata["tokenizer.ggml.pre"] = "qwen2" if metadata["tokenizer.ggml.pre"] == "llama-bpe" else "gpt2"
    other = build_tokenizer(metadata)
    assert any(other.encode(text).ids != original.encode(text).ids for text in TEXTS)


def test_rope_freqs_of_other_llama3_parameters_are_fitted():
    rope = {"rope_theta": 10_000.0, "factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 2.0}
    rope["original_max_position_embeddings"] = 1024
    params = llama3_rope_from_freqs(gf.llama3_rope_divisors(rope, 128), 10_000.0, 128)
    assert params == {"rope_type": "llama3", **rope}


def test_rope_freqs_matching_no_llama3_scaling_is_refused(tokenizers, tmp_path):
    divisors = torch.linspace(1.0, 3.0, 8)  # smooth, but no factor / band split gives it
    with pytest.raises(ConversionError, match="matches no llama3 rope scaling"):
        llama3_rope_from_freqs(divisors, 500_000.0, 16)
    tok = tokenizers["llama-bpe"]
    hf_dir = gf.llama3_checkpoint(tmp_path / "hf", tok)
    path = gf.write_gguf(hf_dir, tok, tmp_path / "bad.gguf", "llama", "llama-bpe", rope_freqs=divisors)
    with pytest.raises(ConversionError, match="matches no llama3 rope scaling"):
        ensure_converted(path, cache_root=tmp_path / "cache", progress=False)


def test_unknown_architecture_is_refused_naming_the_supported_ones(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "phi3.gguf", "phi3")
    writer.add_token_list(["a", "b"])
    writer.add_tensor("token_embd.weight", np.zeros((2, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    supported = r"\(supported: llama, qwen2, qwen3, qwen2moe, qwen3moe, deepseek2, gemma3\)"
    with pytest.raises(ConversionError, match=rf"'phi3' is not supported {supported}"):
        ensure_converted(tmp_path / "phi3.gguf", cache_root=tmp_path / "cache", progress=False)


# --- Q8_0 files: dequantized by the converter, or served on their blocks ------------------------------------


@pytest.fixture(scope="module", params=["llama3.1", "qwen2", "qwen3"])
def q8_0(request, tokenizers, tmp_path_factory):
    name = request.param
    build, arch, pre, metadata, _ = FAMILIES[name]
    tmp = tmp_path_factory.mktemp(f"{name}-q8")
    hf_dir = build(tmp / "hf", tokenizers[pre])
    path = gf.write_gguf(hf_dir, tokenizers[pre], tmp / "q8.gguf", arch, pre, qtype="Q8_0", metadata=metadata)
    return name, hf_dir, path, ensure_converted(path, cache_root=tmp / "cache", progress=False)


def test_q8_0_conversion_holds_the_dequantized_original(q8_0):
    """q/k rows (and llama's q/k biases) come back in HF order: quantizing rows commutes with their permutation."""
    _, hf_dir, _, converted = q8_0
    original = gf.hf_weights(hf_dir)
    with safe_open(converted / "model.safetensors", "pt") as weights:
        for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"):
            expected = quants.dequantize(
                quants.quantize(original[name].numpy(), GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0
            )
            assert torch.equal(weights.get_tensor(name), torch.from_numpy(expected)), name
        for name in weights.keys():
            if name.endswith(("bias", "norm.weight")):  # kept in F32: exact
                assert torch.equal(weights.get_tensor(name), original[name]), name


@pytest.mark.interpreter
def test_q8_0_served_on_blocks_computes_what_the_conversion_does(q8_0):
    name, _, path, converted = q8_0
    model = load_model(converted)
    prompts = _prompts(model.config.vocab_size)[1:]
    dense = rc.prefill_logits(model, prompts)
    replaced = use_gguf_weights(model, path, torch.device("cpu"))
    layers = model.config.num_hidden_layers
    tied = model.config.tie_word_embeddings  # a tied head reads the embedding's blocks; else lm_head's own
    assert replaced == layers * 4 + 1 == sum(isinstance(m, GGUFLinear) for m in model.modules()), (name, tied)
    diff = (rc.prefill_logits(model, prompts) - dense).abs().max().item()
    print(f"{name} Q8_0: max |blocks - dense| = {diff:.3g}")
    assert diff < 1e-4


@pytest.fixture(scope="module", params=[("mixtral", "Q8_0"), ("qwen2moe", "Q4_0"), ("qwen3moe", "Q5_1")],
                ids=lambda p: "-".join(p))  # fmt: skip
def moe_quantized(request, tokenizers, tmp_path_factory):
    name, qtype = request.param
    build, arch, pre, metadata, _ = FAMILIES[name]
    tmp = tmp_path_factory.mktemp(f"{name}-{qtype}")
    hf_dir = build(tmp / "hf", tokenizers[pre])
    path = gf.write_gguf(hf_dir, tokenizers[pre], tmp / "q.gguf", arch, pre, qtype=qtype, metadata=metadata)
    return name, qtype, path, ensure_converted(path, cache_root=tmp / "cache", progress=False)


@pytest.mark.interpreter
def test_moe_experts_served_on_blocks_compute_what_the_conversion_does(moe_quantized):
    """Every layer's expert stacks (ffn_{gate,up,down}_exps) stay in the file's blocks, on the fused MoE kernel;
    attention, the router and the shared expert on the quantized matmul."""
    name, qtype, path, converted = moe_quantized
    model = load_model(converted)
    prompts = _prompts(model.config.vocab_size)[1:]
    dense = rc.prefill_logits(model, prompts)
    replaced = use_gguf_weights(model, path, torch.device("cpu"))
    layers = model.config.num_hidden_layers
    experts = [m for m in model.modules() if isinstance(m, GGUFExperts)]
    assert len(experts) == layers and all(e.qtypes == (qtype,) * 3 for e in experts)
    assert not any(isinstance(m, FusedMoE) for m in model.modules())
    # qkv, o, the router; Qwen2-MoE's shared expert: gate/up and its gate (its down, 40 wide, is no whole number of
    # blocks: F32 in the file, dense here)
    linears = layers * (3 + (2 if name == "qwen2moe" else 0)) + 1
    assert sum(isinstance(m, GGUFLinear) for m in model.modules()) == linears and replaced == linears + layers
    on_blocks = rc.prefill_logits(model, prompts)
    diff = (on_blocks - dense).abs().max().item()
    print(f"{name} {qtype}: max |blocks - dense| = {diff:.3g}")
    assert diff < 1e-4
    # as the service loads it: converted without the experts' stacks and the block projections, which are never
    # allocated dense
    lean = ensure_converted(path, cache_root=converted.parent, progress=False, skip=block_tensor_names(path))
    assert lean != converted
    stripped = load_model(lean, strip=lambda m: strip_block_weights(m, path))
    assert not any(hasattr(m, "w13_weight") for m in stripped.modules() if isinstance(m, FusedMoE))
    assert sum(isinstance(m, torch.nn.Linear) and not hasattr(m, "weight") for m in stripped.modules()) == linears
    assert use_gguf_weights(stripped, path, torch.device("cpu")) == replaced
    assert torch.equal(rc.prefill_logits(stripped, prompts), on_blocks)


# --- DeepSeek-V2 (deepseek2): MLA, experts, yarn ----------------------------------------------------------------

# name -> (q_lora_rank, group-limited routing, kv_b split as current llama.cpp writes it)
DEEPSEEK = {"v2-lite": (None, False, True), "v2-older-file": (24, True, False)}


@pytest.fixture(scope="module", params=list(DEEPSEEK))
def deepseek(request, tokenizers, tmp_path_factory):
    q_lora, grouped, split = DEEPSEEK[request.param]
    tmp = tmp_path_factory.mktemp(f"deepseek-{request.param}")
    tok = tokenizers["qwen2"]
    hf_dir = mc.deepseek_v2_checkpoint(tmp / "hf", q_lora, grouped, vocab_size=tok.get_vocab_size())
    path = gf.write_deepseek2_gguf(hf_dir, tok, tmp / "f.gguf", "qwen2", split_kv_b=split)
    converted = ensure_converted(path, cache_root=tmp / "cache", progress=False)
    hf = AutoModelForCausalLM.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float32).eval()
    return request.param, path, converted, hf


def test_deepseek2_conversion_is_the_original(deepseek):
    """config.json as transformers wrote it for the fields that matter; kv_b_proj rebuilt from attn_k_b / attn_v_b;
    transformers on the conversion computes what it computes on the original, and so does our model."""
    name, path, converted, hf = deepseek
    config = json.loads((converted / "config.json").read_text())
    original = hf.config.to_dict()
    for key in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
                "num_experts_per_tok", "n_shared_experts", "routed_scaling_factor", "first_k_dense_replace",
                "topk_method", "norm_topk_prob", "moe_intermediate_size", "intermediate_size"):  # fmt: skip
        assert config[key] == original[key], key
    assert config["rope_parameters"] == original["rope_parameters"]
    if DEEPSEEK[name][1]:
        assert (config["n_group"], config["topk_group"]) == (4, 2)
    assert (".attn_k_b.weight" in "".join(GGUFFile(path).tensors)) == DEEPSEEK[name][2]
    prompts = _prompts(hf.config.vocab_size)
    again = AutoModelForCausalLM.from_pretrained(converted, attn_implementation="eager", dtype=torch.float32).eval()
    assert (rc.hf_logits(again, prompts) - rc.hf_logits(hf, prompts)).abs().max().item() < 1e-5
    diff = (rc.prefill_logits(load_model(converted), prompts) - rc.hf_logits(hf, prompts)).abs().max().item()
    print(f"deepseek2 {name}: max |ours - transformers| = {diff:.3g}")
    assert diff < 1e-3


def test_deepseek2_v3_routing_is_refused(deepseek, tmp_path):
    _, path, _, _ = deepseek
    reader = GGUFFile(path)
    writer = gguf.GGUFWriter(tmp_path / "v3.gguf", "deepseek2")
    for key, value in reader.metadata.items():
        if key.startswith("deepseek2.") or key == "tokenizer.ggml.tokens":
            if isinstance(value, list):
                writer.add_array(key, value)
            elif isinstance(value, float):
                writer.add_float32(key, value)
            elif isinstance(value, bool):
                writer.add_bool(key, value)
            elif isinstance(value, int | np.integer):
                writer.add_uint32(key, int(value))
    writer.add_uint32("deepseek2.expert_gating_func", 2)  # sigmoid
    writer.add_tensor("token_embd.weight", np.zeros((2, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConversionError, match="sigmoid routing"):
        ensure_converted(tmp_path / "v3.gguf", cache_root=tmp_path / "cache", progress=False)


@pytest.mark.interpreter
@pytest.mark.parametrize("split", [True, False], ids=["k_b-v_b", "kv_b"])
def test_deepseek2_served_on_blocks_computes_what_the_conversion_does(tokenizers, tmp_path, split):
    """Q8_0: the q and kv_a projections' rope rows reordered on the blocks as on the weights, kv_b_proj (read as
    matrices) left dense, the experts on the fused MoE kernel, the dense first layer and shared experts on blocks."""
    tok = tokenizers["qwen2"]
    hf_dir = mc.deepseek_v2_checkpoint(tmp_path / "hf", vocab_size=tok.get_vocab_size())
    path = gf.write_deepseek2_gguf(hf_dir, tok, tmp_path / "q8.gguf", "qwen2", qtype="Q8_0", split_kv_b=split)
    model = load_model(ensure_converted(path, cache_root=tmp_path / "cache", progress=False))
    prompts = _prompts(model.config.vocab_size)[1:]
    dense = rc.prefill_logits(model, prompts)
    use_gguf_weights(model, path, torch.device("cpu"))
    layers = model.model.layers
    assert isinstance(layers[0].self_attn.q_proj, GGUFLinear) and isinstance(layers[0].mlp.gate_up_proj, GGUFLinear)
    assert isinstance(layers[0].self_attn.kv_a_proj_with_mqa, GGUFLinear)
    assert all(isinstance(layer.self_attn.kv_b_proj, torch.nn.Linear) for layer in layers)
    assert all(isinstance(layer.mlp.experts, GGUFExperts) for layer in layers[1:])
    assert all(isinstance(layer.mlp.shared_experts.down_proj, GGUFLinear) for layer in layers[1:])
    on_blocks = rc.prefill_logits(model, prompts)
    diff = (on_blocks - dense).abs().max().item()
    print(f"deepseek2 Q8_0 ({'k_b/v_b' if split else 'kv_b'}): max |blocks - dense| = {diff:.3g}")
    assert diff < 1e-4
    # as the service loads it: converted without what goes to blocks (kv_b_proj stays: it is read as matrices)
    lean = ensure_converted(path, cache_root=tmp_path / "cache", progress=False, skip=block_tensor_names(path))
    stripped = load_model(lean, strip=lambda m: strip_block_weights(m, path))
    assert all(hasattr(layer.self_attn.kv_b_proj, "weight") for layer in stripped.model.layers)
    use_gguf_weights(stripped, path, torch.device("cpu"))
    assert torch.equal(rc.prefill_logits(stripped, prompts), on_blocks)
