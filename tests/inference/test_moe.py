"""Mixture-of-experts decoders (Mixtral, Qwen2-MoE, Qwen3-MoE) against transformers on tiny random checkpoints:
prefill logits, and greedy decoding through the whole engine (paged cache, chunked prefill, a request joining
mid-flight); the grouped expert path against the definition (each token through its experts, one by one) at odd
shapes; the router."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from inference.layers.moe import FusedMoE, route
from inference.loader.safetensors import load_model
from inference.models.config import ConfigError
from inference.models.mixtral import MixtralForCausalLM
from inference.models.moe_block import SparseMoeBlock, expert_name
from inference.models.moe_config import MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig
from inference.models.qwen2_moe import Qwen2MoeForCausalLM
from inference.models.qwen3_moe import Qwen3MoeForCausalLM
from inference.models.registry import resolve_model_class
from kernels import reference
from tests.support import checkpoints as rc
from tests.support import moe_checkpoints as mc
from tests.support.greedy import engine_greedy, hf_greedy

FAMILIES = {
    "mixtral": (mc.mixtral_checkpoint, MixtralForCausalLM),
    "mixtral_swa": (lambda p: mc.mixtral_checkpoint(p, sliding_window=12), MixtralForCausalLM),
    "qwen2_moe": (mc.qwen2_moe_checkpoint, Qwen2MoeForCausalLM),
    "qwen3_moe": (mc.qwen3_moe_checkpoint, Qwen3MoeForCausalLM),
}
PROMPT_LENS = (40, 23)
NEW_TOKENS = 32


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(4)
    return [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in PROMPT_LENS]


@pytest.fixture(scope="module", params=list(FAMILIES))
def checkpoint(request, tmp_path_factory):
    """(name, checkpoint directory, transformers' model on it)."""
    path = FAMILIES[request.param][0](tmp_path_factory.mktemp(request.param))
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    return request.param, path, hf


def test_prefill_logits_match_transformers(checkpoint):
    name, path, hf = checkpoint
    ours = load_model(path, dtype=torch.float32)
    assert type(ours) is FAMILIES[name][1]
    assert resolve_model_class(json.loads((path / "config.json").read_text())) is FAMILIES[name][1]
    prompts = _prompts()
    expected = rc.hf_logits(hf, prompts)
    diff = (rc.prefill_logits(ours, prompts) - expected).abs().max().item()
    print(f"{name}: max |logits - transformers| = {diff:.3g}")
    assert diff < 1e-3
    # the experts are exercised: with one expert's weights zeroed the logits move
    block = next(layer.mlp for layer in ours.model.layers if isinstance(layer.mlp, SparseMoeBlock))
    block.experts.w2_weight.data[0].zero_()
    assert (rc.prefill_logits(ours, prompts) - expected).abs().max() > 1e-3


def test_configs_read_the_layers_and_experts(checkpoint):
    name, path, _ = checkpoint
    cfg = load_model(path).config
    sparse = {"mixtral": [True] * 3, "mixtral_swa": [True] * 3, "qwen2_moe": [True, False, True],
              "qwen3_moe": [False, True, False]}[name]  # fmt: skip
    assert cfg.sparse_layers == sparse
    experts = {"mixtral": (8, 2, True, 0), "mixtral_swa": (8, 2, True, 0), "qwen2_moe": (6, 3, False, 80),
               "qwen3_moe": (10, 4, True, 0)}[name]  # fmt: skip
    got = (cfg.num_experts, cfg.num_experts_per_tok, cfg.norm_topk_prob, cfg.shared_expert_intermediate_size)
    assert got == experts
    assert cfg.sliding_windows == ([12] * 3 if name == "mixtral_swa" else [None] * 3)


def test_config_errors_name_the_field():
    base = dict(vocab_size=32, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    with pytest.raises(ConfigError, match="MixtralConfig: config.json has no 'num_local_experts'"):
        MixtralConfig.from_hf(base)
    with pytest.raises(ConfigError, match="num_experts_per_tok must be in 1..num_experts"):
        MixtralConfig.from_hf({**base, "num_local_experts": 2, "num_experts_per_tok": 3})
    moe = {**base, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16}
    assert Qwen2MoeConfig.from_hf({**moe, "decoder_sparse_step": 2}).sparse_layers == [False, True]
    assert Qwen3MoeConfig.from_hf({**moe, "mlp_only_layers": [0]}).sparse_layers == [False, True]
    with pytest.raises(ConfigError, match="moe_intermediate_size"):
        Qwen3MoeConfig.from_hf({**moe, "moe_intermediate_size": None})


def test_checkpoint_names_of_the_experts():
    assert expert_name("model.layers.3.block_sparse_moe.experts.7.w1.weight") == (
        "model.layers.3.mlp.experts.w13_weight", "7.gate")  # fmt: skip
    assert expert_name("model.layers.0.mlp.experts.11.down_proj.weight") == ("model.layers.0.mlp.experts.w2_weight",
                                                                             "11.down")  # fmt: skip
    assert expert_name("model.layers.0.block_sparse_moe.gate.weight") == "model.layers.0.mlp.gate.weight"
    shared = "model.layers.0.mlp.shared_expert.up_proj.weight"
    assert expert_name(shared) == shared


# --- the expert path ----------------------------------------------------------------------------------------------


def _by_definition(x, w13, w2, weights, ids):
    """Each token through each of its experts, one at a time: sum_j weight_j * down_e(silu(gate_e x) * up_e x)."""
    out = torch.zeros_like(x)
    inter = w2.shape[2]
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            gate_up = w13[e] @ x[t]
            out[t] += weights[t, j] * (w2[e] @ (F.silu(gate_up[:inter]) * gate_up[inter:]))
    return out


@pytest.mark.parametrize(("T", "E", "k", "H", "inter"), [(1, 3, 1, 24, 20), (7, 8, 2, 24, 20), (33, 5, 3, 40, 12),
                                                         (64, 16, 4, 16, 36)])  # fmt: skip
def test_the_reference_equals_the_definition(T, E, k, H, inter):
    gen = torch.Generator().manual_seed(T * 100 + E)
    x = torch.randn(T, H, generator=gen)
    w13 = torch.randn(E, 2 * inter, H, generator=gen) / H**0.5
    w2 = torch.randn(E, H, inter, generator=gen) / inter**0.5
    weights, ids = route(torch.randn(T, E, generator=gen), k, renormalize=True)
    got = reference.fused_moe(x, w13, w2, weights, ids)
    torch.testing.assert_close(got, _by_definition(x, w13, w2, weights, ids), atol=1e-5, rtol=1e-5)
    # a token's answer does not depend on the others: each row alone equals its row in the batch
    alone = torch.cat([reference.fused_moe(x[t : t + 1], w13, w2, weights[t : t + 1], ids[t : t + 1])
                       for t in range(T)])  # fmt: skip
    torch.testing.assert_close(alone, got, atol=1e-5, rtol=1e-5)


def test_route_softmax_top_k_and_renormalisation():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 5.0, 1.0]])
    probs = logits.softmax(-1)
    weights, ids = route(logits, 2, renormalize=False)
    assert ids.tolist() == [[1, 2], [2, 3]]
    torch.testing.assert_close(weights, probs.gather(1, ids))
    weights, _ = route(logits, 2, renormalize=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="scoring"):
        route(logits, 2, True, scoring="softplus")


def test_an_expert_left_out_of_the_checkpoint_is_named(tmp_path):
    path = mc.mixtral_checkpoint(tmp_path / "m")
    from safetensors.torch import load_file, save_file

    state = load_file(path / "model.safetensors")
    del state["model.layers.1.block_sparse_moe.experts.5.w3.weight"]
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(KeyError, match=r"experts\[5.up\]"):
        load_model(path)
    assert isinstance(FusedMoE(2, 4, 3).param_shards()["w13_weight"], list)


# --- the whole engine ---------------------------------------------------------------------------


def test_engine_greedy_matches_transformers(checkpoint):
    name, path, hf = checkpoint
    prompts = _prompts()
    expected = hf_greedy(hf, prompts, NEW_TOKENS)
    assert all(len(set(e)) >= 3 for e in expected.values()), expected  # not a degenerate run
    assert engine_greedy(path, prompts, NEW_TOKENS, join_after=3) == expected, name


@pytest.mark.interpreter
def test_engine_greedy_on_the_kernels_matches_transformers(checkpoint):
    """The fused MoE kernel in the engine (with the other kernels): a few steps under the interpreter."""
    name, path, hf = checkpoint
    prompts = [p[:17] for p in _prompts()]
    expected = hf_greedy(hf, prompts, 4)
    assert engine_greedy(path, prompts, 4, kernels="on", join_after=2) == expected, name
