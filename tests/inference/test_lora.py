"""LoRA adapters (``inference/loader/lora.py``, ``inference/layers/lora.py``) on a tiny random-weight Llama (and
Qwen2, Qwen3, Gemma 3), against transformers with PEFT: adapters PEFT itself writes (random A and B, every
projection targeted, rsLoRA too), logits within 1e-3 in float32 and greedy tokens identical; in the engine beside
requests of the base model and of another adapter, on the default quantization with the fused decode: every answer
bit for bit what it is alone; the prefix cache never gives one adapter's blocks to another; adapters it cannot
serve are refused by name."""

from __future__ import annotations

import json

import pytest
import torch

from inference.env import ConfigError
from inference.layers.context import ForwardContext, forward_context
from inference.loader.lora import attach
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.tokenizer.tokenizer import Tokenizer
from inference.weights.quantize import quantize
from tests.support import checkpoints
from tests.support.checkpoints import lora_adapter as _adapter
from tests.support.models import engine_on, greedy_answers, run_to_end, watch_preemptions

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a small village by the sea,"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = checkpoints.tiny_chat_checkpoint(tmp_path_factory.mktemp("tiny-chat"))
    return directory, Tokenizer.from_dir(directory)


@pytest.fixture(scope="module")
def adapters(tiny, tmp_path_factory):
    """Two adapters: every projection (r 8), and attention only with rsLoRA (r 4)."""
    base = tiny[0]
    every = _adapter(base, tmp_path_factory.mktemp("every"), 1)
    attention = _adapter(base, tmp_path_factory.mktemp("attention"), 2, targets=["q_proj", "v_proj", "o_proj"], r=4,
                         use_rslora=True)  # fmt: skip
    return every, attention


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=True)


def test_logits_match_transformers_with_peft(tiny, adapters):
    directory, tokenizer = tiny
    prompts = [_ids(tokenizer, p) for p in PROMPTS]
    model = load_model(directory).eval()
    for slot, (_, path) in enumerate(adapters):
        assert attach(model, path, slot) > 0

    flat = torch.tensor([t for p in prompts for t in p])
    positions = torch.cat([torch.arange(len(p)) for p in prompts])
    base = checkpoints.prefill_logits(model, prompts)  # no adapter named: the base model
    for slot, (peft, _) in enumerate(adapters):
        expected = checkpoints.hf_logits(peft, prompts)
        ctx = ForwardContext.for_prompts([len(p) for p in prompts])
        ctx.lora_ids = [slot] * len(flat)
        with torch.inference_mode(), forward_context(ctx):
            ours = model.compute_logits(model(flat, positions))
        torch.testing.assert_close(ours, expected, atol=1e-3, rtol=0)
        assert (ours - base).abs().max() > 0.1  # the adapter does change the answer
    with adapters[0][0].disable_adapter():
        torch.testing.assert_close(base, checkpoints.hf_logits(adapters[0][0], prompts), atol=1e-3, rtol=0)


@pytest.mark.parametrize("family", ["qwen2", "qwen3", "gemma3"])
def test_other_families_logits_match_transformers_with_peft(tmp_path, family):
    """Qwen2 (q/k/v biases), Qwen3 (q/k norms after the projections), Gemma 3 (its own MLP and scaled embeddings)."""
    make = {"qwen2": checkpoints.qwen2_checkpoint, "qwen3": checkpoints.qwen3_checkpoint,
            "gemma3": checkpoints.gemma3_checkpoint}[family]  # fmt: skip
    directory = make(tmp_path / "base")
    peft, path = _adapter(directory, tmp_path / "adapter", 3, use_rslora=True)
    model = load_model(directory).eval()
    attach(model, path, 0)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, checkpoints.VOCAB, (n,), generator=generator).tolist() for n in (5, 11)]
    flat = torch.tensor([t for p in prompts for t in p])
    ctx = ForwardContext.for_prompts([len(p) for p in prompts])
    ctx.lora_ids = [0] * len(flat)
    with torch.inference_mode(), forward_context(ctx):
        ours = model.compute_logits(model(flat, torch.cat([torch.arange(len(p)) for p in prompts])))
    torch.testing.assert_close(ours, checkpoints.hf_logits(peft, prompts), atol=1e-3, rtol=0)


def test_greedy_tokens_match_peft_generate(tiny, adapters):
    directory, tokenizer = tiny
    model = load_model(directory).eval()
    attach(model, adapters[0][1], 0)
    engine = engine_on(model, tokenizer)
    peft = adapters[0][0]
    for i, text in enumerate(PROMPTS):
        ids = _ids(tokenizer, text)
        engine.add_request(str(i), ids, SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True, lora_id=0))
        with torch.inference_mode():
            out = peft.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False, min_new_tokens=16)
        assert run_to_end(engine)[(str(i), 0)]["ids"] == out[0, len(ids) :].tolist(), text


@pytest.fixture(scope="module")
def served(tiny, adapters):
    """The model as ``make run`` serves it: the default quantization (int kernels for generated rows, bf16 copies
    for prompts; the fused decode step where the base model's rows allow), both adapters attached."""
    directory, tokenizer = tiny
    model = quantize(load_model(directory).eval(), "auto")
    for slot, (_, path) in enumerate(adapters):
        attach(model, path, slot)
    return model, tokenizer


def _params(lora_id):
    return SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True, logprobs=2, lora_id=lora_id)


REQUESTS = [(0, None), (1, 0), (2, 1), (0, 1), (1, None), (2, 0)]  # (prompt, adapter)


def test_every_answer_is_what_it_is_alone_whatever_shares_its_steps(served):
    model, tokenizer = served
    alone = {}
    for i, (p, lora) in enumerate(REQUESTS):
        engine = engine_on(model, tokenizer)
        engine.add_request(str(i), _ids(tokenizer, PROMPTS[p]), _params(lora))
        alone.update(greedy_answers(run_to_end(engine)))
    assert alone["0"] != alone["3"] != alone["5"]  # the same prompt: base, adapter 1, adapter 0 answer apart
    together = engine_on(model, tokenizer)
    assert together.runner.fused is not None  # alone, the base model's generated rows took the fused decode step
    for i, (p, lora) in enumerate(REQUESTS):
        together.add_request(str(i), _ids(tokenizer, PROMPTS[p]), _params(lora))
    assert greedy_answers(run_to_end(together)) == alone
    chunked = engine_on(model, tokenizer, max_batched_tokens=7)  # prompts in chunks, prompt and generated rows mixed
    for i, (p, lora) in enumerate(REQUESTS):
        chunked.add_request(str(i), _ids(tokenizer, PROMPTS[p]), _params(lora))
    assert greedy_answers(run_to_end(chunked)) == alone
    cramped = engine_on(model, tokenizer, kv_cache_tokens=96, block_size=8, max_model_len=64)  # some preempted
    preempted = watch_preemptions(cramped)
    for i, (p, lora) in enumerate(REQUESTS):
        cramped.add_request(str(i), _ids(tokenizer, PROMPTS[p]), _params(lora))
    assert greedy_answers(run_to_end(cramped)) == alone and preempted


def test_the_prefix_cache_keeps_each_adapters_blocks_apart(served):
    model, tokenizer = served
    ids = _ids(tokenizer, PROMPTS[2] * 3)  # several full blocks
    fresh = {}
    for lora in (None, 0):
        engine = engine_on(model, tokenizer, block_size=8)
        engine.add_request("x", ids, _params(lora))
        fresh[lora] = greedy_answers(run_to_end(engine))["x"]
    engine = engine_on(model, tokenizer, block_size=8)
    for lora in (None, 0, None, 0):
        engine.add_request("x", ids, _params(lora))
        assert greedy_answers(run_to_end(engine))["x"] == fresh[lora]
    assert engine.blocks.hit_tokens > 0  # the repeats were served from the cache, each from its own blocks


def test_adapters_it_cannot_serve_are_refused_by_name(tiny, adapters, tmp_path):
    directory, _ = tiny
    model = load_model(directory).eval()
    path = adapters[0][1]

    def variant(name: str, change) -> object:
        out = tmp_path / name
        out.mkdir()
        (out / "adapter_model.safetensors").write_bytes((path / "adapter_model.safetensors").read_bytes())
        config = json.loads((path / "adapter_config.json").read_text())
        change(config)
        (out / "adapter_config.json").write_text(json.dumps(config))
        return out

    with pytest.raises(ConfigError, match="use_dora"):
        attach(model, variant("dora", lambda c: c.update(use_dora=True)), 0)
    with pytest.raises(ConfigError, match="modules_to_save"):
        attach(model, variant("saved", lambda c: c.update(modules_to_save=["lm_head"])), 0)
    # r says 4: the matrices are rank 8
    with pytest.raises(ConfigError, match=r"has A \(8, 96\) and B \(64, 8\), the model needs \(4, 96\)"):
        attach(model, variant("rank", lambda c: c.update(r=4)), 0)
    with pytest.raises(ConfigError, match="adapter_config.json"):
        attach(model, tmp_path, 0)

    # a matrix refused after others were read leaves nothing on the model: every one is checked first
    from safetensors.torch import load_file, save_file

    tensors = load_file(path / "adapter_model.safetensors")
    tensors["base_model.model.model.layers.9.self_attn.o_proj.lora_A.weight"] = torch.zeros(8, 64)
    tensors["base_model.model.model.layers.9.self_attn.o_proj.lora_B.weight"] = torch.zeros(64, 8)
    late = variant("late", lambda c: None)
    save_file(tensors, late / "adapter_model.safetensors")
    with pytest.raises(ConfigError, match="layers.9.self_attn.o_proj' is no projection"):
        attach(model, late, 7)
    assert not any(7 in m.lora_hook.adapters for m in model.modules() if hasattr(m, "lora_hook"))
    assert attach(model, path, 7) == 14  # 7 projections x 2 layers, on 4 modules a layer (q/k/v and gate/up fused)
    assert sum(7 in m.lora_hook.adapters for m in model.modules() if hasattr(m, "lora_hook")) == 8


@pytest.mark.interpreter
def test_on_the_kernels_the_adapters_greedy_tokens_match_peft(tiny, adapters):
    """The kernels' path (Triton attention and norms; on the CPU under the interpreter, on a GPU compiled): the
    adapters' rows go through the plain forward there too (no CUDA graph replays them)."""
    from inference.config import EngineConfig
    from inference.engine.llm_engine import LLMEngine
    from inference.tokenizer.detokenizer import IncrementalDetokenizer
    from tests.support.kernel_cases import DEVICE

    directory, tokenizer = tiny
    model = load_model(directory, dtype=torch.float32, device=str(DEVICE)).eval()
    cfg = EngineConfig(device=str(DEVICE), kv_cache_tokens=256, block_size=8, kernels="on", quantize="none")
    engine = LLMEngine(model, tokenizer, IncrementalDetokenizer, cfg)
    attach(model, adapters[1][1], 0)  # after the engine, as the service attaches them
    ids = _ids(tokenizer, PROMPTS[0])
    with torch.inference_mode():
        expected = adapters[1][0].generate(torch.tensor([ids]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    for name, lora in (("adapter", 0), ("base", None)):
        engine.add_request(name, ids, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True, lora_id=lora))
    got = {k[0]: r["ids"] for k, r in run_to_end(engine).items()}
    assert got["adapter"] == expected[0, len(ids) :].tolist()
    with torch.inference_mode(), adapters[1][0].disable_adapter():
        base = adapters[1][0].generate(torch.tensor([ids]), max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert got["base"] == base[0, len(ids) :].tolist() != got["adapter"]
