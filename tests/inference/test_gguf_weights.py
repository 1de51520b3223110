"""GGUF weights kept in their blocks (``engine.weights = "gguf"``): which projections move to the Triton
matmul on the real Gemma 3 and SmolLM2 files, and that they compute what the dense (converted) weights compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import quants

from inference import packaged
from inference.loader.convert import _unpermute_rope_rows, ensure_converted
from inference.loader.safetensors import load_model
from inference.weights.gguf import GGUFLinear, strip_block_weights, use_gguf_weights

pytestmark = [pytest.mark.real_model, pytest.mark.interpreter]


def _on_blocks(path):
    model = load_model(ensure_converted(path), dtype=torch.float32, device="cpu").eval()
    dense = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    embed = model.model.embed_tokens.weight.detach().clone()
    replaced = use_gguf_weights(model, path, torch.device("cpu"))
    return model, dense, embed, replaced


@pytest.fixture(scope="module")
def gemma():
    return _on_blocks(packaged.gemma3_gguf())


@pytest.fixture(scope="module")
def smollm2():
    return _on_blocks(packaged.smollm2_gguf())


def test_every_gemma_projection_moves_to_blocks(gemma):
    model, dense, _, replaced = gemma
    kinds = {name: m.qtype for name, m in model.named_modules() if isinstance(m, GGUFLinear)}
    # Gemma 3 270M Q4_K_M, 18 layers: q/k/v (one fused projection) and gate/up in Q5_0, except v in Q8_0 on half
    # the layers; o_proj in Q4_K; down_proj in Q4_K or Q6_K; the tied head reads the Q8_0 embedding
    assert replaced == len(kinds) == 18 * 4 + 1 and not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert kinds["model.layers.0.self_attn.qkv_proj"] == "Q5_0+Q8_0"
    assert kinds["model.layers.2.self_attn.qkv_proj"] == "Q5_0"
    assert kinds["model.layers.2.mlp.gate_up_proj"] == "Q5_0"
    assert kinds["model.layers.0.mlp.down_proj"] == "Q6_K" and kinds["model.layers.2.mlp.down_proj"] == "Q4_K"
    assert kinds["model.layers.0.self_attn.o_proj"] == "Q4_K" and kinds["lm_head"] == "Q8_0"
    assert hasattr(model.model.layers[0].self_attn.qkv_proj, "split")
    for name, module in dense.items():  # same shapes as the dense layers they replace
        ours = model.get_submodule(name)
        assert (ours.in_features, ours.out_features) == (module.in_features, module.out_features)


def test_every_smollm2_projection_moves_to_q4_1_blocks(smollm2):
    model, _, _, replaced = smollm2
    kinds = [m.qtype for m in model.modules() if isinstance(m, GGUFLinear)]
    # 30 layers x (qkv, o, gate/up, down) in Q4_1, and the tied head on the Q8_0 embedding
    assert replaced == len(kinds) == 30 * 4 + 1
    assert kinds.count("Q4_1") == 120 and model.lm_head.qtype == "Q8_0"


@pytest.mark.parametrize(
    "which,name",
    [
        ("gemma", "model.layers.0.self_attn.o_proj"),  # Q4_K
        ("gemma", "model.layers.0.mlp.down_proj"),  # Q6_K
        ("gemma", "model.layers.0.self_attn.qkv_proj"),  # Q5_0 + Q8_0, two matmuls concatenated
        ("gemma", "model.layers.2.mlp.gate_up_proj"),  # Q5_0
        ("smollm2", "model.layers.0.self_attn.qkv_proj"),  # Q4_1, llama's q/k rows unpermuted on blocks
        ("smollm2", "model.layers.29.mlp.down_proj"),  # Q4_1
    ],
)
def test_block_projections_compute_what_the_converted_weights_do(request, which, name):
    model, dense, _, _ = request.getfixturevalue(which)
    ours = model.get_submodule(name)
    x = torch.randn(3, ours.in_features, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x), dense[name](x), atol=1e-4, rtol=1e-4)
    if len(ours.qtypes) > 1:
        with pytest.raises(TypeError, match="one block tensor per type"):
            ours.blocks  # noqa: B018


@pytest.mark.parametrize("which", ["gemma", "smollm2"])
def test_the_service_never_allocates_the_dense_projections(request, which):
    """As the service loads a GGUF on its blocks: the model is built on the meta device, the projections that go to
    blocks lose their dense matrices before anything is allocated, their checkpoint tensors are not read, and the
    result holds exactly what loading dense then swapping gives (blocks, biases, norms, embeddings)."""
    expected, dense, _, replaced = request.getfixturevalue(which)
    path = packaged.gemma3_gguf() if which == "gemma" else packaged.smollm2_gguf()
    skipped: set[str] = set()

    def strip(model):
        skipped.update(strip_block_weights(model, path))
        return skipped

    model = load_model(ensure_converted(path), dtype=torch.float32, device="cpu", strip=strip)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and not any(hasattr(m, "weight") for m in linears)  # every projection of these files
    assert all(name.endswith("_proj.weight") for name in skipped) and len(skipped) >= len(dense)
    assert use_gguf_weights(model, path, torch.device("cpu")) == replaced
    ours, theirs = dict(model.named_buffers()), dict(expected.named_buffers())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    ours, theirs = dict(model.named_parameters()), dict(expected.named_parameters())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_the_service_builds_a_gguf_model_on_its_blocks(smollm2):
    """``weights = "gguf"`` in a model's engine config: the registry converts the file without the tensors the blocks
    replace (a conversion of its own, a fraction of the whole one) and builds the same model from it."""
    from safetensors import safe_open

    from inference.config import ConfigError, EngineConfig, ModelSpec
    from inference.server.registry import build_model

    expected, _, _, replaced = smollm2
    engine = EngineConfig(device="cpu", kernels="on", weights="gguf")
    spec = ModelSpec(id="smollm2-blocks", source="packaged:smollm2", kind="chat", engine=engine)
    model, _, directory = build_model(spec)
    whole = ensure_converted(packaged.smollm2_gguf())
    assert directory != whole and (directory / "tokenizer.json").is_file()
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        assert f.keys() and not any(name.endswith("_proj.weight") for name in f.keys())
    assert (directory / "model.safetensors").stat().st_size < (whole / "model.safetensors").stat().st_size / 4
    assert sum(isinstance(m, GGUFLinear) for m in model.modules()) == replaced
    ours, theirs = dict(model.named_parameters()), dict(expected.named_parameters())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    with pytest.raises(ConfigError, match="tensor parallelism shards dense weights"):
        build_model(spec, tp=(0, 2))


def test_unsupported_gguf_type_is_refused():
    with pytest.raises(ValueError, match="Q2_K.*supported: Q8_0"):
        GGUFLinear("Q2_K", torch.zeros(2, 84, dtype=torch.uint8), 256, None)


def test_tied_head_reads_the_embedding_blocks(gemma):
    model, _, embed, _ = gemma
    head = model.lm_head
    rows = slice(1000, 1256)  # a slice of the 262144-row head: the interpreter is slow
    part = GGUFLinear(head.qtype, head.blocks[rows], head.in_features, None)
    x = torch.randn(2, head.in_features, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(part(x), x @ embed[rows].T, atol=1e-4, rtol=1e-4)


def test_rope_rows_are_unpermuted_on_blocks_as_on_weights():
    """Llama's q/k rows come interleaved from llama.cpp; moving block rows equals moving weight rows."""
    heads, head_dim, k = 4, 8, 64
    weights = np.random.default_rng(0).standard_normal((heads * head_dim, k)).astype(np.float32)
    q8 = quants.GGMLQuantizationType.Q8_0
    blocks = quants.quantize(weights, q8)
    # what use_gguf_weights does to block rows: the converter's own permutation, applied to bytes
    on_blocks = quants.dequantize(_unpermute_rope_rows(torch.from_numpy(blocks), heads).numpy(), q8)
    on_weights = _unpermute_rope_rows(torch.from_numpy(quants.dequantize(blocks, q8)), heads)
    assert np.array_equal(on_blocks, on_weights.numpy())
