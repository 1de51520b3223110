"""Answers of the configuration ``make run`` serves (``DEFAULT_MODELS``: the packaged models, ``quantize`` at its
default) do not depend on what else is in the batch: greedy tokens and their logprobs bit for bit the same for a
request alone, beside others, joining mid-flight, or prefilled in chunks of another size; embeddings alone or in a
batch within 1e-6, and within cosine 0.99999 of sentence-transformers."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from inference.config import DEFAULT_MODELS, EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.packaged import minilm_dir
from inference.sampling_params import SamplingParams
from inference.server.registry import build_model
from inference.tokenizer.detokenizer import IncrementalDetokenizer
from tests.support.models import answers_joining_mid_flight, greedy_answers, run_to_end
from tests.support.samples import SENTENCES

pytestmark = pytest.mark.real_model

PROMPTS = [  # each is checked alone and beside the 7 others
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "The best way to learn a new language is",
    "1, 2, 3, 4,",
    "import numpy as np\n",
    "Water boils at",
    "My favourite colour is blue because",
]
TOKENS = 24


@functools.cache
def served(model_id: str):
    """(model, tokenizer) exactly as the default service builds it (one per session: quantizing takes seconds)."""
    spec = next(s for s in DEFAULT_MODELS if s.id == model_id)
    assert spec.engine.quantize is None  # the default: what an operator gets without choosing
    model, tokenizer, _ = build_model(spec)
    return model, tokenizer


def engine(model_id: str, **options) -> LLMEngine:
    model, tokenizer = served(model_id)
    config = EngineConfig(**{"kv_cache_tokens": 2048, **options})
    return LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), config)


def greedy() -> SamplingParams:
    return SamplingParams(max_tokens=TOKENS, temperature=0.0, ignore_eos=True, logprobs=0)


@pytest.mark.parametrize("model_id", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_greedy_answers_do_not_depend_on_the_batch(model_id):
    _, tokenizer = served(model_id)
    ids = [tokenizer.encode(p, add_special_tokens=True) for p in PROMPTS]
    alone = {}
    for i, prompt in enumerate(ids):
        e = engine(model_id)
        e.add_request(str(i), prompt, greedy())
        alone.update(greedy_answers(run_to_end(e)))

    for options in ({}, {"max_batched_tokens": 5}, {"max_batched_tokens": 37}):  # all at once; two chunk sizes
        e = engine(model_id, **options)
        for i, prompt in enumerate(ids):
            e.add_request(str(i), prompt, greedy())
        assert greedy_answers(run_to_end(e)) == alone, options

    # one decoding, the others joining mid-flight in small chunks
    partial = answers_joining_mid_flight(engine(model_id, max_batched_tokens=7), ids, greedy())
    assert partial == alone


def test_embeddings_of_the_default_are_batch_invariant_and_exact():
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    model, _ = served("all-minilm-l6-v2")
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)  # sentence-transformers' limit for this model
    ids = [e.ids for e in tokenizer.encode_batch(SENTENCES)]
    with torch.inference_mode():
        alone = torch.cat([model.embed([i]) for i in ids])
        together = model.embed(ids)
        shuffled = model.embed(ids[::-1]).flip(0)
    assert (alone - together).abs().max().item() <= 1e-6
    assert (alone - shuffled).abs().max().item() <= 1e-6
    reference = SentenceTransformer(str(minilm_dir()), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True).float()
    cosine = F.cosine_similarity(alone, expected, dim=-1)
    print(f"all-MiniLM-L6-v2 as served: cosine vs sentence-transformers min {cosine.min().item():.7f}")
    assert cosine.min().item() >= 0.99999
