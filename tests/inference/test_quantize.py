"""Weight-only quantization (``inference.weights.quantize``): kernels against their dequantized weights, the int4 grid
search, which path runs for decode- and prefill-sized inputs, fused ``split``, tied heads, the exact top
logits, and every mode's logits against fp32 on a tiny random Llama and on the real SmolLM2.

Bounds. Logit errors scale with each matrix's relative weight error: ~0.4% for int8 (per row) and int4x2
(two 4-bit levels in groups of 32), ~7.6% for int4 on Gaussian weights, ~0.4% for int4 on SmolLM2, whose
GGUF layers are already 4-bit in groups of 32 (the grid search finds that grid again). The tiny model's
bounds are relative to its largest logit, 2-3x the errors measured; SmolLM2's are KL(fp32 || quantized) and
top-1 agreement teacher-forced on fp32's greedy continuations: 3x int8's KL (0.0053; int4 / auto 0.0023,
int4x2 0.0013), the worst mode we accept, and top-1 a little under the 96% every mode reaches here.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from inference.env import ConfigError, prefill_dtype
from inference.layers.context import ForwardContext, forward_context
from inference.layers.linear import MergedLinear
from inference.loader.safetensors import load_model
from inference.weights import quantize as Q
from tests.support import checkpoints as rc
from tests.support.models import loaded

MODES = Q.MODES  # int8, int4, int4x2, auto
# max |logit - fp32| / max |fp32 logit| on the tiny Llama, every row on the quantized path; measured
# int8 0.017, int4 0.18, int4x2 0.013, auto 0.012 (int4x2 layers: random weights are on no 4-bit grid)
TINY_RELATIVE_BOUND = {"int8": 0.05, "int4": 0.4, "int4x2": 0.04, "auto": 0.04}
SMOLLM2_KL_BOUND = 0.015
SMOLLM2_TOP1_BOUND = 0.9


def _logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(ids)])):
        return model.compute_logits(model(torch.tensor(ids), torch.arange(len(ids)))).float()


def _hidden(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(ids)])):
        return model(torch.tensor(ids), torch.arange(len(ids)))


def _greedy(model: torch.nn.Module, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy decoding by re-running the whole sequence (<= FLOAT_ROWS rows: the quantized path)."""
    ids = list(prompt)
    for _ in range(new_tokens):
        ids.append(int(_logits(model, ids)[-1].argmax()))
    return ids[len(prompt) :]


def _copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the module tree sharing the parameters: quantize replaces modules, it never writes weights."""
    return copy.deepcopy(model, memo={id(p): p for p in model.parameters()})


@pytest.fixture
def quantized_rows_only(monkeypatch):
    """Every call on the quantized path, however many rows (to score whole sequences at once)."""
    monkeypatch.setattr(Q, "FLOAT_ROWS", 1 << 30)


# --- kernels and codes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2])
def test_int4_kernel_computes_with_the_dequantized_weight(levels):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(208, 640, generator=gen) * 0.05 + torch.randn(208, 1, generator=gen) * 0.1
    layer = Q.Int4Linear(w, None, group_size=32, levels=levels)
    x = torch.randn(5, 640, generator=gen)
    # the kernel's weight: unpack the codes again from what it was given (q = ... per level, summed)
    first = Q.quantize_int4_groups(w, 32, Q.MIN_MAX if levels == 2 else Q.GRID)
    weight = Q.dequantize_int4(first)
    if levels == 2:
        weight = weight + Q.dequantize_int4(Q.quantize_int4_groups(w - weight, 32, Q.MIN_MAX))
    reference = x.bfloat16().float() @ weight.t()
    out = layer(x)
    assert out.dtype == torch.float32 and out.shape == (5, 208)
    # bf16 output: 2^-8 relative rounding of each value
    assert (out - reference).abs().max() <= 2**-7 * reference.abs().max()
    # ||W_q - W|| / ||W||: 3.3% for one level (these rows have offsets: ~7.6% without), 0.2% for two
    assert (0.02 < layer.relative_error < 0.05) if levels == 1 else (layer.relative_error < 0.005)
    assert layer.relative_error == pytest.approx(float((weight - w).norm() / w.norm()), rel=1e-3)


def test_packing_in_row_chunks_gives_the_whole_matrix_bytes(monkeypatch):
    w = torch.randn(64 * 5 + 16, 96, generator=torch.Generator().manual_seed(1))  # a partial last block
    whole = Q.pack_int4(w, 32, levels=2)
    monkeypatch.setattr(Q, "CHUNK_ROWS", 128)
    chunked = Q.pack_int4(w, 32, levels=2)
    assert torch.equal(whole.packed, chunked.packed)
    assert torch.equal(whole.scales_and_zeros, chunked.scales_and_zeros)


def test_grid_search_finds_a_4bit_grid_that_min_max_misses():
    """Groups on a 4-bit grid whose codes stay within 1..14 (as llama.cpp's clipping Q4_K search leaves
    them): min/max alone puts its grid between theirs; the search recovers it up to bf16 rounding."""
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(1, 15, (128, 20, 32), generator=gen).float()
    step = torch.rand(128, 20, 1, generator=gen) * 0.01 + 0.002
    w = (codes * step - torch.rand(128, 20, 1, generator=gen) * 0.05).reshape(128, 640)
    min_max = Q.quantize_int4_groups(w, 32, Q.MIN_MAX)
    searched = Q.quantize_int4_groups(w, 32)

    def relative(codes: Q.Int4Codes) -> float:
        return float((Q.dequantize_int4(codes) - w).norm() / w.norm())

    assert relative(min_max) > 0.02
    assert relative(searched) < Q.LOSSLESS_INT4
    auto = Q.quantized_linear(w, None, "auto")
    assert isinstance(auto, Q.Int4Linear) and auto.levels == 1  # int4 loses nothing here
    gaussian = Q.quantized_linear(torch.randn(128, 640, generator=gen), None, "auto")
    assert isinstance(gaussian, Q.Int4Linear) and gaussian.levels == 2  # int4 would lose ~8%


def test_shapes_the_int4_kernel_cannot_take():
    gen = torch.Generator().manual_seed(3)
    assert isinstance(Q.quantized_linear(torch.randn(24, 64, generator=gen), None, "int4"), Q.Int8Linear)  # N % 16
    assert isinstance(Q.quantized_linear(torch.randn(32, 48, generator=gen), None, "int4"), Q.Int8Linear)  # K % 32
    layer = Q.quantized_linear(torch.randn(32, 576, generator=gen), None, "int4", group_size=128)
    assert isinstance(layer, Q.Int4Linear) and layer.group_size == 64  # 576 = 9 x 64: the largest that fits
    with pytest.raises(ValueError):
        Q.quantize(torch.nn.Sequential(torch.nn.Linear(64, 64)), "int3")


# --- paths ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_decode_rows_use_the_kernel_and_prefill_rows_the_float_weight(mode):
    gen = torch.Generator().manual_seed(4)
    linear = torch.nn.Linear(96, 64)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(64, 96, generator=gen) * 0.1)
    layer = Q.quantized_linear(linear.weight, linear.bias, mode)
    few = torch.randn(Q.FLOAT_ROWS, 96, generator=gen)
    many = torch.randn(Q.FLOAT_ROWS + 1, 96, generator=gen)
    with torch.no_grad():
        assert torch.equal(layer(many), linear(many))  # the float path, bit for bit
        out, ref = layer(few), linear(few)
    assert not torch.equal(out, ref)  # the quantized path...
    assert (out - ref).abs().max() < (0.2 if mode == "int4" else 0.02) * ref.abs().max()  # ...close to it
    with torch.no_grad():  # any leading shape goes through the same two paths
        assert layer(few.reshape(2, 8, 96)).shape == (2, 8, 64)
        assert torch.equal(layer(many.reshape(1, -1, 96))[0], linear(many))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny random Llama (untied head, biases everywhere): fp32 and one quantized copy per mode, its prefill on
    bf16 copies (what ``auto`` picks on a CPU with native bf16; float32 is checked beside it)."""
    base = load_model(rc.llama_checkpoint(tmp_path_factory.mktemp("llama"))).eval()
    return base, {mode: Q.quantize(_copy(base), mode, prefill="bfloat16") for mode in MODES}


def test_every_linear_is_quantized_and_fused_layers_still_split(tiny):
    base, models = tiny
    for mode, model in models.items():
        assert not any(isinstance(m, torch.nn.Linear) for m in model.modules()), mode
        attn, ref_attn = model.model.layers[0].self_attn, base.model.layers[0].self_attn
        assert isinstance(ref_attn.qkv_proj, MergedLinear)
        x = torch.randn(3, base.config.hidden_size)
        with torch.no_grad():
            parts, ref_parts = attn.qkv_proj.split(attn.qkv_proj(x)), ref_attn.qkv_proj.split(ref_attn.qkv_proj(x))
        assert [p.shape for p in parts] == [p.shape for p in ref_parts] == [(3, 96), (3, 48), (3, 48)]
        for part, ref in zip(parts, ref_parts, strict=True):
            assert (part - ref).abs().max() < 0.1 * ref.abs().max()
        gate_up = model.model.layers[0].mlp.gate_up_proj
        assert [p.shape[-1] for p in gate_up.split(torch.zeros(1, gate_up.out_features))] == [96, 96]
    assert isinstance(models["int8"].lm_head, Q.Int8Linear)
    for mode in ("int4", "int4x2", "auto"):
        assert isinstance(models[mode].model.layers[1].mlp.down_proj, Q.Int4Linear)  # K = 96: 3 groups of 32
    assert models["int4"].lm_head.levels == 1 and models["int4"].lm_head.exact_top == Q.EXACT_TOP
    assert models["int4x2"].lm_head.levels == 2 and models["int4x2"].lm_head.exact_top == 0


@pytest.mark.parametrize("mode", MODES)
def test_tiny_llama_logits_and_greedy_tokens_stay_close_to_fp32(tiny, mode, quantized_rows_only):
    base, models = tiny
    prompt = torch.randint(0, rc.VOCAB, (24,), generator=torch.Generator().manual_seed(5)).tolist()
    ref, out = _logits(base, prompt), _logits(models[mode], prompt)
    error = float((out - ref).abs().max() / ref.abs().max())
    print(f"{mode}: max |logit error| / max |logit| = {error:.4f}")
    assert error < TINY_RELATIVE_BOUND[mode]
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean()
    assert agree >= (0.8 if mode == "int4" else 0.95)


def test_prefill_logits_near_fp32_and_decode_greedy_tokens_agree(tiny):
    """Without forcing: a 40-token prefill runs every layer on its bf16 weight copy (within bf16's rounding
    of fp32, and every layer bitwise fp32 with ``prefill="float32"``), while decoding an 8-token prompt for 8 tokens
    (<= 16 rows) runs the kernels and keeps fp32's greedy tokens: all of them for the ~8-bit modes; int4
    (7.6% error in every random matrix) flips a near-tie (fp32's margin 0.04) and then follows its own
    continuation, so it is scored on fp32's tokens (teacher-forced)."""
    base, models = tiny
    prompt = torch.randint(0, rc.VOCAB, (40,), generator=torch.Generator().manual_seed(6)).tolist()
    reference = _greedy(base, prompt[:8], 8)
    exact = _logits(base, prompt)
    for mode, model in models.items():
        bf16 = _logits(model, prompt)
        assert not torch.equal(bf16, exact) and (bf16 - exact).abs().max() < 0.03 * exact.abs().max(), mode
        # prefill="float32": every layer is fp32 bit for bit; the head (always its kernel, whatever the row count,
        # so that a row's logits never depend on the batch) is the only quantized step
        fp32_prefill = Q.quantize(_copy(base), mode, prefill="float32")
        assert torch.equal(_hidden(fp32_prefill, prompt), _hidden(base, prompt)), mode
        head = fp32_prefill.lm_head
        assert torch.equal(_logits(fp32_prefill, prompt), head(_hidden(base, prompt)).float()), mode
        assert not torch.equal(_logits(model, prompt[:8]), _logits(base, prompt[:8])), mode
        forced = _logits(model, prompt[:8] + reference[:-1])[7:].argmax(-1).tolist()
        assert sum(a == b for a, b in zip(forced, reference, strict=True)) >= 7, mode
        if mode != "int4":
            assert _greedy(model, prompt[:8], 8) == reference, mode


def test_tied_heads_are_quantized_and_their_top_logits_are_exact(tmp_path):
    """Qwen2 tiny ties its head to the embedding: quantize gives it an lm_head over the same storage, and
    an int4 head's largest logits are recomputed in fp32 from it."""
    base = load_model(rc.qwen2_checkpoint(tmp_path)).eval()
    assert base.lm_head is None
    model = Q.quantize(_copy(base), "int4", head_exact_top=8)
    head = model.lm_head
    assert isinstance(head, Q.Int4Linear) and head.levels == 1 and head.exact_top == 8
    assert head.float_weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    hidden = torch.randn(3, base.config.hidden_size)
    exact = F.linear(hidden, base.model.embed_tokens.weight)
    with torch.inference_mode():
        logits = model.compute_logits(hidden)
        head.exact_top = 0
        plain = model.compute_logits(hidden)
    top = logits.topk(8, dim=-1).indices
    torch.testing.assert_close(logits.gather(-1, top), exact.gather(-1, top), rtol=1e-5, atol=1e-5)
    assert torch.equal(logits.argmax(-1), exact.argmax(-1))
    assert not torch.equal(plain.gather(-1, top), exact.gather(-1, top))  # the kernel's own are bf16, 4-bit
    assert (plain - exact).abs().max() < 0.25 * exact.abs().max()
    assert isinstance(Q.quantize_int8(_copy(base)).lm_head, Q.Int8Linear)  # what the server calls
    int4 = Q.quantize_int4(_copy(base)).lm_head
    assert isinstance(int4, Q.Int4Linear) and int4.levels == 1 and int4.exact_top == Q.EXACT_TOP


# --- the real SmolLM2 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2():
    """(fp32 model, tokenizer, fp32 greedy continuations of 2 prompts, their fp32 logits)."""
    model, tokenizer = loaded("smollm2")
    sequences = []
    for prompt in ("The capital of France is", "def fibonacci(n):\n    "):
        ids = tokenizer.encode(prompt, add_special_tokens=True)
        sequences.append((len(ids) - 1, ids + _greedy(model, ids, 12)))
    return model, tokenizer, sequences, [_logits(model, ids) for _, ids in sequences]


@pytest.mark.real_model
@pytest.mark.parametrize("mode", MODES)
def test_smollm2_logits_stay_close_to_fp32(smollm2, mode, quantized_rows_only):
    base, _, sequences, references = smollm2
    model = Q.quantize(_copy(base), mode)
    if mode == "auto":  # its GGUF layers are 4-bit in groups of 32: int4 is lossless there
        layers = [m for m in model.model.modules() if isinstance(m, Q.QuantizedLinear)]
        assert all(isinstance(m, Q.Int4Linear) and m.levels == 1 and m.relative_error < 0.006 for m in layers)
    agree = total = 0
    kl = 0.0
    for (first, ids), ref in zip(sequences, references, strict=True):
        out, ref = _logits(model, ids)[first:], ref[first:]
        agree += int((out.argmax(-1) == ref.argmax(-1)).sum())
        total += ref.shape[0]
        kl += float(F.kl_div(out.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean"))
    kl /= len(sequences)
    print(f"{mode}: top-1 {agree}/{total}, KL {kl:.5f}")
    assert agree / total >= SMOLLM2_TOP1_BOUND
    assert kl < SMOLLM2_KL_BOUND


def test_auto_prefill_is_bf16_only_where_the_cpu_multiplies_bf16_natively(monkeypatch):
    """Without AVX-512 BF16 or AMX, torch's bf16 GEMM is emulated: an AMD EPYC (AVX2) ran it at 19 GFLOP/s against
    fp32's 150, so ``auto`` keeps prefill in fp32 there (bench_prefill.py: the packaged models' prefill 5-7x)."""
    assert Q.resolve_prefill("auto") == ("bfloat16" if Q.native_bf16() else "float32")
    assert Q.resolve_prefill("float32") == "float32" and Q.resolve_prefill("bfloat16") == "bfloat16"
    for cpu_has_it, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(Q, "native_bf16", lambda cpu_has_it=cpu_has_it: cpu_has_it)
        assert Q.resolve_prefill() == expected
    with pytest.raises(ValueError, match="auto, bfloat16 or float32"):
        Q.resolve_prefill("float16")
    monkeypatch.setenv("INFERENCE_PREFILL_DTYPE", "BFloat16")
    assert prefill_dtype() == "bfloat16"
    monkeypatch.setenv("INFERENCE_PREFILL_DTYPE", "fp8")
    with pytest.raises(ConfigError, match="INFERENCE_PREFILL_DTYPE"):
        prefill_dtype()


@pytest.mark.parametrize("prefill", ["float32", "bfloat16"])
def test_a_prompt_rows_prefill_does_not_follow_the_row_count(tiny, prefill):
    """A row's prefill product is the same bits however many rows share the call, at any offset: fp32 sgemm rounds
    rows 2 to 11 of a small product differently from a big one's on an AVX2 EPYC, so the fp32 path runs in fixed row
    blocks as the bf16 one does with AMX."""
    base, _ = tiny
    model = Q.quantize(_copy(base), "int8", prefill=prefill)
    layer = model.model.layers[0].mlp.down_proj
    x = torch.randn(300, layer.in_features, generator=torch.Generator().manual_seed(5))
    whole = layer._prefill(x)
    for start, count in ((0, 1), (0, 2), (4, 3), (9, 5), (0, 7), (2, 9), (0, 11), (31, 33), (0, 128), (7, 129)):
        assert torch.equal(layer._prefill(x[start : start + count]), whole[start : start + count]), (start, count)
