"""Mixtures of experts on the CPU as the service runs them (``quantize`` at its default, ``auto``): every expert's
matrices quantized like the dense layers (``QuantizedExperts``), close to the float model, and answers that do not
depend on what else is in the batch (a token's rows through an expert the same however many other tokens chose
it): greedy tokens and logprobs bit for bit the same alone, together, and joining mid-flight in small chunks. The
same under ``quantize = "none"``, whose experts are float (``FloatLinear``)."""

from __future__ import annotations

import functools

import pytest
import torch

from inference.config import EngineConfig
from inference.engine.llm_engine import LLMEngine
from inference.layers.moe import FusedMoE
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.weights import row_blocks
from inference.weights.quantize import QuantizedLinear, quantize
from inference.weights.quantize_moe import QuantizedExperts
from inference.weights.unquantized import FloatLinear, check_rows, keep_float
from tests.support import checkpoints as rc
from tests.support import moe_checkpoints as mc
from tests.support.checkpoints import IdDetokenizer, IdTokenizer
from tests.support.models import answers_joining_mid_flight, greedy_answers, run_to_end

BUILDERS = {
    "mixtral": mc.mixtral_checkpoint,
    "qwen2moe": mc.qwen2_moe_checkpoint,  # a gated shared expert, a dense layer among sparse ones
    "deepseek-v2": lambda p: mc.deepseek_v2_checkpoint(p, grouped=True),  # MLA, shared experts, dense first layer
}
PROMPT_LENS = (11, 3, 17, 6, 9, 14)
TOKENS = 12


@pytest.fixture(scope="module", params=list(BUILDERS))
def checkpoint(request, tmp_path_factory):
    """(name, the random-weight checkpoint's directory)."""
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def served(checkpoint):
    """(name, the float model, the model as the service quantizes it)."""
    name, path = checkpoint
    return name, load_model(path).eval(), quantize(load_model(path).eval(), "auto")


@functools.cache
def _prompts(vocab: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]


def test_every_experts_stack_is_quantized_and_close_to_the_float_model(served):
    name, dense, model = served
    assert not any(isinstance(m, FusedMoE) for m in model.modules())
    stacks = [m for m in model.modules() if isinstance(m, QuantizedExperts)]
    assert stacks and all(len(s.w13) == len(s.w2) == s.num_experts for s in stacks)
    assert all(isinstance(layer, QuantizedLinear) for s in stacks for layer in (*s.w13, *s.w2))
    prompts = _prompts(model.config.vocab_size)
    ours, reference = rc.prefill_logits(model, prompts), rc.prefill_logits(dense, prompts)
    kl = torch.nn.functional.kl_div(ours.log_softmax(-1), reference.log_softmax(-1), log_target=True,
                                    reduction="batchmean").item()  # fmt: skip
    agree = (ours.argmax(-1) == reference.argmax(-1)).float().mean().item()
    print(f"{name}: KL(float || quantized) {kl:.2g}, top-1 agreement {agree:.1%}")
    assert kl < 0.01 and agree > 0.9


def _engine(model, **options) -> LLMEngine:
    config = EngineConfig(**{"kv_cache_tokens": 1024, "block_size": 4, **options})
    return LLMEngine(model, IdTokenizer(), IdDetokenizer, config)


def test_answers_do_not_depend_on_the_batch(served):
    _assert_batch_invariant(served[2])


def test_unquantized_answers_do_not_depend_on_the_batch(checkpoint):
    """``quantize = "none"``: every expert a ``FloatLinear`` on the float weights (no copy), and the same checks."""
    model = keep_float(load_model(checkpoint[1]).eval())
    called = [m for name, m in model.named_modules() if name.rpartition(".")[2] not in getattr(model, "dense_only", ())]
    assert not any(isinstance(m, FusedMoE | torch.nn.Linear) for m in called)  # DeepSeek's kv_b_proj is only read
    stacks = [m for m in model.modules() if isinstance(m, QuantizedExperts)]
    assert stacks and all(isinstance(layer, FloatLinear) for s in stacks for layer in (*s.w13, *s.w2))
    check_rows(model)  # as the service does at load: every shape's row check made before the first step
    threads = torch.get_num_threads()
    shapes = {(*m.weight.shape, m.weight.dtype, threads) for m in model.modules() if isinstance(m, FloatLinear)}
    assert shapes <= set(row_blocks._CHECKED)
    _assert_batch_invariant(model)


def _assert_batch_invariant(model) -> None:
    greedy = SamplingParams(max_tokens=TOKENS, temperature=0.0, ignore_eos=True, logprobs=0)
    prompts = _prompts(model.config.vocab_size)
    alone = {}
    for i, prompt in enumerate(prompts):
        e = _engine(model)
        e.add_request(str(i), prompt, greedy)
        alone.update(greedy_answers(run_to_end(e)))
    assert len({tuple(ids) for ids, _ in alone.values()}) == len(prompts)  # not one degenerate answer

    together = _engine(model)
    for i, prompt in enumerate(prompts):
        together.add_request(str(i), prompt, greedy)
    assert greedy_answers(run_to_end(together)) == alone

    # one decoding, the others joining mid-flight in small chunks
    partial = answers_joining_mid_flight(_engine(model, max_batched_tokens=5), prompts, greedy)
    assert partial == alone
