"""GGUF weights kept in their quantized blocks for the Triton matmul (``engine.weights = "gguf"``).

Decode reads every weight once per step, so on a GPU its speed is set by bytes: a Q4_K matrix is 4.5 bits
a weight against bf16's 16. Each projection whose GGUF tensors are of types the kernel reads (Q8_0, Q4_0,
Q4_1, Q5_0, Q5_1, Q4_K, Q6_K: every matrix of the packaged SmolLM2 Q4_1 and Gemma 3 Q4_K_M files) becomes a
``GGUFLinear`` holding the file's blocks on the device; fused projections (q/k/v, gate/up) stack their parts'
block rows, one stack per type. Everything else (other types, norms, embeddings) stays dense. A tied output
head reuses the token embedding's blocks.
"""

from __future__ import annotations

import logging
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


def use_gguf_weights(model: nn.Module, gguf_path: str | Path, device: torch.device) -> int:
    """Replace the projections of ``model`` (loaded from the conversion of ``gguf_path``) whose GGUF tensors
    the kernel reads by ``GGUFLinear``s on ``device``; returns how many were replaced."""
    from inference.loader.convert import _unpermute_rope_rows
    from inference.loader.gguf import GGUFFile

    config = model.config
    packed = {ours: {} for ours, _ in getattr(model, "packed_modules", {}).values()}
    for hf_part, (ours, shard) in getattr(model, "packed_modules", {}).items():
        packed[ours][shard] = hf_part
    replaced = 0
    with GGUFFile(gguf_path) as gguf:
        arch = gguf.architecture
        hf_to_gguf = _hf_modules(gguf, arch)
        for module_name, module in list(model.named_modules()):
            if not isinstance(module, nn.Linear):
                continue
            parent_name, _, leaf = module_name.rpartition(".")
            if hasattr(module, "shard_sizes"):  # fused: its HF parts in shard order
                parts = [f"{parent_name}.{packed[leaf][shard]}" for shard in module.shard_sizes]
            else:
                parts = [module_name]
            names = [hf_to_gguf.get(p) for p in parts]
            if None in names:
                continue
            if any(_qtype(gguf, n) not in GGUF_BLOCKS for n in names):
                continue
            rows = []
            for hf, name in zip(parts, names, strict=True):
                raw = torch.from_numpy(np.array(gguf.raw(name)))  # a copy: the file's mapping closes after loading
                if arch == "llama" and hf.endswith(("q_proj", "k_proj")):
                    # quantization runs along a row, so the converter's row permutation moves whole blocks
                    heads = config.num_attention_heads if hf.endswith("q_proj") else config.num_key_value_heads
                    raw = _unpermute_rope_rows(raw, heads)
                rows.append((_qtype(gguf, name), raw.to(device)))
            layer = GGUFLinear(None, rows, module.in_features, module.bias)
            if hasattr(module, "split"):
                layer.split = module.split
            setattr(model.get_submodule(parent_name) if parent_name else model, leaf, layer)
            replaced += 1
        if getattr(model, "lm_head", "absent") is None:  # tied: the head reads the embedding's blocks
            name = hf_to_gguf.get("model.embed_tokens")
            if name is not None and _qtype(gguf, name) in GGUF_BLOCKS:
                blocks = torch.from_numpy(np.array(gguf.raw(name))).to(device)
                model.lm_head = GGUFLinear(_qtype(gguf, name), blocks, config.hidden_size, None)
                replaced += 1
    log.info("%d projections on GGUF blocks", replaced)
    return replaced
