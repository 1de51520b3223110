"""Our causal LMs against transformers on tiny random checkpoints: prefill logits, and greedy decoding
through a real KV cache (chunked prefill, then two sequences decoding together), plus configs, the
registry and weight loading."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from transformers import LlamaConfig as HFLlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from inference.layers.context import ForwardContext, forward_context
from inference.layers.rotary import rope_inv_freq
from inference.loader.safetensors import iter_safetensors, load_model
from inference.models.config import ConfigError, Gemma3TextConfig, LlamaConfig
from inference.models.gemma3 import Gemma3ForCausalLM
from inference.models.llama import LlamaForCausalLM
from inference.models.qwen2 import Qwen2ForCausalLM
from inference.models.registry import UnsupportedArchitectureError, resolve_model_class
from tests.support import checkpoints as rc

BUILDERS = {
    "llama": rc.llama_checkpoint,
    "qwen2": rc.qwen2_checkpoint,
    "qwen2_swa": lambda path: rc.qwen2_checkpoint(path, sliding_window=True),
    "gemma3": rc.gemma3_checkpoint,
}
CLASSES = {
    "llama": LlamaForCausalLM,
    "qwen2": Qwen2ForCausalLM,
    "qwen2_swa": Qwen2ForCausalLM,
    "gemma3": Gemma3ForCausalLM,
}
PROMPT_LENS = (40, 23)  # both longer than the sliding windows (8 for Gemma 3, 12 for qwen2_swa)
NEW_TOKENS = 32


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(3)  # a seed whose greedy runs are varied for every model
    return [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in PROMPT_LENS]


@pytest.fixture(scope="module", params=list(BUILDERS))
def pair(request, tmp_path_factory):
    """(name, our model, the transformers model) loaded from the same checkpoint directory."""
    name = request.param
    path = BUILDERS[name](tmp_path_factory.mktemp(name))
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    return name, path, load_model(path), hf


def test_prefill_logits_match_transformers(pair):
    name, _, ours, hf = pair
    prompts = _prompts()
    logits = rc.prefill_logits(ours, prompts)
    assert logits.dtype == torch.float32 and logits.shape == (sum(PROMPT_LENS), rc.VOCAB)
    diff = (logits - rc.hf_logits(hf, prompts)).abs().max().item()
    print(f"{name}: max |logits - transformers| = {diff:.3g}")
    assert diff < 1e-3


@pytest.mark.parametrize("name", ["gemma3", "qwen2_swa"])
def test_sliding_windows_change_the_logits(name, tmp_path):
    """Guards the comparison above: with the windows dropped the logits move, so they were exercised."""
    model = load_model(BUILDERS[name](tmp_path))
    assert any(w is not None for w in model.config.sliding_windows)
    prompts = _prompts()
    windowed = rc.prefill_logits(model, prompts)
    for layer in model.attention_layers():
        layer.sliding_window = None
    assert (windowed - rc.prefill_logits(model, prompts)).abs().max() > 1e-2


class ContiguousKVCache:
    """Sequence i owns cache slots [i * capacity, (i + 1) * capacity); ``step`` runs one engine-like step."""

    def __init__(self, model, num_seqs: int, capacity: int):
        cfg = model.config
        self.model = model
        for layer in model.attention_layers():
            layer.k_cache = torch.zeros(num_seqs * capacity, cfg.num_key_value_heads, cfg.head_dim)
            layer.v_cache = torch.zeros(num_seqs * capacity, cfg.num_key_value_heads, cfg.head_dim)
        self.slots = torch.arange(num_seqs * capacity).view(num_seqs, capacity)
        self.lens = [0] * num_seqs

    def release(self) -> None:
        for layer in self.model.attention_layers():
            layer.k_cache = layer.v_cache = None

    @torch.inference_mode()
    def step(self, chunks: dict[int, list[int]]) -> dict[int, int]:
        """New tokens per sequence -> greedy next token of each sequence, from its last token's logits."""
        seqs = sorted(chunks)
        ids, positions, slot_mapping, cu = [], [], [], [0]
        for s in seqs:
            start, n = self.lens[s], len(chunks[s])
            ids += chunks[s]
            positions += range(start, start + n)
            slot_mapping.append(self.slots[s, start : start + n])
            cu.append(cu[-1] + n)
            self.lens[s] += n
        context_lens = [self.lens[s] for s in seqs]
        ctx = ForwardContext(
            cu_seqlens_q=cu,
            context_lens=context_lens,
            slot_mapping=torch.cat(slot_mapping),
            context_slots=self.slots[seqs, : max(context_lens)],
            is_decode=all(len(chunks[s]) == 1 for s in seqs),
        )
        with forward_context(ctx):
            hidden = self.model(torch.tensor(ids), torch.tensor(positions))
        logits = self.model.compute_logits(hidden[[c - 1 for c in cu[1:]]])
        return dict(zip(seqs, logits.argmax(-1).tolist(), strict=True))


def test_greedy_decode_with_kv_cache_matches_generate(pair):
    name, _, ours, hf = pair
    prompts = _prompts()
    expected = []
    for p in prompts:
        ids = torch.tensor([p])
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
        expected.append(out[0, len(p) :].tolist())
    assert all(len(e) == NEW_TOKENS and len(set(e)) >= 3 for e in expected), expected  # not a degenerate run

    cache = ContiguousKVCache(ours, num_seqs=2, capacity=max(PROMPT_LENS) + NEW_TOKENS)
    try:
        # chunked prefill: sequence 0 in two chunks, the second one batched with all of sequence 1
        cache.step({0: prompts[0][:25]})
        nxt = cache.step({0: prompts[0][25:], 1: prompts[1]})
        generated = [[nxt[0]], [nxt[1]]]
        while len(generated[0]) < NEW_TOKENS:  # both sequences decode together, one token each per step
            nxt = cache.step({0: [generated[0][-1]], 1: [generated[1][-1]]})
            generated[0].append(nxt[0])
            generated[1].append(nxt[1])
    finally:
        cache.release()
    assert generated == expected


def test_config_and_attention_layers(pair):
    name, path, ours, _ = pair
    cfg = ours.config
    assert isinstance(ours, CLASSES[name]) and isinstance(cfg, CLASSES[name].config_class)
    expected_windows = {
        "llama": [None] * 2,
        "qwen2": [None] * 3,  # the config's sliding_window is ignored: use_sliding_window is off
        "qwen2_swa": [None, 12, 12],  # layers >= max_window_layers (1)
        "gemma3": [8, 8, 8, 8, 8, None, 8],
    }[name]
    assert cfg.sliding_windows == expected_windows
    layers = ours.attention_layers()
    assert [layer.sliding_window for layer in layers] == expected_windows
    assert len(layers) == cfg.num_hidden_layers and all(
        layer.num_kv_heads == cfg.num_key_value_heads for layer in layers
    )
    hf_cfg = json.loads((path / "config.json").read_text())
    for field in ("vocab_size", "hidden_size", "num_hidden_layers", "num_key_value_heads", "max_position_embeddings"):
        assert getattr(cfg, field) == hf_cfg[field]
    assert cfg.head_dim == hf_cfg.get("head_dim", cfg.hidden_size // cfg.num_attention_heads)


# --- rope parameters in both config.json forms ---------------------------------------------------

_LLAMA = dict(vocab_size=32, hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
_ROPES = {
    "default_v4": {"rope_theta": 12_345.0},
    "linear_v4": {"rope_theta": 10_000.0, "rope_scaling": {"type": "linear", "factor": 4.0}},
    "llama3_v4": {
        "rope_theta": 500_000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    },
    "llama3_v5": {
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 128,
        }
    },
    "linear_v5": {"rope_parameters": {"rope_type": "linear", "rope_theta": 50_000.0, "factor": 2.0}},
}


@pytest.mark.parametrize("form", list(_ROPES))
def test_rope_inv_freq_matches_transformers(form):
    hf_dict = {**_LLAMA, "max_position_embeddings": 4096, **json.loads(json.dumps(_ROPES[form]))}
    ours = LlamaConfig.from_hf(hf_dict)
    hf = HFLlamaConfig(**json.loads(json.dumps(hf_dict)))
    rope_type = hf.rope_parameters["rope_type"]
    assert ours.rope.type == rope_type
    if rope_type == "default":
        expected = 1.0 / (hf.rope_parameters["rope_theta"] ** (torch.arange(0, 16, 2).float() / 16))
    else:
        expected, _ = ROPE_INIT_FUNCTIONS[rope_type](hf)
    torch.testing.assert_close(rope_inv_freq(ours.rope, ours.head_dim), expected, rtol=0, atol=0)


def test_gemma3_config_from_v4_fields():
    """Older Gemma 3 config.json: rope_theta / rope_scaling for global layers, rope_local_base_freq for local."""
    cfg = Gemma3TextConfig.from_hf(
        dict(
            _LLAMA,
            num_hidden_layers=12,
            head_dim=32,
            rope_theta=1_000_000.0,
            rope_local_base_freq=10_000.0,
            rope_scaling={"rope_type": "linear", "factor": 8.0},
            sliding_window=512,
            sliding_window_pattern=6,
        )
    )
    assert (cfg.rope.type, cfg.rope.theta, cfg.rope.factor) == ("linear", 1_000_000.0, 8.0)
    assert (cfg.rope_local.type, cfg.rope_local.theta) == ("default", 10_000.0)
    assert cfg.sliding_windows == [512] * 5 + [None] + [512] * 5 + [None]
    assert cfg.tie_word_embeddings and cfg.hidden_act == "gelu_pytorch_tanh"


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, overrides, message",
    [
        (
            LlamaConfig,
            {"num_key_value_heads": 3},
            "num_attention_heads (4) must be divisible by num_key_value_heads (3)",
        ),
        (LlamaConfig, {"hidden_size": None}, "no 'hidden_size'"),
        (LlamaConfig, {"rope_scaling": {"rope_type": "longrope", "factor": 2.0}}, "rope type 'longrope' is not"),
        (LlamaConfig, {"hidden_act": "mish"}, "hidden_act 'mish' is not supported"),
        (LlamaConfig, {"head_dim": 15}, "head_dim must be even"),
        (Gemma3TextConfig, {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping is not supported"),
        (Gemma3TextConfig, {"layer_types": ["full_attention"] * 2}, "2 layer_types for 1 layers"),
        (Gemma3TextConfig, {"layer_types": ["chunked_attention"]}, "unknown layer_types ['chunked_attention']"),
    ],
)
def test_config_errors_are_clear(cls, overrides, message):
    with pytest.raises(ConfigError) as err:
        cls.from_hf({**_LLAMA, "max_position_embeddings": 128, **overrides})
    assert message in str(err.value)


def test_registry_names_supported_architectures(tmp_path):
    assert resolve_model_class({"architectures": ["PhiForCausalLM", "Qwen2ForCausalLM"]}) is Qwen2ForCausalLM
    with pytest.raises(UnsupportedArchitectureError) as err:
        resolve_model_class({"architectures": ["MambaForCausalLM"]})
    names = ["MambaForCausalLM", "LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM", "BertModel"]
    names += ["MistralForCausalLM", "LlavaForConditionalGeneration", "LlavaNextForConditionalGeneration"]
    names += ["BertForSequenceClassification", "XLMRobertaForSequenceClassification", "Qwen3ForCausalLM"]
    for name in names:
        assert name in str(err.value)
    (tmp_path / "config.json").write_text(json.dumps({**_LLAMA, "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedArchitectureError, match="supported: BertForSequenceClassification, BertModel, "):
        load_model(tmp_path)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return rc.llama_checkpoint(tmp_path_factory.mktemp("llama_errors"))


def test_load_weights_rejects_unknown_missing_and_misshapen(llama_dir):
    weights = load_file(str(llama_dir / "model.safetensors"))
    model = LlamaForCausalLM(LlamaConfig.from_hf(json.loads((llama_dir / "config.json").read_text())))
    with pytest.raises(KeyError, match="model.layers.0.self_attn.rotary.weight"):
        model.load_weights([*weights.items(), ("model.layers.0.self_attn.rotary.weight", torch.zeros(1))])
    incomplete = {
        k: v for k, v in weights.items() if k not in ("model.layers.1.self_attn.k_proj.bias", "lm_head.weight")
    }
    with pytest.raises(KeyError) as err:
        model.load_weights(incomplete.items())
    assert "model.layers.1.self_attn.k_proj.bias" in str(err.value) and "lm_head.weight" in str(err.value)
    wrong = dict(weights, **{"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 64)})
    with pytest.raises(ValueError, match=r"model.layers.0.mlp.up_proj.weight.*\(3, 64\)"):
        model.load_weights(wrong.items())
    # a buffer some checkpoints carry is ignored, the rest loads
    model.load_weights([*weights.items(), ("model.layers.0.self_attn.rotary_emb.inv_freq", torch.zeros(12))])


def test_tied_model_ignores_a_stored_lm_head(tmp_path):
    path = rc.qwen2_checkpoint(tmp_path)
    model = load_model(path)
    assert model.lm_head is None and not any("lm_head" in name for name, _ in model.named_parameters())
    embed = model.model.embed_tokens.weight.clone()
    model.load_weights([*iter_safetensors(path), ("lm_head.weight", torch.zeros_like(embed))])
    torch.testing.assert_close(model.compute_logits(embed[:3]), embed[:3] @ embed.T)


def test_load_model_in_bfloat16_stays_close(llama_dir):
    ref, bf16 = load_model(llama_dir), load_model(llama_dir, dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    logits = rc.prefill_logits(bf16, _prompts())
    assert logits.dtype == torch.float32
    assert (logits - rc.prefill_logits(ref, _prompts())).abs().max() < 0.25
