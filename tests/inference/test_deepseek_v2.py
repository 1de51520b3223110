"""DeepSeek-V2 (multi-head latent attention, experts with shared ones, group-limited routing, yarn rope with
mscale) against transformers on tiny random checkpoints: prefill logits and greedy decoding through the engine,
whose cache holds one latent vector per token and layer (a fraction of a dense model's)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from inference.config import EngineConfig
from inference.engine.kv_budget import describe_kv_cache, kv_bytes_per_token
from inference.engine.llm_engine import LLMEngine
from inference.layers.moe import route
from inference.loader.safetensors import load_model
from inference.models.config import ConfigError
from inference.models.deepseek_v2 import DeepseekV2ForCausalLM
from inference.models.moe_config import DeepseekV2Config
from tests.support import checkpoints as rc
from tests.support import moe_checkpoints as mc
from tests.support.greedy import engine_greedy, hf_greedy

BUILDERS = {
    "v2-lite": mc.deepseek_v2_checkpoint,  # q_proj, greedy routing
    "v2": lambda p: mc.deepseek_v2_checkpoint(p, q_lora_rank=24, grouped=True),  # low-rank q, grouped routing
}
PROMPT_LENS = (70, 23)  # past the yarn rope's original context (64)
NEW_TOKENS = 32


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in PROMPT_LENS]


@pytest.fixture(scope="module", params=list(BUILDERS))
def checkpoint(request, tmp_path_factory):
    path = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    return request.param, path, hf


def test_prefill_logits_match_transformers(checkpoint):
    name, path, hf = checkpoint
    ours = load_model(path, dtype=torch.float32)
    assert isinstance(ours, DeepseekV2ForCausalLM)
    assert ours.config.sparse_layers == [False, True, True]  # the first layer dense
    prompts = _prompts()
    expected = rc.hf_logits(hf, prompts)
    diff = (rc.prefill_logits(ours, prompts) - expected).abs().max().item()
    print(f"{name}: max |logits - transformers| = {diff:.3g}")
    assert diff < 1e-3
    # the rope rows' permutation matters: with the k side's undone, the logits move
    for layer in ours.model.layers:
        kv = layer.self_attn.kv_a_proj_with_mqa.weight.data
        kv[32:] = kv[32:][torch.argsort(torch.cat([torch.arange(0, 8, 2), torch.arange(1, 8, 2)]))]
    assert (rc.prefill_logits(ours, prompts) - expected).abs().max() > 1e-3


def test_the_cache_holds_one_latent_per_token(checkpoint):
    """Per token and layer: the latent (32) and the rope key (8), once; a dense cache of the same attention
    would hold k and v of every head: 4 x (16 + 8) + 4 x 12."""
    _, path, _ = checkpoint
    model = load_model(path, dtype=torch.float32)
    layers = model.config.num_hidden_layers
    assert kv_bytes_per_token(model, torch.float32) == layers * (32 + 8) * 4
    dense = layers * (4 * (16 + 8) + 4 * 12) * 4
    assert dense / kv_bytes_per_token(model, torch.float32) == pytest.approx(144 / 40)
    # the engine gives each layer one buffer of one head, both its keys and its values
    cfg = EngineConfig(device="cpu", kv_cache_tokens=64, block_size=16, kernels="off", quantize="none")
    LLMEngine(model, rc.IdTokenizer(), rc.IdDetokenizer, cfg)
    layer = model.attention_layers()[0]
    assert layer.v_cache is layer.k_cache and tuple(layer.k_cache.shape) == (64, 1, 32 + 8)
    # said at start, with the numbers
    line = describe_kv_cache(model, torch.float32, 512)
    per_token = layers * 40 * 4
    assert line == (f"KV cache: 512 tokens, {per_token} bytes per token (MLA latents: a dense cache of the same "
                    f"heads would take {dense}, 3.6x more)")  # fmt: skip


def test_group_limited_routing_picks_within_the_best_groups():
    scores = torch.tensor([[0.9, 0.0, 0.0, 0.0, 0.5, 0.45, 0.8, 0.1]]).log()  # groups of 2: best 0.9, 0.5, 0.8
    weights, ids = route(scores, 3, renormalize=False, groups=(4, 2), scale=2.0)
    assert sorted(ids[0].tolist()) == [0, 6, 7]  # groups 0 and 3 only: 0.9, 0.8 and 0.1 (not 0.5, in group 2)
    probs = scores.softmax(-1)
    torch.testing.assert_close(weights, 2.0 * probs.gather(1, ids))


def test_config_errors_name_the_field():
    base = dict(vocab_size=32, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                n_routed_experts=6, num_experts_per_tok=2, moe_intermediate_size=16, kv_lora_rank=16,
                qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)  # fmt: skip
    assert DeepseekV2Config.from_hf(base).qk_head_dim == 12
    with pytest.raises(ConfigError, match="group-limited routing needs n_group"):
        DeepseekV2Config.from_hf({**base, "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2})
    with pytest.raises(ConfigError, match="noaux_tc"):
        DeepseekV2Config.from_hf({**base, "topk_method": "noaux_tc"})


def test_engine_greedy_matches_transformers(checkpoint):
    name, path, hf = checkpoint
    prompts = _prompts()
    expected = hf_greedy(hf, prompts, NEW_TOKENS)
    assert all(len(set(e)) >= 3 for e in expected.values()), expected
    assert engine_greedy(path, prompts, NEW_TOKENS, join_after=3) == expected, name


@pytest.mark.interpreter
def test_engine_greedy_on_the_kernels_matches_transformers(checkpoint):
    """MLA on the kernels: one KV head of latent + rope key (40 wide), the decode and paged kernels reading the
    one buffer; a few steps under the interpreter."""
    name, path, hf = checkpoint
    prompts = [p[:17] for p in _prompts()]
    expected = hf_greedy(hf, prompts, 4)
    assert engine_greedy(path, prompts, 4, kernels="on", join_after=2) == expected, name
