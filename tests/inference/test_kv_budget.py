"""Sizing the paged KV cache (the arithmetic from GPU memory, the bytes per token of a real layout) and the
batch sizes decode CUDA graphs are captured for."""

from __future__ import annotations

import pytest
import torch

from inference.engine.kv_budget import kv_bytes_per_token, kv_tokens_for_memory
from inference.env import ConfigError
from inference.loader.safetensors import load_model
from tests.support import checkpoints as rc

GiB = 2**30


def test_tokens_fill_the_budget_left_after_weights_and_activations_in_whole_blocks():
    # 80 GiB GPU, 16 GiB in use (weights), 0.9 of it ours, 2 GiB of activations, 128 KiB per token (Llama-8B bf16)
    tokens = kv_tokens_for_memory(64 * GiB, 80 * GiB, 0.9, 2 * GiB, 131072, 16)
    budget = int(80 * GiB * 0.9) - 16 * GiB - 2 * GiB
    assert tokens % 16 == 0 and tokens * 131072 <= budget < (tokens + 16) * 131072
    assert tokens == 442_368  # 54 GiB of cache


def test_no_room_for_a_block_is_a_clear_error():
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        kv_tokens_for_memory(1 * GiB, 80 * GiB, 0.9, 2 * GiB, 131072, 16)


def test_bytes_per_token_count_k_and_v_of_every_attention_layer(tmp_path):
    model = load_model(rc.llama_checkpoint(tmp_path), dtype=torch.float32, device="cpu")
    cfg = model.config
    expected = cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * cfg.head_dim
    assert kv_bytes_per_token(model, torch.bfloat16) == expected * 2
    assert kv_bytes_per_token(model, torch.float32) == expected * 4


def test_decode_graphs_cover_every_batch_size_up_to_max_num_seqs():
    from inference.engine.cuda_graphs import graph_batch_sizes

    assert graph_batch_sizes(1) == [1]
    assert graph_batch_sizes(8) == [1, 2, 4, 8]
    assert graph_batch_sizes(40) == [1, 2, 4, 8, 16, 32, 40]
    assert graph_batch_sizes(256)[-3:] == [224, 240, 256]
    sizes = graph_batch_sizes(100)
    assert all(any(s >= n for s in sizes) for n in range(1, 101)) and sizes[-1] == 100
