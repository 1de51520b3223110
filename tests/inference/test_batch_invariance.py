"""Answers of the configuration ``make run`` serves (``DEFAULT_MODELS``: the packaged models, ``quantize`` at its
default) do not depend on what else is in the batch: greedy tokens and their logprobs bit for bit the same for a
request alone, beside others, joining mid-flight, or prefilled in chunks of another size; embeddings bit for bit the
same alone or in a batch (quantized by an operator too), and within cosine 0.99999 of sentence-transformers. The
same for a chat model an operator serves unquantized (``quantize = "none"``: float layers whose rows do not depend on
the row count)."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

from inference.config import DEFAULT_MODELS, EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.packaged import minilm_dir
from inference.sampling_params import SamplingParams
from inference.server.registry import build_model, prepare_cpu
from inference.tokenizer.detokenizer import IncrementalDetokenizer
from inference.weights.quantize import QuantizedLinear
from inference.weights.unquantized import FloatLinear
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
def served(model_id: str, quantize: str | None = None):
    """(model, tokenizer) exactly as the default service builds it, or with the operator's ``quantize`` (one per
    session: quantizing takes seconds)."""
    spec = next(s for s in DEFAULT_MODELS if s.id == model_id)
    assert spec.engine.quantize is None  # the default: what an operator gets without choosing
    if quantize is not None:
        spec = dataclasses.replace(spec, engine=dataclasses.replace(spec.engine, quantize=quantize))
    model, tokenizer, _ = build_model(spec)
    return model, tokenizer


def engine(model_id: str, quantize: str | None = None, **options) -> LLMEngine:
    model, tokenizer = served(model_id, quantize)
    config = EngineConfig(**{"kv_cache_tokens": 2048, **options})
    return LLMEngine(model, tokenizer, lambda tok, prompt: IncrementalDetokenizer(tok, prompt), config)


def greedy(tokens: int = TOKENS) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, logprobs=0)


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


def test_unquantized_answers_do_not_depend_on_the_batch():
    """SmolLM2 under ``quantize = "none"`` (fp32 everywhere): plain fp32 GEMMs gave no prompt its logprobs bit for bit
    alone and batched (``benchmarks/bench_quality.py``); every projection and the tied head are now ``FloatLinear``."""
    model, tokenizer = served("smollm2-135m-instruct", "none")
    assert isinstance(model.lm_head, FloatLinear) and not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    ids = [tokenizer.encode(p, add_special_tokens=True) for p in PROMPTS[:4]]
    alone = {}
    for i, prompt in enumerate(ids):
        e = engine("smollm2-135m-instruct", "none")
        e.add_request(str(i), prompt, greedy(12))
        alone.update(greedy_answers(run_to_end(e)))
    for options in ({}, {"max_batched_tokens": 5}):
        e = engine("smollm2-135m-instruct", "none", **options)
        for i, prompt in enumerate(ids):
            e.add_request(str(i), prompt, greedy(12))
        assert greedy_answers(run_to_end(e)) == alone, options


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
    assert torch.equal(alone, together) and torch.equal(alone, shuffled)  # every layer a FloatLinear (``none``)
    reference = SentenceTransformer(str(minilm_dir()), device="cpu")
    expected = reference.encode(SENTENCES, convert_to_tensor=True).float()
    cosine = F.cosine_similarity(alone, expected, dim=-1)
    print(f"all-MiniLM-L6-v2 as served: cosine vs sentence-transformers min {cosine.min().item():.7f}")
    assert cosine.min().item() >= 0.99999


@pytest.mark.parametrize("mode", ["int8", "auto"])
def test_an_embedding_model_an_operator_quantizes_is_batch_invariant_too(mode):
    """Each row of an encoder is a prompt row (``ForwardContext.for_prompts(..., roles=True)``): on the quantized
    layers' prefill weights whatever the count. Before, a short sentence alone took the int kernels and beside others
    the prefill weights: up to 2e-2 apart (``benchmarks/bench_quality.py``)."""
    from tokenizers import Tokenizer

    model = load_model(minilm_dir()).eval()
    prepare_cpu(model, mode)
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    ids = [e.ids for e in tokenizer.encode_batch(SENTENCES)]
    with torch.inference_mode():
        alone = torch.cat([model.embed([i]) for i in ids])
        assert torch.equal(alone, model.embed(ids)) and torch.equal(alone, model.embed(ids[::-1]).flip(0))
