"""GGUF weights kept in their blocks (``engine.weights = "gguf"``): which projections move to the Triton
matmul on the real Gemma 3 file, and that they compute what the dense (converted) weights compute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import quants

from inference import packaged
from inference.gguf_weights import GGUFLinear, use_gguf_weights
from inference.loader.convert import _unpermute_rope_rows, ensure_converted
from inference.loader.safetensors import load_model


@pytest.fixture(scope="module")
def gemma():
    path = packaged.gemma3_gguf()
    model = load_model(ensure_converted(path), dtype=torch.float32, device="cpu").eval()
    dense = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    embed = model.model.embed_tokens.weight.detach().clone()
    replaced = use_gguf_weights(model, path, torch.device("cpu"))
    return model, dense, embed, replaced


def test_supported_gguf_types_move_to_blocks_and_the_rest_stays_dense(gemma):
    model, _, _, replaced = gemma
    kinds = [m.qtype for m in model.modules() if isinstance(m, GGUFLinear)]
    # Gemma 3 270M Q4_K_M: o_proj Q4_K, down_proj Q4_K / Q6_K, the tied head reads the Q8_0 embedding;
    # q/k/v and gate/up are Q5_0 (no kernel), so they stay dense
    assert replaced == len(kinds) == 37 and sorted(set(kinds)) == ["Q4_K", "Q6_K", "Q8_0"]
    layer = model.model.layers[0]
    assert isinstance(layer.self_attn.o_proj, GGUFLinear) and isinstance(layer.mlp.down_proj, GGUFLinear)
    assert not isinstance(layer.self_attn.qkv_proj, GGUFLinear) and hasattr(layer.self_attn.qkv_proj, "split")
    assert isinstance(model.lm_head, GGUFLinear) and model.lm_head.qtype == "Q8_0"


@pytest.mark.parametrize("name", ["model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj",
                                  "model.layers.17.mlp.down_proj"])  # fmt: skip
def test_block_projections_compute_what_the_converted_weights_do(gemma, name):
    model, dense, _, _ = gemma
    ours = model.get_submodule(name)
    x = torch.randn(3, ours.in_features, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ours(x), dense[name](x), atol=1e-4, rtol=1e-4)


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
