"""The fused CPU decode path (issue 27, ``inference/cpu``): generated rows of quantized Llama-family and Gemma 3
models in one C++ call per step, against the torch path they replace.

Every op is the torch path's own ATen call on the same operands, so tokens and logprobs are the torch path's bit
for bit. Checked on the packaged models as
``make run`` serves them, and on random-weight Llama, Qwen2 (sliding window), Qwen3 (q/k norms) and Gemma 3
checkpoints (sliding and full layers, two rotary bases), alone, batched, in chunks, joining mid-flight and under
preemption (a chunk holding prompt and generated rows). The extension is built by ``make install``: a machine
that cannot build it fails here rather than silently testing the torch path twice.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inference.config import DEFAULT_MODELS, EngineConfig
from inference.cpu import extension
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from inference.server.registry import build_model
from inference.weights.quantize import quantize
from tests.support import checkpoints, moe_checkpoints
from tests.support.models import answers_joining_mid_flight, engine_on, greedy_answers, run_to_end

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    "1, 2, 3, 4,",
]


def _greedy(tokens: int) -> SamplingParams:
    return SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True, logprobs=0)


def _run(engine, prompts: list[list[int]], params: SamplingParams, together: bool) -> dict:
    out = {}
    for group in [prompts] if together else [[p] for p in prompts]:
        for p in group:
            engine.add_request(str(prompts.index(p)), p, params)
        out.update(greedy_answers(run_to_end(engine)))
    return out


def _assert_same(fused: dict, torch_path: dict) -> None:
    """Same tokens for every request, and their logprobs bit for bit."""
    assert fused.keys() == torch_path.keys()
    for key in torch_path:
        assert fused[key] == torch_path[key], key


# --- the packaged models as served ---------------------------------------------------------------------------


@functools.cache
def served(model_id: str):
    spec = next(s for s in DEFAULT_MODELS if s.id == model_id)
    model, tokenizer, _ = build_model(spec)
    return model, tokenizer


@pytest.mark.real_model
@pytest.mark.parametrize("model_id", ["smollm2-135m-instruct", "gemma-3-270m"])
def test_packaged_models_decode_the_torch_paths_greedy_tokens(model_id):
    model, tokenizer = served(model_id)
    ids = [tokenizer.encode(p, add_special_tokens=True) for p in PROMPTS]
    for together in (False, True):
        fused = engine_on(model, tokenizer, kv_cache_tokens=2048)
        assert fused.runner.fused is not None  # the default serves through the extension
        answers = _run(fused, ids, _greedy(32), together)
        plain = engine_on(model, tokenizer, kv_cache_tokens=2048, fused_decode=False)
        assert plain.runner.fused is None
        _assert_same(answers, _run(plain, ids, _greedy(32), together))


# --- random-weight families ----------------------------------------------------------------------------------

FAMILIES = {
    "llama": checkpoints.llama_checkpoint,  # GQA, biases everywhere, llama3 rope scaling
    "qwen2": functools.partial(checkpoints.qwen2_checkpoint, sliding_window=True),  # window 12, one kv head
    "qwen3": checkpoints.qwen3_checkpoint,  # q/k RMSNorm
    "gemma3": checkpoints.gemma3_checkpoint,  # window 8, two rope bases, sandwich norms, GELU-tanh
}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    directory = FAMILIES[request.param](tmp_path_factory.mktemp(request.param))
    model = quantize(load_model(directory).eval(), "int4")
    return request.param, model


def _engine(model, **options) -> LLMEngine:
    """An engine on a random-weight model (ids for text), a 1024-token cache unless ``options`` say otherwise."""
    config = EngineConfig(**{"kv_cache_tokens": 1024, **options})
    return LLMEngine(model, checkpoints.IdTokenizer(), checkpoints.IdDetokenizer, config)


def _prompts(vocab: int, lengths: list[int]) -> list[list[int]]:
    gen = torch.Generator().manual_seed(5)
    return [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in lengths]


def test_families_alone_batched_chunked_and_joining(family):
    name, model = family
    prompts = _prompts(model.config.vocab_size, [3, 17, 9, 30])  # past the windows of 8 and 12 while decoding
    params = _greedy(24)
    reference = _run(_engine(model, fused_decode=False), prompts, params, together=False)
    for options, together in (({}, False), ({}, True), ({"max_batched_tokens": 5}, True), ({"block_size": 4}, True)):
        engine = _engine(model, **options)
        assert engine.runner.fused is not None, name
        _assert_same(_run(engine, prompts, params, together), reference)
    joining = answers_joining_mid_flight(_engine(model, max_batched_tokens=7), prompts, params)
    _assert_same(joining, reference)


def test_preempted_sequences_recompute_prompt_and_generated_rows(family):
    """A cache too small for the four at once: the scheduler preempts, and a recomputed sequence's chunk carries
    its prompt rows (the torch path, first) and its generated rows (the fused path, over those keys)."""
    name, model = family
    prompts = _prompts(model.config.vocab_size, [20, 28, 24, 26])
    params = _greedy(16)
    reference = _run(_engine(model, fused_decode=False), prompts, params, together=False)
    engine = _engine(model, kv_cache_tokens=80, block_size=4, max_model_len=80, enable_prefix_caching=False)
    mixed = []
    forward = engine.runner._forward_fused
    engine.runner._forward_fused = lambda ids, pos, ctx: (
        mixed.append(all(r is not None for r in ctx.row_roles())) or forward(ids, pos, ctx)
    )
    _assert_same(_run(engine, prompts, params, together=True), reference)
    assert any(mixed), name  # some step held prompt and generated rows together


def test_float_weights_and_other_families_stay_on_the_torch_path(tmp_path):
    directory = checkpoints.llama_checkpoint(tmp_path / "llama")
    model = load_model(directory).eval()
    assert _engine(model).runner.fused is None  # float weights: nothing to fuse
    moe = quantize(load_model(moe_checkpoints.mixtral_checkpoint(tmp_path / "mixtral")).eval(), "int4")
    assert _engine(moe).runner.fused is None


# --- building ------------------------------------------------------------------------------------------------


def test_the_extension_is_built_once_and_imported_after(tmp_path):
    """A fresh cache builds it; the next process imports the built module without compiling."""
    assert extension.load() is not None
    code = "import torch; from inference.cpu import extension; print(extension.load(build=False) is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "True", out.stdout + out.stderr


def test_without_a_compiler_the_service_falls_back_with_a_warning(tmp_path):
    """No compiler (CXX pointing nowhere) and nothing built: a warning, the torch path, never a failure."""
    code = (
        "import json, logging, torch\n"
        "from inference.cpu import extension\n"
        "from tests.support.models import run_to_end\n"
        "from inference.config import EngineConfig\n"
        "from inference.engine.llm_engine import LLMEngine\n"
        "from tests.support import checkpoints\n"
        "from inference.loader.safetensors import load_model\n"
        "from inference.weights.quantize import quantize\n"
        "from inference.sampling_params import SamplingParams\n"
        "records = []\n"
        "logging.getLogger('inference.cpu').addHandler(logging.Handler())\n"
        "logging.getLogger('inference.cpu').handlers[-1].emit = records.append\n"
        f"d = checkpoints.llama_checkpoint({str(tmp_path / 'ckpt')!r})\n"
        "model, tok = quantize(load_model(d).eval(), 'int4'), checkpoints.IdTokenizer()\n"
        "engine = LLMEngine(model, tok, checkpoints.IdDetokenizer, EngineConfig(kv_cache_tokens=256))\n"
        "engine.add_request('a', [5, 6, 7], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))\n"
        "ids = run_to_end(engine)[('a', 0)]['ids']\n"
        "print(json.dumps({'fused': engine.runner.fused is not None, 'tokens': len(ids),\n"
        "                  'warnings': [r.getMessage() for r in records if r.levelno == logging.WARNING]}))\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-compiler"), "INFERENCE_EXTENSION_DIR": str(tmp_path / "ext")}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["fused"] is False and result["tokens"] == 4
    assert len(result["warnings"]) == 1 and "torch path" in result["warnings"][0], result
