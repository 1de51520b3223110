"""GGUF -> HF-format checkpoint directory (config, float32 safetensors, tokenizer), converted once and cached.

The directory has the exact layout transformers writes, so both ``AutoModelForCausalLM.from_pretrained``
and our own model code (which uses HF parameter names) load it. The cache key hashes the GGUF header
and samples of its data, so a changed file converts again; the conversion is written to a temporary
directory and renamed into place, so a crash never leaves a half-written cache entry.

Architectures: ``llama`` (Llama 2 / 3.x, SmolLM2, Mistral, Mixtral), ``qwen2``, ``qwen3``, ``qwen2moe``,
``qwen3moe``, ``deepseek2`` (DeepSeek-V2 / -Lite / Coder-V2) and ``gemma3``; the metadata
becomes config.json in ``gguf_config``, the tensors are renamed and un-permuted here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from inference.env import cache_dir
from inference.loader.gguf import GGUFFile
from inference.loader.gguf_config import ROPE_FREQS, ConversionError, hf_config, token_id
from inference.loader.safetensors import INDEX_FILE
from inference.tokenizer import gguf_vocab
from inference.tokenizer.chat_template import END_OF_TURN_TOKENS, GEMMA3_CHAT_TEMPLATE

CONVERTER_VERSION = 2  # bump when the output changes, so caches from older code are not reused
SUPPORTED_ARCHITECTURES = ("llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "deepseek2", "gemma3")
__all__ = ["ConversionError", "SUPPORTED_ARCHITECTURES", "convert", "ensure_converted"]

# GGUF block tensor -> HF name inside model.layers.N
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
}
# mixture-of-experts tensors: the router, and the experts stacked [E, rows, cols] (written out one per expert)
_MOE_NAMES = {
    "ffn_gate_inp": "mlp.gate",
    "ffn_gate_exps": "mlp.experts.{e}.gate_proj",
    "ffn_up_exps": "mlp.experts.{e}.up_proj",
    "ffn_down_exps": "mlp.experts.{e}.down_proj",
    "ffn_gate_inp_shexp": "mlp.shared_expert_gate",  # Qwen2-MoE's shared expert and its gate
    "ffn_gate_shexp": "mlp.shared_expert.gate_proj",
    "ffn_up_shexp": "mlp.shared_expert.up_proj",
    "ffn_down_shexp": "mlp.shared_expert.down_proj",
}
_MIXTRAL_NAMES = {  # Mixtral's files are `llama` files with experts; its HF names are its own
    "ffn_gate_inp": "block_sparse_moe.gate",
    "ffn_gate_exps": "block_sparse_moe.experts.{e}.w1",
    "ffn_up_exps": "block_sparse_moe.experts.{e}.w3",
    "ffn_down_exps": "block_sparse_moe.experts.{e}.w2",
}
_DEEPSEEK2_NAMES = {  # MLA's projections and norms; the shared experts are one MLP, ``shared_experts``
    "attn_q_a": "self_attn.q_a_proj",
    "attn_q_a_norm": "self_attn.q_a_layernorm",
    "attn_q_b": "self_attn.q_b_proj",
    "attn_kv_a_mqa": "self_attn.kv_a_proj_with_mqa",
    "attn_kv_a_norm": "self_attn.kv_a_layernorm",
    "attn_kv_b": "self_attn.kv_b_proj",  # older files; newer ones split it (``_kv_b``)
    "ffn_gate_shexp": "mlp.shared_experts.gate_proj",
    "ffn_up_shexp": "mlp.shared_experts.up_proj",
    "ffn_down_shexp": "mlp.shared_experts.down_proj",
}
# newer llama.cpp files split kv_b_proj per head into attn_k_b (W_UK, transposed) and attn_v_b (W_UV)
_SPLIT_KV_B = (".attn_k_b.weight", ".attn_v_b.weight")
_ARCH_BLOCK_NAMES = {
    "llama": {"ffn_norm": "post_attention_layernorm", **_MIXTRAL_NAMES},
    "qwen2": {"ffn_norm": "post_attention_layernorm"},
    "qwen3": {"ffn_norm": "post_attention_layernorm"},
    "qwen2moe": {"ffn_norm": "post_attention_layernorm", **_MOE_NAMES},
    "qwen3moe": {"ffn_norm": "post_attention_layernorm", **_MOE_NAMES},
    "deepseek2": {"ffn_norm": "post_attention_layernorm", **_MOE_NAMES, **_DEEPSEEK2_NAMES},
    "gemma3": {
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
    },
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def cache_key(gguf_path: str | Path) -> str:
    """``<stem>-<hash>``: the hash covers the header (metadata + tensor table), the size and data samples."""
    path = Path(gguf_path)
    digest = hashlib.sha256(f"v{CONVERTER_VERSION}".encode())
    size = path.stat().st_size
    with GGUFFile(path) as gguf:
        header_end = gguf.data_start
    with open(path, "rb") as f:
        digest.update(f.read(header_end))
        digest.update(str(size).encode())
        for i in range(16):  # 16 x 64 KiB spread over the tensor data
            f.seek(header_end + (size - header_end) * i // 16)
            digest.update(f.read(65536))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)
    return f"{stem}-{digest.hexdigest()[:16]}"


def ensure_converted(
    gguf_path: str | Path, cache_root: str | Path | None = None, progress: bool = True,
    skip: frozenset[str] = frozenset(),
) -> Path:  # fmt: skip
    """The HF-format directory for ``gguf_path``, converting it first if it is not cached yet. ``skip``: HF tensor
    names left out (those a model on GGUF blocks never reads: ``inference.weights.gguf.block_tensor_names``); such
    a conversion is cached apart from the whole one."""
    path = Path(gguf_path)
    if not path.is_file():
        raise ConversionError(f"{path} does not exist")
    root = Path(cache_root) if cache_root is not None else cache_dir() / "converted"
    key = cache_key(path)
    if skip:
        key += "-without-" + hashlib.sha256("\n".join(sorted(skip)).encode()).hexdigest()[:8]
    target = root / key
    if _converted(target):
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        convert(path, staging, progress=progress, skip=skip)
        # mkdtemp and safetensors create owner-only entries; a cache is for every user of the machine
        os.chmod(staging, 0o755)
        for file in staging.iterdir():
            os.chmod(file, 0o644)
        try:
            os.rename(staging, target)  # atomic; fails if another process got there first
        except OSError:
            if not _converted(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def convert(
    gguf_path: str | Path, out_dir: str | Path, progress: bool = True, skip: frozenset[str] = frozenset()
) -> None:
    """Write config.json, model.safetensors, tokenizer files and generation_config.json into ``out_dir``; the
    tensors whose HF names are in ``skip`` are neither dequantized nor written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with GGUFFile(gguf_path) as gguf:
        arch = gguf.architecture
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ConversionError(
                f"{gguf_path}: architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )
        meta = gguf.metadata
        rope_freqs = gguf.dequantize(ROPE_FREQS) if ROPE_FREQS in gguf.tensors else None
        config = hf_config(arch, meta, gguf.tensors, rope_freqs)
        # fail on unknown tensors before the work; rope_freqs went into the config, it is no weight
        names = {
            name: _hf_name(arch, name) for name in gguf.tensors if name != ROPE_FREQS and not name.endswith(_SPLIT_KV_B)
        }
        names = {name: hf for name, hf in names.items() if hf.format(e=0) not in skip}  # an expert stack: all or none
        gguf_vocab.build_tokenizer(meta).save(str(out / "tokenizer.json"))
        shards = _Shards(out)
        for name in tqdm(names, desc=f"converting {Path(gguf_path).name}", disable=not progress):
            weight = _to_hf(arch, name, gguf.dequantize(name), config)
            if "{e}" in names[name]:  # the experts' stack [E, rows, cols]: one matrix per expert, as HF names them
                for e, w in enumerate(weight):
                    shards.add(names[name].format(e=e), w.contiguous())
            else:
                shards.add(names[name], weight)
            del weight
        for name in gguf.tensors:
            if name.endswith(_SPLIT_KV_B[0]):
                layer = name.split(".")[1]
                k_b, v_b = gguf.dequantize(name), gguf.dequantize(name.replace("attn_k_b", "attn_v_b"))
                shards.add(f"model.layers.{layer}.self_attn.kv_b_proj.weight", _kv_b(k_b, v_b))
        shards.close()
        template = meta.get("tokenizer.chat_template") or (GEMMA3_CHAT_TEMPLATE if arch == "gemma3" else None)
        _write_json(out / "tokenizer_config.json", _tokenizer_config(meta, template, config))
        _write_json(out / "generation_config.json", _generation_config(meta, template))
        _write_json(out / "config.json", config)


SHARD_BYTES = 2 * 1024**3  # a conversion's safetensors files hold at most about this much each


class _Shards:
    """The converted tensors written as they come, a file each time ``SHARD_BYTES`` have gathered (with HF's
    ``model.safetensors.index.json``), so a conversion holds one shard in memory, not the whole model in fp32 (a
    70B's 280 GB). A model under one shard is a single ``model.safetensors``, as before."""

    def __init__(self, out: Path):
        self.out = out
        self.pending: dict[str, torch.Tensor] = {}
        self.files: list[tuple[str, list[str]]] = []  # (file name, its tensors)
        self.total = self.pending_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self.pending[name] = tensor
        size = tensor.numel() * tensor.element_size()
        self.total += size
        self.pending_bytes += size
        if self.pending_bytes >= SHARD_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            name = f"model-{len(self.files) + 1:05d}.safetensors"
            save_file(self.pending, str(self.out / name), metadata={"format": "pt"})
            self.files.append((name, list(self.pending)))
            self.pending, self.pending_bytes = {}, 0

    def close(self) -> None:
        if not self.files:
            save_file(self.pending, str(self.out / "model.safetensors"), metadata={"format": "pt"})
            return
        self._flush()
        weight_map = {tensor: file for file, tensors in self.files for tensor in tensors}
        _write_json(self.out / INDEX_FILE, {"metadata": {"total_size": self.total}, "weight_map": weight_map})


def _converted(target: Path) -> bool:
    """A finished conversion (one file, or shards and their index)."""
    return (target / "model.safetensors").is_file() or (target / INDEX_FILE).is_file()


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _hf_name(arch: str, name: str) -> str:
    if match := _BLOCK_RE.fullmatch(name):
        layer, part, kind = match.groups()
        hf = _ARCH_BLOCK_NAMES[arch].get(part) or _BLOCK_NAMES.get(part)
        if hf is not None:
            return f"model.layers.{layer}.{hf}.{kind}"
    else:
        base, _, kind = name.rpartition(".")
        if base in _GLOBAL_NAMES and kind in ("weight", "bias"):
            return f"{_GLOBAL_NAMES[base]}.{kind}"
    raise ConversionError(f"tensor {name!r} has no HF equivalent for architecture {arch!r}")


def _to_hf(arch: str, name: str, weight: torch.Tensor, config: dict[str, Any]) -> torch.Tensor:
    """Undo llama.cpp's layout changes for one dequantized tensor."""
    if arch == "llama" and name.endswith((".attn_q.weight", ".attn_k.weight", ".attn_q.bias", ".attn_k.bias")):
        # convert_hf_to_gguf.py permutes the biases of q / k as it does their rows
        heads = config["num_attention_heads"] if ".attn_q." in name else config["num_key_value_heads"]
        return _unpermute_rope_rows(weight, heads)
    if arch == "gemma3" and name.endswith("norm.weight"):
        # llama.cpp stores Gemma's RMSNorm scale as 1 + w; HF's Gemma3RMSNorm computes x * (1 + w)
        return weight - 1.0
    return weight


def _kv_b(k_b: torch.Tensor, v_b: torch.Tensor) -> torch.Tensor:
    """DeepSeek's kv_b_proj [heads * (nope + v), latent] from llama.cpp's halves: k_b [heads, latent, nope] (W_UK,
    transposed) and v_b [heads, v, latent] (W_UV)."""
    heads, latent, _ = k_b.shape
    return torch.cat([k_b.transpose(1, 2), v_b], dim=1).reshape(-1, latent).contiguous()


def _unpermute_rope_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp interleaves each head's rows (pairs for rotate-every-two RoPE); restore HF's halves.

    Per head, llama.cpp maps rows ``[x0..x(d/2-1), y0..y(d/2-1)]`` to ``[x0, y0, x1, y1, ...]``:
    view as (heads, d/2, 2, cols) and swap the middle axes to get (heads, 2, d/2, cols) back.
    """
    rows = weight.shape[0]
    half = rows // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape).contiguous()


def _end_of_turn_ids(meta: dict[str, Any], template: str | None) -> list[int]:
    """EOS, llama.cpp's eot/eom ids, and the known end-of-turn tokens the chat template writes."""
    tokens = meta["tokenizer.ggml.tokens"]
    ids = [token_id(meta, key) for key in ("eos_token_id", "eot_token_id", "eom_token_id")]
    index = {t: i for i, t in enumerate(tokens) if t in END_OF_TURN_TOKENS}
    ids += [index[t] for t in END_OF_TURN_TOKENS if t in index and template and t in template]
    return list(dict.fromkeys(i for i in ids if i is not None))


def _generation_config(meta: dict[str, Any], template: str | None) -> dict[str, Any]:
    return {
        "bos_token_id": token_id(meta, "bos_token_id"),
        "eos_token_id": _end_of_turn_ids(meta, template),
        "pad_token_id": token_id(meta, "padding_token_id"),
    }


def _tokenizer_config(meta: dict[str, Any], template: str | None, config: dict[str, Any]) -> dict[str, Any]:
    add_bos, add_eos = gguf_vocab.add_bos_eos(meta)
    out: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **gguf_vocab.special_tokens(meta),
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
        "model_max_length": config["max_position_embeddings"],
    }
    if template:
        out["chat_template"] = template
    return out
