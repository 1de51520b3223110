"""yarn and dynamic (NTK) rope scaling against transformers' rotary: frequencies, cos / sin (yarn's attention
factor included) and the rotation on the torch path and on the Triton kernel, at positions up to 4x the original
context; the kernel's ``scale`` against the reference; config validation; a Qwen2 checkpoint with yarn."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers import Qwen2Config as HFQwen2Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding, apply_rotary_pos_emb

from inference.layers.context import ForwardContext, forward_context
from inference.layers.rotary import RotaryEmbedding, apply_rope, rope_attention_scale, rope_inv_freq
from inference.loader.safetensors import load_model
from inference.models.config import ConfigError, Qwen2Config
from kernels import reference
from kernels.rotary import rotary_embedding
from tests.support import checkpoints as rc
from tests.support.kernel_cases import DEVICE

HEADS, HEAD_DIM, MAX_POS = 4, 64, 256


def _yarn(theta: float, factor: float | None, **extra) -> dict:
    return {"rope_type": "yarn", "rope_theta": theta, "factor": factor, "original_max_position_embeddings": 64, **extra}


YARN = {
    # Qwen2.5's recipe: factor 4 over the original context, attention factor from the factor alone
    "qwen25": _yarn(1_000_000.0, 4.0),
    # DeepSeek-like: mscale / mscale_all_dim set the attention factor, explicit betas
    "deepseek": _yarn(10_000.0, 40.0, mscale=1.0, mscale_all_dim=0.707, beta_fast=32, beta_slow=1),
    "untruncated": _yarn(10_000.0, 4.0, truncate=False, beta_fast=16, beta_slow=2),
    "explicit_attention_factor": _yarn(10_000.0, 8.0, attention_factor=1.25),
    # factor null: the ratio max_position_embeddings / original (256 / 64)
    "implicit_factor": _yarn(10_000.0, None),
}
DYNAMIC = {"rope_type": "dynamic", "rope_theta": 10_000.0, "factor": 4.0}


def _configs(params: dict) -> tuple[Qwen2Config, HFQwen2Config]:
    """Ours and transformers' config from the same config.json dict."""
    hf_dict = {
        "vocab_size": 32, "hidden_size": HEADS * HEAD_DIM, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": HEADS, "max_position_embeddings": MAX_POS, "rope_parameters": params,
    }  # fmt: skip
    return Qwen2Config.from_hf(json.loads(json.dumps(hf_dict))), HFQwen2Config(**json.loads(json.dumps(hf_dict)))


def _positions(limit: int) -> torch.Tensor:
    """Out of order, past the original context up to ``limit - 1`` (which is always among them)."""
    gen = torch.Generator().manual_seed(0)
    pos = torch.cat([torch.tensor([limit - 1, 0, 63, 64, 65]), torch.randint(0, limit, (27,), generator=gen)])
    return pos[torch.randperm(len(pos), generator=gen)]


def _hf_cos_sin(hf_config, positions: torch.Tensor, dynamic_seq_len: float | None = None):
    """transformers' rotary module: cos, sin [T, head_dim] (scaled by its attention factor). ``dynamic_seq_len``:
    its dynamic frequencies fixed to that length's (its own update computes the base from a float32 tensor, not
    in double as its init function does, and only from the forward's longest position)."""
    module = Qwen2RotaryEmbedding(hf_config)
    if dynamic_seq_len is not None:
        inv_freq, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf_config, seq_len=dynamic_seq_len)
        module.inv_freq.copy_(inv_freq)
        module.max_seq_len_cached = dynamic_seq_len  # no growth: every position is below it
    with torch.no_grad():
        cos, sin = module(torch.zeros(1, dtype=torch.float32), positions[None])
    return cos[0], sin[0]


def _check_against_transformers(ours, hf_config, positions, expected_inv_freq, dynamic_seq_len=None):
    # frequencies: identical
    torch.testing.assert_close(rope_inv_freq(ours.rope, HEAD_DIM), expected_inv_freq, rtol=0, atol=0)
    cos, sin = _hf_cos_sin(hf_config, positions, dynamic_seq_len)
    half = HEAD_DIM // 2
    # torch path: cos and rotate-half's signed sin
    emb = RotaryEmbedding(HEAD_DIM, ours.rope)
    rope = emb(positions, torch.float32)
    torch.testing.assert_close(rope.cos[:, 0], cos, rtol=0, atol=1e-5)
    torch.testing.assert_close(rope.signed_sin[:, 0], torch.cat((-sin[:, :half], sin[:, half:]), -1), rtol=0, atol=1e-5)
    # the rotation, torch path against transformers' apply_rotary_pos_emb
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(len(positions), HEADS, HEAD_DIM, generator=gen), torch.randn(len(positions), 2, HEAD_DIM)
    want_q, want_k = apply_rotary_pos_emb(q.transpose(0, 1), k.transpose(0, 1), cos, sin, unsqueeze_dim=0)
    got_q, got_k = apply_rope(q, k, rope)
    torch.testing.assert_close(got_q, want_q.transpose(0, 1), rtol=0, atol=1e-5)
    torch.testing.assert_close(got_k, want_k.transpose(0, 1), rtol=0, atol=1e-5)
    return q, k, want_q.transpose(0, 1), want_k.transpose(0, 1)


def _kernel_rotation(rope_params, positions, q, k):
    """The kernel path of ``apply_rope`` on ``INFERENCE_TEST_DEVICE`` -> rotated (q, k) on the CPU."""
    emb = RotaryEmbedding(HEAD_DIM, rope_params)
    emb.kernels = True
    rope = emb(positions.to(DEVICE), torch.float32)
    assert rope.cos is None and rope.scale == rope_attention_scale(rope_params)
    return tuple(x.cpu() for x in apply_rope(q.to(DEVICE), k.to(DEVICE), rope))


def _yarn_case(name: str):
    ours, hf_config = _configs(YARN[name])
    expected, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](hf_config)
    assert rope_attention_scale(ours.rope) == pytest.approx(attention_factor, rel=1e-12)
    return ours, hf_config, expected


@pytest.mark.parametrize("name", list(YARN))
def test_yarn_matches_transformers_on_the_torch_path(name):
    ours, hf_config, expected = _yarn_case(name)
    if name != "explicit_attention_factor":
        assert rope_attention_scale(ours.rope) > 1.0  # the factor is exercised
    _check_against_transformers(ours, hf_config, _positions(4 * 64), expected)


@pytest.mark.interpreter
@pytest.mark.parametrize("name", ["qwen25", "deepseek"])
def test_yarn_matches_transformers_on_the_kernel(name):
    ours, hf_config, expected = _yarn_case(name)
    positions = _positions(4 * 64)
    q, k, want_q, want_k = _check_against_transformers(ours, hf_config, positions, expected)
    got_q, got_k = _kernel_rotation(ours.rope, positions, q, k)
    torch.testing.assert_close(got_q, want_q, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_k, want_k, rtol=0, atol=1e-5)


def test_dynamic_uses_the_whole_stretched_context():
    """Our frequencies are transformers' dynamic ones for seq_len = max_position_embeddings * factor, fixed: at
    every position, whatever the batch (transformers' module recomputes them from each forward's longest
    position)."""
    ours, hf_config = _configs(DYNAMIC)
    seq_len = MAX_POS * DYNAMIC["factor"]
    expected, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf_config, seq_len=seq_len)
    default = 1.0 / DYNAMIC["rope_theta"] ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)
    assert (expected[1:] < default[1:]).all()  # the base was enlarged
    _check_against_transformers(ours, hf_config, _positions(int(seq_len)), expected, seq_len)
    # a batch of short positions still gets the long-context frequencies (transformers' would not)
    short = RotaryEmbedding(HEAD_DIM, ours.rope)(torch.arange(10), torch.float32)
    freqs = torch.arange(10).float()[:, None] * expected[None, :]
    torch.testing.assert_close(short.cos[:, 0], torch.cat((freqs, freqs), -1).cos(), rtol=0, atol=0)


@pytest.mark.interpreter
def test_dynamic_matches_transformers_on_the_kernel():
    ours, hf_config = _configs(DYNAMIC)
    seq_len = MAX_POS * DYNAMIC["factor"]
    expected, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf_config, seq_len=seq_len)
    positions = _positions(int(seq_len))
    q, k, want_q, want_k = _check_against_transformers(ours, hf_config, positions, expected, seq_len)
    got_q, got_k = _kernel_rotation(ours.rope, positions, q, k)
    torch.testing.assert_close(got_q, want_q, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_k, want_k, rtol=0, atol=1e-5)


@pytest.mark.interpreter
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("T, H, Hkv, D", [(1, 3, 1, 34), (7, 5, 3, 48), (5, 2, 2, 6)])
def test_kernel_scale_matches_reference_at_odd_shapes(dtype, atol, T, H, Hkv, D):
    gen = torch.Generator().manual_seed(T)
    q, k = torch.randn(T, H, D, generator=gen).to(dtype), torch.randn(T, Hkv, D, generator=gen).to(dtype)
    positions = torch.randint(0, 70_000, (T,), generator=gen)
    inv_freq = 1.0 / 10_000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D)
    scale = 1.1386
    on_device = [x.to(DEVICE) for x in (q, k, positions, inv_freq)]
    got = [x.cpu() for x in rotary_embedding(*on_device, scale=scale)]
    want = reference.rotary_embedding(q, k, positions, inv_freq, scale=scale)
    unscaled = reference.rotary_embedding(q, k, positions, inv_freq)
    for g, w, u in zip(got, want, unscaled, strict=True):
        torch.testing.assert_close(g, w, atol=atol, rtol=atol)
        torch.testing.assert_close(w.float(), u.float() * scale, atol=atol * 2, rtol=atol * 2)


@pytest.mark.parametrize(
    "params, message",
    [
        ({**YARN["qwen25"], "factor": 0.5}, "yarn rope: factor must be >= 1"),
        ({**YARN["qwen25"], "beta_fast": 1, "beta_slow": 2}, "beta_fast > beta_slow > 0, got beta_fast=1.0"),
        ({**YARN["qwen25"], "attention_factor": -1.0}, "yarn rope: attention_factor must be > 0"),
        ({**YARN["qwen25"], "mscale": -0.5}, "yarn rope: mscale must be >= 0"),
        ({**YARN["qwen25"], "original_max_position_embeddings": 0}, "original_max_position_embeddings must be > 0"),
        ({**DYNAMIC, "factor": 0.5}, "dynamic rope: factor must be >= 1"),
        ({**DYNAMIC, "factor": None}, "dynamic rope needs a factor"),
        ({"rope_type": "longrope", "factor": 2.0}, "rope type 'longrope' is not supported"),
    ],
)
def test_config_errors_name_the_field(params, message):
    with pytest.raises(ConfigError) as err:
        _configs(params)
    assert message in str(err.value)


def test_v4_rope_scaling_dict_reads_the_same():
    """An older config.json: ``rope_scaling`` with ``type`` and a top-level ``rope_theta``."""
    v4 = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    ours = Qwen2Config.from_hf(
        dict(vocab_size=32, hidden_size=256, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
             max_position_embeddings=MAX_POS, rope_theta=1_000_000.0, rope_scaling=v4)
    )  # fmt: skip
    assert ours.rope == _configs(YARN["qwen25"])[0].rope


def test_qwen2_with_yarn_matches_transformers_past_the_original_context(tmp_path):
    """A 128-token prompt over an original context of 32 (yarn factor 4): positions up to 4x the original."""
    yarn = {"rope_type": "yarn", "rope_theta": 10_000.0, "factor": 4.0, "original_max_position_embeddings": 32}
    path = rc.qwen2_checkpoint(tmp_path, rope_parameters=yarn)
    ours = load_model(path, dtype=torch.float32)
    assert ours.config.rope.type == "yarn" and ours.model.rotary_emb.scale > 1.0
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in (128, 41)]
    ids = torch.tensor([t for p in prompts for t in p])
    positions = torch.cat([torch.arange(len(p)) for p in prompts])
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(p) for p in prompts])):
        logits = ours.compute_logits(ours(ids, positions))
        expected = torch.cat([hf(torch.tensor([p])).logits[0] for p in prompts]).float()
    diff = (logits - expected).abs().max().item()
    print(f"qwen2 yarn: max |logits - transformers| = {diff:.3g}")
    assert diff < 1e-3


@pytest.mark.parametrize(
    ("max_pos", "params", "context"),
    [
        (32, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, 128),  # Qwen2.5 + yarn
        (128, {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}, 128),  # DeepSeek's way
        (64, {"rope_type": "dynamic", "factor": 2.0}, 128),
        (64, {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 16}, 64),  # already long
        (64, {"rope_type": "linear", "factor": 2.0}, 64),
        (64, None, 64),
    ],
)
def test_a_stretching_rope_is_the_context_the_engine_serves(max_pos, params, context):
    """As vLLM reads it: yarn serves the original context times the factor, dynamic NTK the context times it."""
    from inference.config import EngineConfig
    from inference.engine.llm_engine import resolve_limits

    config = Qwen2Config.from_hf(
        dict(vocab_size=32, hidden_size=256, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
             max_position_embeddings=max_pos, rope_parameters={"rope_theta": 10_000.0, **(params or {})})
    )  # fmt: skip
    assert config.context_length == context
    assert resolve_limits(config, EngineConfig(kv_cache_tokens=4096)) == (context, 4096)
