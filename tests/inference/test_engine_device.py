"""The whole engine (scheduler, paged KV cache, sampler) on tiny random checkpoints, on a chosen device.

``INFERENCE_TEST_DEVICE`` picks the device (``cpu`` by default, as in CI); on a GPU machine
``INFERENCE_TEST_DEVICE=cuda`` runs the same assertions through the CUDA path, so the engine's
device handling is checked by the very tests that run everywhere else. Each test runs twice: on the
torch layers and on the Triton kernels (``kernels="on"``: compiled on CUDA, interpreted on the CPU).
"""

from __future__ import annotations

import gc
import os

import pytest
import torch
from transformers import AutoModelForCausalLM

from inference.config import EngineConfig
from inference.engine.kv_budget import kv_bytes_per_token
from inference.engine.llm_engine import LLMEngine
from inference.loader.safetensors import load_model
from inference.sampling_params import SamplingParams
from tests.support import checkpoints as rc
from tests.support import moe_checkpoints as mc

DEVICE = os.environ.get("INFERENCE_TEST_DEVICE", "cpu")
# Gemma 3 with its three layers of both kinds (sliding, full, sliding): the layer pattern's derivation from the
# config is test_models.py's, on the seven-layer checkpoint
# on a GPU also Mixtral and DeepSeek-V2: the fused MoE kernel and its expert sort captured into CUDA graphs, MLA's
# one shared KV buffer (on the CPU tests/inference/test_moe.py and test_deepseek_v2.py run them on the kernels)
BUILDERS = {
    "llama": rc.llama_checkpoint,
    "gemma3": lambda path: rc.gemma3_checkpoint(path, short=True),
    **({"mixtral": mc.mixtral_checkpoint, "deepseek-v2": lambda path: mc.deepseek_v2_checkpoint(path, grouped=True)}
       if DEVICE.startswith("cuda") else {}),
}  # fmt: skip
NEW_TOKENS = 24


@pytest.fixture(scope="module", params=list(BUILDERS))
def checkpoint(request, tmp_path_factory):
    return request.param, BUILDERS[request.param](tmp_path_factory.mktemp(request.param))


@pytest.fixture(params=["off", pytest.param("on", marks=pytest.mark.interpreter)], ids=["torch", "kernels"])
def kernels(request) -> str:
    return request.param


def _engine(path, kernels: str, **options) -> LLMEngine:
    model = load_model(path, dtype=torch.float32, device=DEVICE).eval()
    # block size 5: blocks never line up with prompts, chunks or the kernels' tiles
    options = {"kv_cache_tokens": 512, **options}
    cfg = EngineConfig(device=DEVICE, block_size=5, kernels=kernels, **options)
    return LLMEngine(model, rc.IdTokenizer(), rc.IdDetokenizer, cfg)


def _run(engine: LLMEngine) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    while engine.has_work:
        for delta in engine.step():
            out.setdefault(f"{delta.request_id}/{delta.index}", []).extend(delta.token_ids)
    return out


def _prompts() -> list[list[int]]:
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, rc.VOCAB, (n,), generator=gen).tolist() for n in (40, 23, 7)]


def test_engine_greedy_matches_transformers_on_the_device(checkpoint, kernels):
    """Three requests batched with chunked prefill (a 32-token budget splits the 40-token prompt),
    one of them joining mid-flight, decode exactly what transformers' generate() gives each alone."""
    name, path = checkpoint
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
    hf = hf.to(DEVICE).eval()
    prompts = _prompts()
    expected = {}
    for i, p in enumerate(prompts):
        ids = torch.tensor([p], device=DEVICE)
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
        expected[f"{i}/0"] = out[0, len(p) :].tolist()
    engine = _engine(path, kernels, max_batched_tokens=32)
    assert next(engine.model.parameters()).device.type == torch.device(DEVICE).type
    greedy = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
    engine.add_request("0", prompts[0], greedy)
    engine.add_request("1", prompts[1], greedy)
    got: dict[str, list[int]] = {}
    for _ in range(4):
        for delta in engine.step():
            got.setdefault(f"{delta.request_id}/{delta.index}", []).extend(delta.token_ids)
    engine.add_request("2", prompts[2], greedy)
    for key, ids in _run(engine).items():
        got.setdefault(key, []).extend(ids)
    assert got == expected, name


def test_sampling_options_run_on_the_device_and_seeds_repeat(checkpoint, kernels):
    """Seeded sampling with every filter and penalty, logit_bias and logprobs: the same seed gives the
    same tokens, n=2 gives two different draws, and a +100 bias forces its token. Without min-p the
    kernels' sampler draws (temperature, top-k, top-p), with the same guarantees."""
    _, path = checkpoint
    engine = _engine(path, kernels)
    params = SamplingParams(max_tokens=8, temperature=0.9, top_p=0.9, top_k=40, min_p=0.01, seed=7,
                            presence_penalty=0.5, frequency_penalty=0.3, repetition_penalty=1.1,
                            logprobs=3, ignore_eos=True)  # fmt: skip
    prompt = _prompts()[1]
    engine.add_request("a", prompt, params, n=2)
    engine.add_request("b", prompt, params, n=2)
    no_min_p = SamplingParams(max_tokens=8, temperature=1.3, top_p=0.95, top_k=50, seed=11, ignore_eos=True)
    engine.add_request("d", prompt, no_min_p, n=2)
    engine.add_request("e", prompt, no_min_p, n=2)
    out = _run(engine)
    for first, second in (("a", "b"), ("d", "e")):
        assert out[f"{first}/0"] == out[f"{second}/0"] and out[f"{first}/1"] == out[f"{second}/1"]
        assert out[f"{first}/0"] != out[f"{first}/1"]
    biased = SamplingParams(max_tokens=5, temperature=1.0, logit_bias={17: 100.0}, ignore_eos=True)
    engine.add_request("c", prompt, biased)
    assert _run(engine)["c/0"] == [17] * 5


@pytest.mark.interpreter
def test_encoder_embeddings_on_the_kernels_equal_the_torch_path(tmp_path):
    """BERT on the kernels (LayerNorm, non-causal variable-length attention) embeds a ragged batch as the torch
    layers do."""
    from inference.layers.kernel_switch import use_kernels

    model = load_model(rc.bert_checkpoint(tmp_path), dtype=torch.float32, device=DEVICE).eval()
    inputs = [[101, 7, 8, 9, 102], [101, 5, 102], [101, *range(10, 27), 102]]
    expected = model.embed(inputs)
    assert use_kernels(model) > 0
    torch.testing.assert_close(model.embed(inputs), expected, atol=1e-5, rtol=1e-5)


def test_decode_steps_replay_cuda_graphs_with_the_eager_tokens(checkpoint):
    """On a GPU the kernels' decode steps are captured as CUDA graphs and replayed, giving the eagerly run steps'
    tokens (a capture that fails is logged and decodes eagerly, so the test looks that it did not). Three requests,
    one joining mid-flight: batches of 2 and 3 replay the graphs of 2 and 4 (padded). The CPU captures none (there
    on the torch layers: the kernels' path is the other tests', and interpreted it would double this one's cost)."""
    _, path = checkpoint
    kernels = "on" if DEVICE.startswith("cuda") else "off"  # graphs need the kernels
    greedy = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0, ignore_eos=True)
    answers = []
    for graphs in (True, False):
        engine = _engine(path, kernels, cuda_graphs=graphs)
        prompts = _prompts()
        engine.add_request("0", prompts[0], greedy)
        engine.add_request("1", prompts[1], greedy)
        got: dict[str, list[int]] = {}
        for _ in range(4):
            for delta in engine.step():
                got.setdefault(delta.request_id, []).extend(delta.token_ids)
        engine.add_request("2", prompts[2], greedy)
        for key, ids in _run(engine).items():
            got.setdefault(key.split("/")[0], []).extend(ids)
        answers.append(got)
        if graphs and DEVICE.startswith("cuda"):
            assert engine.runner.graphs is not None, "decode CUDA graphs were not captured (see the log)"
            assert engine.runner.graphs.sizes[-1] == engine.cfg.max_num_seqs
            assert engine.runner.graphs.replays >= NEW_TOKENS - 1  # every pure decode step
        else:
            assert engine.runner.graphs is None
    assert answers[0] == answers[1]
    assert all(len(ids) == NEW_TOKENS for ids in answers[0].values())


def test_kv_cache_fills_the_memory_it_is_given(checkpoint):
    """On a GPU the cache's size comes from the memory free once the weights are loaded and a largest step has
    run: at a utilization of (memory in use now + 3 GiB) / total, the engine leaves what was in use plus ~3 GiB
    taken (the cache, less a step's activations). On the CPU it holds one context."""
    _, path = checkpoint
    if not DEVICE.startswith("cuda"):
        engine = _engine(path, "off", kv_cache_tokens=None)
        context = engine.model.config.max_position_embeddings
        assert engine.blocks.num_blocks * engine.cfg.block_size >= min(context, 32768)
        return
    gib = 2**30
    gc.collect()  # earlier tests' engines freed now, not between this reading and the engine's
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    utilization = (total - free + 3 * gib) / total  # what this process (and any other) holds now, plus 3 GiB
    engine = _engine(path, "on", kv_cache_tokens=None, gpu_memory_utilization=utilization)
    kv_bytes = engine.blocks.num_blocks * engine.cfg.block_size * kv_bytes_per_token(engine.model, torch.float32)
    torch.cuda.synchronize()
    free_after, _ = torch.cuda.mem_get_info()
    # the weights of these tiny models are a few MiB: the cache takes the 3 GiB less a step's activations
    assert 2 * gib < kv_bytes <= 3 * gib
    assert free - free_after >= kv_bytes  # really allocated on the card
    assert free - free_after < 3 * gib + 512 * 2**20  # and not past the budget (CUDA graphs' pool, allocator slack)
