"""The GGUF reader and the GGUF -> HF conversion, checked against gguf-py and transformers.

The two real models are converted once per machine into the real cache (``ensure_converted``) and
reused. transformers' own GGUF loading is the reference for the converted weights; it takes tens of
seconds on these files, so its logits are computed once per (file, transformers version) and kept in
the cache too. Our side is always recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors import safe_open

import inference.loader.convert as conversion
from inference import packaged
from inference.env import cache_dir
from inference.loader.convert import ConversionError, ensure_converted
from inference.loader.gguf import GGUFError, GGUFFile
from inference.tokenizer.tokenizer import Tokenizer

QUANT_TYPES = {
    "smollm2": {"F32", "Q8_0", "Q4_1"},
    "gemma3": {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"},
}


@pytest.fixture(scope="module")
def paths() -> dict[str, Path]:
    return {"smollm2": packaged.smollm2_gguf(), "gemma3": packaged.gemma3_gguf()}


@pytest.fixture(scope="module")
def converted(paths) -> dict[str, Path]:
    return {name: ensure_converted(path) for name, path in paths.items()}


def _plain(value):
    """gguf-py values and ours in one comparable form."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- the reader -------------------------------------------------------------------------------------


def test_header_matches_gguf_reader_on_every_key_and_tensor(paths):
    start = time.perf_counter()
    ours = GGUFFile(paths["smollm2"])
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    ref = gguf.GGUFReader(paths["smollm2"])
    print(f"\nSmolLM2 header: ours {ours_s * 1000:.0f} ms, GGUFReader {time.perf_counter() - start:.2f} s")

    ref_keys = {k for k in ref.fields if not k.startswith("GGUF.")}
    assert set(ours.metadata) == ref_keys
    for key in ref_keys:
        assert _plain(ours.metadata[key]) == _plain(ref.fields[key].contents()), key
    assert ours.version == ref.fields["GGUF.version"].contents() == 3
    assert len(ours.tensors) == len(ref.tensors) == 272
    for t in ref.tensors:
        info = ours.tensors[t.name]
        assert info.shape == tuple(int(d) for d in reversed(t.shape))
        assert info.ggml_type == t.tensor_type
        assert info.offset == t.data_offset and info.nbytes == t.n_bytes
        assert np.array_equal(ours.raw(t.name).reshape(-1), np.asarray(t.data).view(np.uint8).reshape(-1))


def test_gemma_header_reads_the_262k_vocabulary_and_its_tensors_tile_the_data_section(paths):
    start = time.perf_counter()
    f = GGUFFile(paths["gemma3"])
    print(f"\nGemma 3 header (262k vocabulary): {(time.perf_counter() - start) * 1000:.0f} ms")
    meta = f.metadata
    assert f.architecture == "gemma3" and len(f.tensors) == 236
    assert len(meta["tokenizer.ggml.tokens"]) == len(meta["tokenizer.ggml.scores"]) == 262144
    assert meta["tokenizer.ggml.token_type"].dtype == np.int32 and meta["tokenizer.ggml.tokens"][106] == "<end_of_turn>"
    assert meta["gemma3.attention.key_length"] == 256 and meta["tokenizer.ggml.add_bos_token"] is True
    # tensors lie back to back, each at the next aligned offset, and the last ends the file
    infos = sorted(f.tensors.values(), key=lambda info: info.offset)
    assert infos[0].offset == f.data_start and f.data_start % f.alignment == 0
    for before, after in zip(infos, infos[1:], strict=False):
        assert after.offset == -(-(before.offset + before.nbytes) // f.alignment) * f.alignment
    assert infos[-1].offset + infos[-1].nbytes == os.path.getsize(paths["gemma3"])


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_dequantize_equals_gguf_quants_bit_for_bit(paths, model):
    f = GGUFFile(paths[model])
    by_type: dict[str, list[str]] = {}
    for name, info in f.tensors.items():
        by_type.setdefault(info.ggml_type.name, []).append(name)
    assert set(by_type) == QUANT_TYPES[model]
    for names in by_type.values():
        # the three smallest of each type: the same block code runs on every tensor of a type
        for name in sorted(names, key=lambda n: f.tensors[n].nbytes)[:3]:
            info = f.tensors[name]
            ours = f.dequantize(name)
            ref = torch.from_numpy(np.array(gguf.quants.dequantize(f.raw(name), info.ggml_type)))
            assert ours.dtype == torch.float32 and ours.shape == info.shape
            assert torch.equal(ours, ref.reshape(info.shape)), name
            assert torch.isfinite(ours).all()


def test_reader_handles_every_value_type_nested_arrays_and_alignment(tmp_path):
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_custom_alignment(64)
    scalars = {
        "t.u8": (7, gguf.GGUFValueType.UINT8),
        "t.i8": (-7, gguf.GGUFValueType.INT8),
        "t.u16": (65535, gguf.GGUFValueType.UINT16),
        "t.i16": (-300, gguf.GGUFValueType.INT16),
        "t.u32": (4_000_000_000, gguf.GGUFValueType.UINT32),
        "t.i32": (-5, gguf.GGUFValueType.INT32),
        "t.f32": (0.5, gguf.GGUFValueType.FLOAT32),
        "t.u64": (2**63, gguf.GGUFValueType.UINT64),
        "t.i64": (-(2**40), gguf.GGUFValueType.INT64),
        "t.f64": (1e-300, gguf.GGUFValueType.FLOAT64),
        "t.bool": (True, gguf.GGUFValueType.BOOL),
        "t.str": ("héllo ▁ 👋", gguf.GGUFValueType.STRING),
    }
    for key, (value, vtype) in scalars.items():
        writer.add_key_value(key, value, vtype)
    writer.add_array("t.ints", [1, -2, 3])
    writer.add_array("t.floats", [0.25, -1.5])
    writer.add_array("t.strs", ["a", "", "ü b"])
    writer.add_array("t.nested", [[1, 2], [3]])
    weights = np.arange(64 * 3, dtype=np.float32).reshape(3, 64)
    writer.add_tensor("a.weight", np.ones(5, dtype=np.float32))
    writer.add_tensor("b.weight", weights.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    f = GGUFFile(path)
    for key, (value, _) in scalars.items():
        assert f.metadata[key] == value, key
    assert f.metadata["t.ints"].tolist() == [1, -2, 3] and f.metadata["t.floats"].tolist() == [0.25, -1.5]
    assert f.metadata["t.strs"] == ["a", "", "ü b"]
    assert _plain(f.metadata["t.nested"]) == [[1, 2], [3]]
    assert f.alignment == 64 and f.data_start % 64 == 0
    assert f.tensors["b.weight"].shape == (3, 64) and f.tensors["b.weight"].offset % 64 == 0
    assert torch.equal(f.dequantize("b.weight"), torch.from_numpy(weights))
    assert torch.equal(f.dequantize("a.weight"), torch.ones(5))


def test_reader_rejects_a_file_that_is_not_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + bytes(60))
    with pytest.raises(GGUFError, match="not a GGUF"):
        GGUFFile(bad)


# --- the conversion ---------------------------------------------------------------------------------


def _tiny_gguf(path: Path, arch: str, metadata: dict[str, int] | None = None, extra: str | None = None) -> Path:
    writer = gguf.GGUFWriter(path, arch)
    for key, value in (metadata or {}).items():
        writer.add_uint32(f"{arch}.{key}", value)
    writer.add_token_list(["a", "b", "c", "d"])
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    if extra:
        writer.add_tensor(extra, np.zeros(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unconvertible_files_are_clear_errors_and_leave_no_cache(tmp_path):
    cache = tmp_path / "cache"
    shape = {"embedding_length": 8, "attention.head_count": 2, "feed_forward_length": 16, "block_count": 1}
    cases = [
        (
            _tiny_gguf(tmp_path / "a.gguf", "gpt2"),
            r"'gpt2' is not supported \(supported: llama, qwen2, qwen3, qwen2moe, qwen3moe, deepseek2, gemma3\)",
        ),
        (_tiny_gguf(tmp_path / "b.gguf", "llama", {"block_count": 1}), "no integer llama.embedding_length"),
        (_tiny_gguf(tmp_path / "c.gguf", "llama", shape, "blk.0.odd.weight"), "'blk.0.odd.weight' has no HF"),
    ]
    for path, message in cases:
        with pytest.raises(ConversionError, match=message):
            ensure_converted(path, cache_root=cache, progress=False)
    assert list(cache.iterdir()) == []  # every staging directory was removed


def test_second_call_reuses_the_cache(paths, converted, monkeypatch):
    before = (converted["smollm2"] / "model.safetensors").stat()
    conversions = []  # a spy: a cache miss would call convert() (into a staging directory) again

    def counted_convert(*args, **kwargs):
        conversions.append(args)
        return real_convert(*args, **kwargs)

    real_convert = conversion.convert
    monkeypatch.setattr(conversion, "convert", counted_convert)
    again = ensure_converted(paths["smollm2"])
    assert again == converted["smollm2"] and conversions == []
    after = (again / "model.safetensors").stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert not [p for p in again.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (again / name).is_file()


def test_fresh_conversion_writes_float32_weights_and_no_tied_lm_head(tmp_path, paths):
    """A fresh conversion (SmolLM2, into a throwaway cache): every weight float32, the tied lm_head left out.
    How long it took is printed, not checked."""
    start = time.perf_counter()
    out = ensure_converted(paths["smollm2"], cache_root=tmp_path, progress=False)
    print(f"\nSmolLM2 conversion: {time.perf_counter() - start:.1f} s")
    assert out.parent == tmp_path
    with safe_open(out / "model.safetensors", "pt") as weights:
        names = set(weights.keys())
        assert {weights.get_slice(name).get_dtype() for name in names} == {"F32"}
    # 30 layers x 9 tensors + embedding + final norm; no lm_head: it is tied
    assert len(names) == 272 and "lm_head.weight" not in names
    assert weights_shape(out, "model.layers.0.self_attn.k_proj.weight") == [192, 576]


@pytest.mark.real_model  # loads SmolLM2 twice
def test_a_large_conversion_is_written_in_shards_as_it_goes(tmp_path, paths, converted, monkeypatch):
    """Past ``SHARD_BYTES`` a conversion writes a file at a time (so it never holds the whole model in fp32) with
    HF's index; our loader and transformers read it as the single file."""
    from transformers import AutoModelForCausalLM

    from inference.loader.safetensors import load_model

    monkeypatch.setattr(conversion, "SHARD_BYTES", 64 * 1024**2)
    out = ensure_converted(paths["smollm2"], cache_root=tmp_path, progress=False)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert "model.safetensors" not in shards and len(shards) >= 8
    assert sorted(set(index["weight_map"].values())) == shards
    assert len(index["weight_map"]) == 272 and index["metadata"]["total_size"] == sum(
        (out / name).stat().st_size for name in shards) - sum(_header_bytes(out / name) for name in shards)  # fmt: skip
    assert ensure_converted(paths["smollm2"], cache_root=tmp_path, progress=False) == out  # cached as it is
    ours, whole = load_model(out), load_model(converted["smollm2"])
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), whole.state_dict().values(), strict=True))
    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    down = whole.model.layers[29].mlp.down_proj.weight
    torch.testing.assert_close(theirs.model.layers[29].mlp.down_proj.weight, down)


def _header_bytes(path: Path) -> int:
    """A safetensors file's 8-byte length and JSON header."""
    with open(path, "rb") as f:
        return 8 + int.from_bytes(f.read(8), "little")


def weights_shape(directory: Path, name: str) -> list[int]:
    with safe_open(directory / "model.safetensors", "pt") as weights:
        return list(weights.get_slice(name).get_shape())


def test_converted_configs(converted):
    gemma = json.loads((converted["gemma3"] / "config.json").read_text())
    assert gemma["architectures"] == ["Gemma3ForCausalLM"] and gemma["model_type"] == "gemma3_text"
    assert gemma["layer_types"] == (["sliding_attention"] * 5 + ["full_attention"]) * 3
    assert gemma["sliding_window"] == 512 and gemma["head_dim"] == gemma["query_pre_attn_scalar"] == 256
    assert gemma["rope_parameters"]["sliding_attention"]["rope_theta"] == 10_000.0
    assert gemma["rope_parameters"]["full_attention"]["rope_theta"] == 1_000_000.0
    assert gemma["hidden_activation"] == "gelu_pytorch_tanh" and gemma["tie_word_embeddings"] is True
    assert gemma["num_key_value_heads"] == 1 and gemma["vocab_size"] == 262144
    gen = json.loads((converted["gemma3"] / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [1, 106]
    assert "<start_of_turn>" in json.loads((converted["gemma3"] / "tokenizer_config.json").read_text())["chat_template"]

    smol = json.loads((converted["smollm2"] / "config.json").read_text())
    assert smol["architectures"] == ["LlamaForCausalLM"] and smol["rope_parameters"]["rope_theta"] == 100_000.0
    assert (smol["head_dim"], smol["num_attention_heads"], smol["num_key_value_heads"]) == (64, 9, 3)
    assert smol["tie_word_embeddings"] is True and smol["max_position_embeddings"] == 8192
    assert json.loads((converted["smollm2"] / "generation_config.json").read_text())["eos_token_id"] == [2]


# --- against transformers -----------------------------------------------------------------------------

PROMPTS = {"smollm2": "The quick brown fox jumps over the lazy dog.", "gemma3": "The quick brown fox jumps over"}


def _reference(gguf_path: Path, converted_dir: Path, ids: list[int]) -> dict:
    """transformers' own GGUF loading (load_gguf_checkpoint: its dequantization, renaming, q/k un-permute
    and Gemma norm shift, with the config it derives) -> logits for ``ids``, cached per machine."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    tag = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:12]
    path = cache_dir() / "test-reference" / f"{converted_dir.name}-tf{transformers.__version__}-{tag}.pt"
    if path.is_file():
        return torch.load(path)
    with torch.device("meta"):  # only used to name the tensors
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(converted_dir))
    parsed = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=skeleton)
    config_dict = dict(parsed["config"])
    config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    result = {"logits": logits, "config": config.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result, path.with_suffix(".tmp"))
    os.replace(path.with_suffix(".tmp"), path)
    return result


@pytest.fixture(scope="module")
def tokenizers(converted) -> dict[str, Tokenizer]:
    return {name: Tokenizer.from_dir(d) for name, d in converted.items()}


@pytest.fixture(scope="module")
def hf_models(converted):
    from transformers import AutoModelForCausalLM

    return {name: AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval() for name, d in converted.items()}


@pytest.mark.real_model
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_logits_equal_transformers_gguf_loading(paths, converted, tokenizers, hf_models, model):
    ids = tokenizers[model].encode(PROMPTS[model])
    reference = _reference(paths[model], converted[model], ids)
    with torch.no_grad():
        logits = hf_models[model](torch.tensor([ids])).logits[0]
    assert logits.shape == reference["logits"].shape
    diff = (logits - reference["logits"]).abs().max().item()
    print(f"\n{model}: max |logit diff| vs transformers' GGUF loading = {diff:.2e}")
    assert diff <= 1e-4
    ours = json.loads((converted[model] / "config.json").read_text())
    for key in ("head_dim", "num_key_value_heads", "rms_norm_eps", "rope_parameters", "tie_word_embeddings"):
        assert ours[key] == reference["config"][key], key
    if model == "gemma3":
        for key in ("layer_types", "sliding_window", "query_pre_attn_scalar", "hidden_activation"):
            assert ours[key] == reference["config"][key], key


FACTS = [
    ("smollm2", "The capital of France is", "Paris"),
    ("gemma3", "The capital of France is the city of", "Paris"),  # a 270M base model: it needs the hint
    ("gemma3", "Paris is the capital of", "France"),
]


@pytest.mark.real_model
@pytest.mark.parametrize(("model", "prompt", "expected"), FACTS)
def test_greedy_continuation_knows_a_fact(tokenizers, hf_models, model, prompt, expected):
    tok = tokenizers[model]
    ids = tok.encode(prompt)
    with torch.no_grad():
        out = hf_models[model].generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
    text = tok.decode(out[0, len(ids) :].tolist())
    assert expected in text, text
