"""CTranslate2 Whisper (``model.bin`` + ``config.json`` + ``tokenizer.json``, as faster-whisper ships them) ->
an HF-format ``WhisperForConditionalGeneration`` directory, converted once and cached.

``model.bin`` is CTranslate2's own container: a version, the spec's name and revision, then each variable as
(name, rank, dims, dtype id, byte count, bytes) and at the end the aliases (one name standing for another, e.g.
the output projection for the token embeddings). Fused projections are split back into HF's: the self-attention's
``linear_0`` holds q, k, v stacked; the cross-attention's ``linear_1`` holds k, v. CTranslate2 stores the bias HF's
``k_proj`` does not have, as zeros: it is dropped (and checked to be zero).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from inference.env import cache_dir

CONVERTER_VERSION = 1  # bump when the output changes, so caches from older code are not reused
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5: bfloat16, read as uint16
_BFLOAT16 = 5


class ConversionError(ValueError):
    """A CTranslate2 model we cannot convert; the message says why."""


def read_model_bin(path: Path) -> tuple[str, dict[str, np.ndarray | torch.Tensor]]:
    """(spec name, {variable name: value}) with aliases resolved; bfloat16 variables come back as torch tensors."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return value[0]

    def string() -> str:
        nonlocal pos
        n = take("H")
        text = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return text

    version = take("I")
    if not 3 <= version <= 6:
        raise ConversionError(f"{path}: CTranslate2 binary version {version} is not supported (3 to 6 are)")
    spec = string()
    take("I")  # the spec's revision: the layout below is the same for every Whisper revision
    variables: dict[str, np.ndarray | torch.Tensor] = {}
    for _ in range(take("I")):
        name = string()
        dims = [take("I") for _ in range(take("B"))]
        dtype_id, nbytes = take("B"), take("I")
        raw = data[pos : pos + nbytes]
        pos += nbytes
        if dtype_id == _BFLOAT16:
            variables[name] = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(dims)
        elif dtype_id in _DTYPES:
            variables[name] = np.frombuffer(raw, dtype=_DTYPES[dtype_id]).reshape(dims)
        else:
            raise ConversionError(f"{path}: variable {name!r} has an unknown dtype id {dtype_id}")
    for _ in range(take("I")):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return spec, variables


def _float(variables: dict, name: str) -> torch.Tensor:
    """A weight in its stored float type; int8 / int16 weights are dequantized to float32 with their ``*_scale``."""
    value = variables[name]
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
    if tensor.dtype in (torch.int8, torch.int16):
        scale = torch.from_numpy(np.array(variables[f"{name}_scale"], dtype=np.float32))
        tensor = tensor.float() / (scale[:, None] if scale.ndim else scale)
    return tensor


def _attention(variables: dict, src: str, dst: str, fused: str, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Split a fused CTranslate2 projection into HF's ``{q,k,v}_proj`` (k without its zero bias)."""
    out: dict[str, torch.Tensor] = {}
    weights = _float(variables, f"{src}/{fused}/weight").chunk(len(names))
    biases = _float(variables, f"{src}/{fused}/bias").chunk(len(names))
    for name, weight, bias in zip(names, weights, biases, strict=True):
        out[f"{dst}.{name}_proj.weight"] = weight.contiguous()
        if name == "k":
            if bias.abs().max() > 0:
                raise ConversionError(f"{src}: a non-zero key bias has no place in Whisper")
            continue
        out[f"{dst}.{name}_proj.bias"] = bias.contiguous()
    return out


def _linear(variables: dict, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": _float(variables, f"{src}/weight"), f"{dst}.bias": _float(variables, f"{src}/bias")}


def _norm(variables: dict, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {f"{dst}.weight": _float(variables, f"{src}/gamma"), f"{dst}.bias": _float(variables, f"{src}/beta")}


def _self_attention(variables: dict, src: str, dst: str) -> dict[str, torch.Tensor]:
    """A layer's self-attention: its LayerNorm, q/k/v (fused in ``linear_0``) and output projection."""
    return (
        _norm(variables, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        | _attention(variables, f"{src}/self_attention", f"{dst}.self_attn", "linear_0", ("q", "k", "v"))
        | _linear(variables, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
    )


def _layers(variables: dict, side: str) -> int:
    return len({name.split("/")[1] for name in variables if re.match(rf"{side}/layer_\d+/", name)})


def whisper_state_dict(variables: dict) -> dict[str, torch.Tensor]:
    """CTranslate2 WhisperSpec variables -> HF ``WhisperForConditionalGeneration`` tensors (the stored float type)."""
    sd: dict[str, torch.Tensor] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        sd |= _linear(variables, f"encoder/{conv}", f"{enc}.{conv}")
    sd[f"{enc}.embed_positions.weight"] = _float(variables, "encoder/position_encodings/encodings")
    for i in range(_layers(variables, "encoder")):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        sd |= _self_attention(variables, src, dst) | _ffn(variables, src, dst)
    sd |= _norm(variables, "encoder/layer_norm", f"{enc}.layer_norm")
    sd[f"{dec}.embed_tokens.weight"] = _float(variables, "decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = _float(variables, "decoder/position_encodings/encodings")
    for i in range(_layers(variables, "decoder")):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        sd |= _self_attention(variables, src, dst)
        sd |= _norm(variables, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
        sd |= _linear(variables, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        sd |= _attention(variables, f"{src}/attention", f"{dst}.encoder_attn", "linear_1", ("k", "v"))
        sd |= _linear(variables, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        sd |= _ffn(variables, src, dst)
    sd |= _norm(variables, "decoder/layer_norm", f"{dec}.layer_norm")
    return sd


def _ffn(variables: dict, src: str, dst: str) -> dict[str, torch.Tensor]:
    return (
        _norm(variables, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
        | _linear(variables, f"{src}/ffn/linear_0", f"{dst}.fc1")
        | _linear(variables, f"{src}/ffn/linear_1", f"{dst}.fc2")
    )


def hf_config(variables: dict, ct2_config: dict, tokenizer: dict) -> tuple[dict, dict]:
    """(config.json, generation_config.json) as transformers writes them for a Whisper checkpoint."""
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    vocab_ids = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    multilingual = vocab >= 51865
    eot = vocab_ids["<|endoftext|>"]
    sot = vocab_ids["<|startoftranscript|>"]
    config = {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": int(vocab),
        "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "d_model": int(d_model),
        "encoder_layers": _layers(variables, "encoder"),
        "decoder_layers": _layers(variables, "decoder"),
        "encoder_attention_heads": int(np.array(variables["encoder/num_heads"])),
        "decoder_attention_heads": int(np.array(variables["decoder/num_heads"])),
        "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": True,
        "pad_token_id": eot,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "decoder_start_token_id": sot,
        "torch_dtype": str(_float(variables, "decoder/embeddings/weight").dtype).removeprefix("torch."),
    }
    language_ids = set(ct2_config.get("lang_ids", []))
    languages = {token: token_id for token, token_id in vocab_ids.items() if token_id in language_ids}
    generation = {
        "decoder_start_token_id": sot,
        "eos_token_id": eot,
        "pad_token_id": eot,
        "is_multilingual": multilingual,
        "lang_to_id": languages,
        "task_to_id": {"transcribe": vocab_ids["<|transcribe|>"], "translate": vocab_ids["<|translate|>"]},
        "no_timestamps_token_id": vocab_ids["<|notimestamps|>"],
        "prev_sot_token_id": vocab_ids["<|startofprev|>"],
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [])),
        "alignment_heads": ct2_config.get("alignment_heads", []),
        "max_length": config["max_target_positions"],
    }
    return config, generation


def cache_key(model_bin: Path) -> str:
    digest = hashlib.sha256(f"v{CONVERTER_VERSION}".encode())
    size = model_bin.stat().st_size
    with open(model_bin, "rb") as f:
        for i in range(16):  # 16 x 64 KiB spread over the file, and its size
            f.seek(size * i // 16)
            digest.update(f.read(65536))
    digest.update(str(size).encode())
    return f"whisper-{digest.hexdigest()[:16]}"


def ensure_converted(ct2_dir: Path, model_bin: Path | None = None, progress: bool = True) -> Path:
    """The HF-format directory for a CTranslate2 Whisper directory (``model_bin`` where the weights lie elsewhere,
    e.g. joined from parts), converted on first use: written aside, then renamed into place."""
    ct2_dir = Path(ct2_dir)
    model_bin = Path(model_bin or ct2_dir / "model.bin")
    target = cache_dir() / "converted" / cache_key(model_bin)
    if (target / "config.json").is_file():
        return target
    steps = tqdm(total=3, desc=f"converting {model_bin.name} (CTranslate2 Whisper)", disable=not progress)
    spec, variables = read_model_bin(model_bin)
    if spec != "WhisperSpec":
        raise ConversionError(f"{model_bin}: a {spec}, not a Whisper model")
    steps.update()
    tokenizer = json.loads((ct2_dir / "tokenizer.json").read_text(encoding="utf-8"))
    ct2_config = json.loads((ct2_dir / "config.json").read_text()) if (ct2_dir / "config.json").is_file() else {}
    config, generation = hf_config(variables, ct2_config, tokenizer)
    tensors = whisper_state_dict(variables)
    steps.update()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2))
        shutil.copy(ct2_dir / "tokenizer.json", tmp / "tokenizer.json")
        preprocessor = {"feature_size": config["num_mel_bins"], "sampling_rate": 16000, "hop_length": 160,
                        "n_fft": 400, "chunk_length": 30, "padding_value": 0.0}  # fmt: skip
        (tmp / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    steps.update()
    steps.close()
    return target
