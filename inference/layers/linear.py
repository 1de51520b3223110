"""Fused projections and loading HF checkpoints into them by HF parameter name.

HF checkpoints store q/k/v (and gate/up) as separate matrices; we stack them along the output dim
of one ``MergedLinear`` so one GEMM computes them all, and copy each HF matrix into its row range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

# HF module name (the path component just before .weight / .bias) -> (our MergedLinear's name, shard)
PackedModules = Mapping[str, tuple[str, str]]


class MergedLinear(nn.Linear):
    """Several projections of the same input, stacked: ``shards`` maps each shard name to its output size."""

    def __init__(self, in_features: int, shards: Mapping[str, int], bias: bool):
        super().__init__(in_features, sum(shards.values()), bias=bias)
        self.shard_sizes = dict(shards)
        self._offsets: dict[str, int] = {}
        offset = 0
        for name, size in shards.items():
            self._offsets[name] = offset
            offset += size

    def param_shards(self) -> dict[str, list[str]]:
        """Each parameter's shards (``load_hf_weights`` loads every one): the weight's and the bias's rows."""
        return {name: list(self.shard_sizes) for name, _ in self.named_parameters(recurse=False)}

    def shard_range(self, shard: str) -> tuple[int, int]:
        """(first output row, rows) of ``shard``."""
        return self._offsets[shard], self.shard_sizes[shard]

    def load_shard(self, param: nn.Parameter, shard: str, tensor: torch.Tensor, hf_name: str) -> None:
        """Copy one HF weight or bias into the rows of ``shard``."""
        offset, size = self.shard_range(shard)
        target = param.data[offset : offset + size]
        copy_checked(target, tensor, hf_name)

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[..., sum(sizes)] -> one view per shard, in declaration order."""
        return out.split(list(self.shard_sizes.values()), dim=-1)


def copy_checked(target: torch.Tensor, tensor: torch.Tensor, hf_name: str) -> None:
    """Copy a checkpoint tensor into a parameter (or a slice of one), refusing a shape that differs."""
    if tuple(tensor.shape) != tuple(target.shape):
        raise ValueError(f"weight {hf_name!r}: checkpoint shape {tuple(tensor.shape)} != model {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(tensor)  # casts to the parameter's dtype and moves to its device


def load_hf_weights(
    model: nn.Module,
    weights: Iterable[tuple[str, torch.Tensor]],
    packed: PackedModules | None = None,
    skip: Callable[[str], bool] | None = None,
    rename: Callable[[str], str | tuple[str, str]] | None = None,
) -> None:
    """Load HF-named tensors into ``model``; every parameter (every shard of merged ones) must be set.

    ``rename`` maps a checkpoint name onto the model's layout (e.g. dropping a ``bert.`` prefix), or onto
    (our parameter, its shard) directly (an expert's matrix in a ``FusedMoE``'s stack); ``skip`` drops names
    that are not parameters here (``rotary_emb.inv_freq``, pooler weights...). Modules whose parameters are
    filled in shards (``MergedLinear``, ``FusedMoE``) name them in ``param_shards`` and copy them in
    ``load_shard``. Unknown names, shape mismatches and anything left unset raise.
    """
    packed = packed or {}
    unpacked = {(ours, shard): hf for hf, (ours, shard) in packed.items()}
    params = dict(model.named_parameters())
    merged = {name: m for name, m in model.named_modules() if hasattr(m, "param_shards")}

    # what must be loaded: (our parameter, shard or None) -> the HF name that fills it, for error messages
    expected: dict[tuple[str, str | None], str] = {}
    for pname in params:
        module_name, _, leaf = pname.rpartition(".")
        if module_name in merged:
            parent, _, ours = module_name.rpartition(".")
            for shard in merged[module_name].param_shards()[leaf]:
                hf = unpacked.get((ours, shard), f"{ours}[{shard}]")
                expected[(pname, shard)] = f"{parent}.{hf}.{leaf}" if parent else f"{hf}.{leaf}"
        else:
            expected[(pname, None)] = pname

    loaded: set[tuple[str, str | None]] = set()
    for hf_name, tensor in weights:
        name = rename(hf_name) if rename else hf_name
        if isinstance(name, tuple):  # (our parameter, its shard), named by the model
            pname, shard = name
        else:
            if skip is not None and skip(name):
                continue
            parts = name.split(".")
            shard = None
            if len(parts) >= 2 and parts[-2] in packed:
                parts[-2], shard = packed[parts[-2]]
            pname = ".".join(parts)
        if pname not in params or (pname, shard) not in expected:
            raise KeyError(f"checkpoint weight {hf_name!r} has no place in {type(model).__name__}")
        if shard is None:
            copy_checked(params[pname].data, tensor, hf_name)
        else:
            merged[pname.rpartition(".")[0]].load_shard(params[pname], shard, tensor, hf_name)
        loaded.add((pname, shard))

    missing = [hf for key, hf in expected.items() if key not in loaded]
    if missing:
        shown = ", ".join(missing[:8]) + (f" ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise KeyError(f"checkpoint is missing weights for {type(model).__name__}: {shown}")
