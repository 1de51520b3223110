"""GGUF weights kept in their quantized blocks for the Triton matmul (``engine.weights = "gguf"``).

Decode reads every weight once per step, so on a GPU its speed is set by bytes: a Q4_K matrix is 4.5 bits
a weight against bf16's 16. Each projection whose GGUF tensors are of types the kernel reads (Q8_0, Q4_0,
Q4_1, Q5_0, Q5_1, Q4_K, Q6_K: every matrix of the packaged SmolLM2 Q4_1 and Gemma 3 Q4_K_M files) becomes a
``GGUFLinear`` holding the file's blocks on the device; fused projections (q/k/v, gate/up) stack their parts'
block rows, one stack per type. A mixture of experts' stacks (``ffn_{gate,up,down}_exps``) become a
``GGUFExperts`` on the fused MoE kernel. Everything else (other types, norms, embeddings, routers) stays dense. A
tied output head reuses the token embedding's blocks.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kernels.gguf_blocks import GGUF_BLOCKS

log = logging.getLogger("inference.gguf_weights")


class GGUFLinear(nn.Module):
    """x [..., K] → [..., N] through ``kernels.quant_matmul`` on blocks [N, K / block_weights * block_bytes].

    ``blocks`` may also be a list of (qtype, blocks) parts, consecutive runs of output rows: a fused projection
    whose parts are quantized differently (Gemma 3's q / k in Q5_0 beside v in Q8_0) runs one matmul per part and
    concatenates them. Adjacent parts of one type are stacked into one."""

    def __init__(
        self, qtype: str | None, blocks: torch.Tensor | list[tuple[str, torch.Tensor]], in_features: int,
        bias: torch.Tensor | None,
    ):  # fmt: skip
        super().__init__()
        parts = [(qtype, blocks)] if isinstance(blocks, torch.Tensor) else list(blocks)
        merged: list[tuple[str, list[torch.Tensor]]] = []
        for part_type, rows in parts:
            if part_type not in GGUF_BLOCKS:
                raise ValueError(f"GGUF type {part_type!r} has no kernel (supported: {', '.join(GGUF_BLOCKS)})")
            if merged and merged[-1][0] == part_type:
                merged[-1][1].append(rows)
            else:
                merged.append((part_type, [rows]))
        self.qtypes = tuple(t for t, _ in merged)
        for i, (_, rows) in enumerate(merged):
            self.register_buffer(f"blocks_{i}", torch.cat(rows).contiguous(), persistent=False)
        self.in_features = in_features
        self.out_features = sum(b.shape[0] for b in self._blocks())
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @property
    def qtype(self) -> str:
        return "+".join(self.qtypes)

    @property
    def blocks(self) -> torch.Tensor:
        """The blocks of a single-type projection (not an AttributeError: nn.Module would hide its message)."""
        if len(self.qtypes) != 1:
            raise TypeError(f"a {self.qtype} projection has one block tensor per type")
        return self.blocks_0

    def _blocks(self) -> list[torch.Tensor]:
        return [getattr(self, f"blocks_{i}") for i in range(len(self.qtypes))]

    def weight_bytes(self) -> int:
        """Bytes of blocks one matmul reads."""
        return sum(b.numel() for b in self._blocks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kernels.quant_matmul import quant_matmul

        outs = [quant_matmul(x, b, t) for t, b in zip(self.qtypes, self._blocks(), strict=True)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.qtype}"


class GGUFExperts(nn.Module):
    """A mixture of experts' stacks in the file's blocks: forward(x [T, H], weights [T, k], ids [T, k]) -> [T, H]
    through ``kernels.fused_moe_gguf``, as ``FusedMoE`` does on dense stacks. ``gate`` / ``up``: ([E, I, H / bw *
    bb] uint8, type), ``down``: ([E, H, I / bw * bb] uint8, type), as llama.cpp stores ``ffn_{gate,up,down}_exps``."""

    def __init__(self, gate: tuple[torch.Tensor, str], up: tuple[torch.Tensor, str], down: tuple[torch.Tensor, str],
                 activation: str):  # fmt: skip
        super().__init__()
        for part, (blocks, qtype) in zip(("gate", "up", "down"), (gate, up, down), strict=True):
            if qtype not in GGUF_BLOCKS:
                raise ValueError(f"GGUF type {qtype!r} has no kernel (supported: {', '.join(GGUF_BLOCKS)})")
            self.register_buffer(f"{part}_blocks", blocks.contiguous(), persistent=False)
        self.qtypes = (gate[1], up[1], down[1])
        self.num_experts, self.intermediate_size = gate[0].shape[:2]
        self.activation = activation

    def weight_bytes(self) -> int:
        """Bytes of all the experts' blocks."""
        return self.gate_blocks.numel() + self.up_blocks.numel() + self.down_blocks.numel()

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        from kernels.fused_moe_gguf import fused_moe_gguf

        gate, up, down = self.qtypes
        return fused_moe_gguf(x, (self.gate_blocks, gate), (self.up_blocks, up), (self.down_blocks, down), weights,
                              ids, self.activation)  # fmt: skip

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, intermediate_size={self.intermediate_size}, {'/'.join(self.qtypes)}"


def _expert_sources(model: nn.Module, gguf):
    """(module name, its ``FusedMoE``, the three GGUF stacks ``blk.N.ffn_*_exps``) of each layer whose stacks are
    of types the kernel reads."""
    from inference.layers.moe import FusedMoE

    for module_name, module in list(model.named_modules()):
        match = re.fullmatch(r"model\.layers\.(\d+)\.mlp\.experts", module_name)
        if not isinstance(module, FusedMoE) or match is None:
            continue
        names = [f"blk.{match.group(1)}.ffn_{part}_exps.weight" for part in ("gate", "up", "down")]
        if any(n not in gguf.tensors or _qtype(gguf, n) not in GGUF_BLOCKS for n in names):
            log.info("%s: experts' types %s have no kernel; kept dense", module_name,
                     [_qtype(gguf, n) if n in gguf.tensors else None for n in names])  # fmt: skip
            continue
        yield module_name, module, names


def _experts_on_blocks(model: nn.Module, gguf, device: torch.device) -> int:
    """Each layer's ``FusedMoE`` (``model.layers.N.mlp.experts``) whose three stacks (``blk.N.ffn_*_exps``) are of
    types the kernel reads becomes a ``GGUFExperts``; returns how many did."""
    replaced = 0
    for module_name, module, names in _expert_sources(model, gguf):
        stacks = [(torch.from_numpy(np.array(gguf.raw(n))).to(device), _qtype(gguf, n)) for n in names]
        parent, _, leaf = module_name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, GGUFExperts(*stacks, module.activation))
        replaced += 1
    return replaced


def _hf_modules(gguf, arch: str) -> dict[str, str]:
    """HF module name (``model.layers.0.self_attn.q_proj``) → the GGUF tensor holding its weight."""
    from inference.loader.convert import ConversionError, _hf_name

    names = {}
    for name in gguf.tensors:
        if name.endswith(".weight"):
            try:
                names[_hf_name(arch, name).removesuffix(".weight")] = name
            except ConversionError:
                continue
    return names


def _qtype(gguf, name: str) -> str:
    return gguf.tensors[name].ggml_type.name


def _linear_sources(model: nn.Module, gguf):
    """(module name, the ``nn.Linear``, its HF parts, their GGUF tensors) of each projection whose tensors are of
    types the kernel reads; fused projections name their parts in shard order."""
    packed = {ours: {} for ours, _ in getattr(model, "packed_modules", {}).values()}
    for hf_part, (ours, shard) in getattr(model, "packed_modules", {}).items():
        packed[ours][shard] = hf_part
    hf_to_gguf = _hf_modules(gguf, gguf.architecture)
    rename = getattr(model, "checkpoint_name", None)
    if rename is not None:  # the HF names as our modules have them (Mixtral's block_sparse_moe is our mlp)
        ours = {hf: rename(f"{hf}.weight") for hf in hf_to_gguf}
        hf_to_gguf = {ours[hf].removesuffix(".weight") if isinstance(ours[hf], str) else hf: name
                      for hf, name in hf_to_gguf.items()}  # fmt: skip
    for module_name, module in list(model.named_modules()):
        # dense_only: read as matrices, never called (DeepSeek's kv_b_proj)
        if not isinstance(module, nn.Linear) or module_name.rpartition(".")[2] in getattr(model, "dense_only", ()):
            continue
        parent_name, _, leaf = module_name.rpartition(".")
        if hasattr(module, "shard_sizes"):  # fused: its HF parts in shard order
            parts = [f"{parent_name}.{packed[leaf][shard]}" for shard in module.shard_sizes]
        else:
            parts = [module_name]
        names = [hf_to_gguf.get(p) for p in parts]
        if None in names or any(_qtype(gguf, n) not in GGUF_BLOCKS for n in names):
            continue
        yield module_name, module, parts, names


def strip_block_weights(model: nn.Module, gguf_path: str | Path) -> set[str]:
    """On a model built on the meta device, before it is loaded: drop the dense matrices that ``use_gguf_weights``
    will replace by blocks (so they are never allocated), and return the checkpoint tensors that filled them (the
    loader skips them). Biases stay: they are loaded, then the blocks' layers take them over."""
    from inference.loader.gguf import GGUFFile

    with GGUFFile(gguf_path) as gguf:
        return _strip(model, gguf)


def _strip(model: nn.Module, gguf) -> set[str]:
    """``strip_block_weights`` on an open GGUF file."""
    from inference.loader.convert import _hf_name

    unneeded: set[str] = set()
    arch = gguf.architecture
    for _, module, _, names in _linear_sources(model, gguf):
        del module.weight
        unneeded.update(_hf_name(arch, n) for n in names)
    for _, module, names in _expert_sources(model, gguf):
        del module.w13_weight, module.w2_weight
        for n in names:  # one checkpoint tensor per expert
            unneeded.update(_hf_name(arch, n).format(e=e) for e in range(module.num_experts))
    return unneeded


def block_tensor_names(gguf_path: str | Path) -> frozenset[str]:
    """The HF tensors of ``gguf_path``'s conversion that a model on its blocks never reads (``strip_block_weights``
    on the model its header describes, built on the meta device): the conversion for ``weights = "gguf"`` leaves
    them out, so it holds little more than the embeddings (a 70B Q4_K_M: ~4 GB instead of ~280 GB)."""
    from inference.loader.gguf import GGUFFile
    from inference.loader.gguf_config import ROPE_FREQS, hf_config
    from inference.models.registry import build_model

    with GGUFFile(gguf_path) as gguf:  # one read of the header (Gemma's: 0.26 s, its 262k-token vocabulary)
        rope_freqs = gguf.dequantize(ROPE_FREQS) if ROPE_FREQS in gguf.tensors else None
        config = hf_config(gguf.architecture, gguf.metadata, gguf.tensors, rope_freqs)
        with torch.device("meta"):
            model = build_model(config)
        return frozenset(_strip(model, gguf))


def use_gguf_weights(model: nn.Module, gguf_path: str | Path, device: torch.device) -> int:
    """Replace the projections of ``model`` (loaded from the conversion of ``gguf_path``) whose GGUF tensors
    the kernel reads by ``GGUFLinear``s on ``device``; returns how many were replaced."""
    from inference.loader.convert import _unpermute_rope_rows
    from inference.loader.gguf import GGUFFile

    config = model.config
    replaced = 0
    with GGUFFile(gguf_path) as gguf:
        arch = gguf.architecture
        hf_to_gguf = _hf_modules(gguf, arch)
        for module_name, module, parts, names in _linear_sources(model, gguf):
            parent_name, _, leaf = module_name.rpartition(".")
            rows = []
            for hf, name in zip(parts, names, strict=True):
                raw = torch.from_numpy(np.array(gguf.raw(name)))  # a copy: the file's mapping closes after loading
                if arch == "llama" and hf.endswith(("q_proj", "k_proj")):
                    # quantization runs along a row, so the converter's row permutation moves whole blocks
                    heads = config.num_attention_heads if hf.endswith("q_proj") else config.num_key_value_heads
                    raw = _unpermute_rope_rows(raw, heads)
                order = model.row_order(hf) if hasattr(model, "row_order") else None
                if order is not None:  # rows the model reorders at load (DeepSeek's rope rows): whole rows move
                    raw = raw[order]
                rows.append((_qtype(gguf, name), raw.to(device)))
            layer = GGUFLinear(None, rows, module.in_features, module.bias)
            if hasattr(module, "split"):
                layer.split = module.split
            setattr(model.get_submodule(parent_name) if parent_name else model, leaf, layer)
            replaced += 1
        replaced += _experts_on_blocks(model, gguf, device)
        if getattr(model, "lm_head", "absent") is None:  # tied: the head reads the embedding's blocks
            name = hf_to_gguf.get("model.embed_tokens")
            if name is not None and _qtype(gguf, name) in GGUF_BLOCKS:
                blocks = torch.from_numpy(np.array(gguf.raw(name))).to(device)
                model.lm_head = GGUFLinear(_qtype(gguf, name), blocks, config.hidden_size, None)
                replaced += 1
    log.info("%d projections on GGUF blocks", replaced)
    return replaced
