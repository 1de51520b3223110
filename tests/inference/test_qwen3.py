"""Qwen3 (QK-norm, explicit head_dim, attention biases, tied or not, optional sliding window) against
transformers' Qwen3ForCausalLM on tiny random checkpoints: prefill logits, and greedy decoding through the whole
engine (scheduler, paged KV cache, chunked prefill), on the torch layers and on the Triton kernels."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from inference.loader.safetensors import load_model
from inference.models.config import ConfigError, Qwen3Config
from inference.models.qwen3 import Qwen3ForCausalLM
from inference.models.registry import resolve_model_class
from tests.support import checkpoints as rc
from tests.support.greedy import engine_greedy, hf_greedy

BUILDERS = {
    "untied": rc.qwen3_checkpoint,
    "tied_swa": lambda path: rc.qwen3_checkpoint(path, tied=True, sliding_window=True),
}
PROMPT_LENS = (40, 23)  # both longer than the window (12)
NEW_TOKENS = 32


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in PROMPT_LENS]


@pytest.fixture(scope="module", params=list(BUILDERS))
def checkpoint(request, tmp_path_factory):
    """(name, checkpoint directory, transformers' model on it)."""
    path = BUILDERS[request.param](tmp_path_factory.mktemp(f"qwen3_{request.param}"))
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    return request.param, path, hf


def test_prefill_logits_match_transformers(checkpoint):
    name, path, hf = checkpoint
    ours = load_model(path, dtype=torch.float32)
    assert isinstance(ours, Qwen3ForCausalLM)
    prompts = _prompts()
    with torch.inference_mode():
        expected = torch.cat([hf(torch.tensor([p])).logits[0] for p in prompts]).float()
    diff = (rc.prefill_logits(ours, prompts) - expected).abs().max().item()
    print(f"{name}: max |logits - transformers| = {diff:.3g}")
    assert diff < 1e-3
    # the QK-norms are exercised: with them dropped the logits move
    for layer in ours.model.layers:
        layer.self_attn.q_norm.weight.data.fill_(1.0)
    assert (rc.prefill_logits(ours, prompts) - expected).abs().max() > 1e-2


def test_config_windows_and_tying(checkpoint):
    name, path, _ = checkpoint
    model = load_model(path)
    cfg = model.config
    assert isinstance(cfg, Qwen3Config) and cfg.head_dim == 24 and cfg.qkv_bias and cfg.o_bias
    assert model.model.layers[0].self_attn.o_proj.bias is not None
    expected = {"untied": [None] * 3, "tied_swa": [None, 12, 12]}[name]
    assert cfg.sliding_windows == expected == [layer.sliding_window for layer in model.attention_layers()]
    assert (model.lm_head is None) == (name == "tied_swa") == cfg.tie_word_embeddings
    hf_cfg = json.loads((path / "config.json").read_text())
    assert resolve_model_class(hf_cfg) is Qwen3ForCausalLM


def test_config_errors_name_the_field():
    base = dict(vocab_size=32, hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)
    assert Qwen3Config.from_hf(base).head_dim == 128  # transformers' default when config.json has none
    with pytest.raises(ConfigError, match="head_dim must be even"):
        Qwen3Config.from_hf({**base, "head_dim": 15})
    with pytest.raises(ConfigError, match="Qwen3Config: config.json has no 'intermediate_size'"):
        Qwen3Config.from_hf({**base, "intermediate_size": None})


# --- the whole engine ---------------------------------------------------------------------------


def test_engine_greedy_matches_transformers(checkpoint):
    name, path, hf = checkpoint
    prompts = _prompts()
    expected = hf_greedy(hf, prompts, NEW_TOKENS)
    assert all(len(set(e)) >= 3 for e in expected.values()), expected  # not a degenerate run
    assert engine_greedy(path, prompts, NEW_TOKENS) == expected, name


@pytest.mark.interpreter
def test_engine_greedy_on_the_kernels_matches_transformers(checkpoint):
    """The kernel path (QK-norm per head on the rms_norm kernel, in-place rotary): a few steps under the
    interpreter; the prompts are longer than the window."""
    name, path, hf = checkpoint
    prompts = [p[:17] for p in _prompts()]
    expected = hf_greedy(hf, prompts, 4)
    assert engine_greedy(path, prompts, 4, kernels="on") == expected, name
