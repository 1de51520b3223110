"""The prepared-weights cache: a second build of a model reads what the first one wrote (the same answers, bit
for bit, nothing recomputed); a key change (converter, quantizer or model code, format) is never misread but
rebuilt; a torn file is rebuilt, not fatal; stale entries of the same checkpoint are removed."""

from __future__ import annotations

import torch

from inference import weights_cache
from inference.config import EngineConfig, ModelSpec
from inference.layers.context import ForwardContext, forward_context
from inference.loader import convert
from inference.packaged import smollm2_gguf
from inference.server.registry import build_model
from inference.weights import quantize as Q
from tests.support import checkpoints as rc


def _checkpoint(path):
    """A tiny random Llama with a tokenizer (the service loads both)."""
    checkpoint = rc.llama_checkpoint(path)
    rc._byte_bpe_tokenizer().save_pretrained(checkpoint)
    return checkpoint


def _spec(path, mode="auto") -> ModelSpec:
    return ModelSpec(id="tiny", source=str(path), kind="chat", engine=EngineConfig(quantize=mode))


def _logits(model, ids=(3, 17, 5, 9, 60, 2)) -> torch.Tensor:
    with torch.inference_mode(), forward_context(ForwardContext.for_prompts([len(ids)])):
        return model.compute_logits(model(torch.tensor(ids), torch.arange(len(ids))))


def test_a_second_start_reads_the_prepared_model(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERENCE_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = _checkpoint(tmp_path / "llama")
    first, _, _ = build_model(_spec(checkpoint))
    [entry] = (tmp_path / "cache" / "prepared").glob("*.pt")
    calls = []
    monkeypatch.setattr(Q, "quantize", lambda *a, **k: calls.append(1))  # a warm start quantizes nothing
    second, _, _ = build_model(_spec(checkpoint))
    assert not calls and isinstance(second.lm_head, Q.QuantizedLinear)
    assert torch.equal(_logits(first), _logits(second))
    assert list((tmp_path / "cache" / "prepared").glob("*.pt")) == [entry]


def test_a_changed_key_or_a_torn_file_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERENCE_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = _checkpoint(tmp_path / "llama")
    reference = _logits(build_model(_spec(checkpoint))[0])
    old = weights_cache.entry_path(checkpoint, "auto", torch.float32)
    monkeypatch.setattr(weights_cache, "FORMAT_VERSION", weights_cache.FORMAT_VERSION + 1)  # or new code
    new = weights_cache.entry_path(checkpoint, "auto", torch.float32)
    assert new != old and not new.exists()
    assert torch.equal(_logits(build_model(_spec(checkpoint))[0]), reference)
    assert new.exists() and not old.exists()  # the stale entry of the same checkpoint is gone
    new.write_bytes(new.read_bytes()[:1000])  # torn (a crash mid-write cannot leave one; a full disk might)
    assert torch.equal(_logits(build_model(_spec(checkpoint))[0]), reference)
    assert new.stat().st_size > 1000
    assert weights_cache.entry_path(checkpoint, "int8", torch.float32) != new  # the mode is in the key
    # and the prefill dtype: a cache shared by CPUs with and without native bf16 holds one entry for each
    shared = {weights_cache.entry_path(checkpoint, "auto", torch.float32, p) for p in ("bfloat16", "float32")}
    assert len(shared) == 2 and new in shared


def test_the_code_and_the_converter_version_are_in_the_keys(monkeypatch):
    weights_cache.code_hash.cache_clear()
    before = weights_cache.code_hash()
    assert len(before) == 16 and before == weights_cache.code_hash()
    gguf = smollm2_gguf()
    key = convert.cache_key(gguf)
    monkeypatch.setattr(convert, "CONVERTER_VERSION", convert.CONVERTER_VERSION + 1)
    assert convert.cache_key(gguf) != key  # a newer converter converts again, into a new directory
