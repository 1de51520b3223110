"""Greedy decoding two ways, for the model tests: transformers' ``generate`` on each prompt alone, and our whole
engine (scheduler, paged KV cache, chunked prefill; a request may join mid-flight) on all of them."""

from __future__ import annotations

from pathlib import Path

import torch

from inference.config import EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from tests.support.checkpoints import IdDetokenizer, IdTokenizer
from tests.support.kernel_cases import DEVICE


def hf_greedy(hf, prompts: list[list[int]], new_tokens: int) -> dict[str, list[int]]:
    """Request id (the prompt's index) -> the tokens transformers generates greedily after it."""
    expected = {}
    for i, p in enumerate(prompts):
        ids = torch.tensor([p])
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False)
        expected[str(i)] = out[0, len(p) :].tolist()
    return expected


def engine_greedy(
    path: Path, prompts: list[list[int]], new_tokens: int, kernels: str = "off", join_after: int | None = None
) -> dict[str, list[int]]:
    """Every prompt through one engine, batched, the long ones chunked (a 32-token budget), blocks of 5, fp32
    weights; on ``INFERENCE_TEST_DEVICE`` (the kernels compiled there on a GPU, interpreted on the CPU).
    ``join_after``: the prompts after the first join after that many steps."""
    model = load_model(path, dtype=torch.float32, device=str(DEVICE)).eval()
    cfg = EngineConfig(device=str(DEVICE), kv_cache_tokens=512, block_size=5, kernels=kernels, max_batched_tokens=32,
                       quantize="none")  # fmt: skip
    engine = LLMEngine(model, IdTokenizer(), IdDetokenizer, cfg)
    greedy = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
    waiting = list(enumerate(prompts))
    got: dict[str, list[int]] = {}
    steps = 0
    while waiting or engine.has_work:
        while waiting and (join_after is None or waiting[0][0] == 0 or steps >= join_after):
            i, p = waiting.pop(0)
            engine.add_request(str(i), p, greedy)
        for delta in engine.step():
            got.setdefault(delta.request_id, []).extend(delta.token_ids)
        steps += 1
    return got
