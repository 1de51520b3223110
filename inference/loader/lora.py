"""PEFT LoRA adapters (a directory with ``adapter_config.json`` and ``adapter_model.safetensors``, as PEFT's
``save_pretrained`` writes it), attached to a loaded model at an engine slot (``inference/layers/lora.py``).

The adapter's matrices are read by their HF module names (``base_model.model.model.layers.0.self_attn.q_proj
.lora_A.weight``) and placed on our modules: q/k/v into the rows of ``qkv_proj``, gate/up into ``gate_up_proj``
(the model's ``packed_modules``). What PEFT can save but this does not serve is refused by name: DoRA, trained
biases, ``modules_to_save``, per-module ranks, embedding or output-head targets.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from inference.env import ConfigError
from inference.layers.linear import MergedLinear
from inference.layers.lora import hook_of

CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
_PREFIX = "base_model.model."


@dataclass(frozen=True)
class AdapterConfig:
    r: int
    lora_alpha: float
    use_rslora: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"LoRA rank r must be a positive integer, got {self.r!r}")
        if not isinstance(self.lora_alpha, int | float) or self.lora_alpha <= 0:
            raise ConfigError(f"lora_alpha must be positive, got {self.lora_alpha!r}")

    @property
    def scale(self) -> float:
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    @classmethod
    def read(cls, directory: Path) -> AdapterConfig:
        try:
            raw = json.loads((directory / CONFIG_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"LoRA adapter {directory}: cannot read {CONFIG_FILE}: {exc}") from None
        unsupported = {
            "peft_type": raw.get("peft_type", "LORA") != "LORA",
            "use_dora": bool(raw.get("use_dora")),
            "bias": raw.get("bias", "none") != "none",
            "modules_to_save": bool(raw.get("modules_to_save")),
            "rank_pattern": bool(raw.get("rank_pattern")),
            "alpha_pattern": bool(raw.get("alpha_pattern")),
            "fan_in_fan_out": bool(raw.get("fan_in_fan_out")),
        }
        refused = [name for name, bad in unsupported.items() if bad]
        if refused:
            raise ConfigError(f"LoRA adapter {directory}: {', '.join(refused)} not supported (plain LoRA only)")
        return cls(r=raw.get("r"), lora_alpha=raw.get("lora_alpha"), use_rslora=bool(raw.get("use_rslora")))


def _target(model: nn.Module, hf_module: str, directory: Path) -> tuple[nn.Module, int, int]:
    """(our module, first output column, output size) of an HF module name."""
    parent, _, leaf = hf_module.rpartition(".")
    packed = getattr(model, "packed_modules", {})
    ours, shard = packed.get(leaf, (leaf, None))
    name = f"{parent}.{ours}" if parent else ours
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ConfigError(f"LoRA adapter {directory}: {hf_module!r} is no projection of this model") from None
    if not hasattr(module, "in_features") or module is getattr(model, "lm_head", None):
        raise ConfigError(f"LoRA adapter {directory}: {hf_module!r} is not a linear projection it may target")
    if shard is None:
        return module, 0, module.out_features
    # a quantized projection keeps its MergedLinear's split, whose owner knows where each shard is
    merged = module if isinstance(module, MergedLinear) else getattr(getattr(module, "split", None), "__self__", None)
    if not isinstance(merged, MergedLinear):
        raise ConfigError(f"LoRA adapter {directory}: {hf_module!r} lies in a fused projection this model cannot "
                          "split (GGUF blocks?)")  # fmt: skip
    return module, *merged.shard_range(shard)


def attach(model: nn.Module, directory: Path, slot: int) -> int:
    """Read the adapter in ``directory`` and add it to ``model`` at ``slot``; returns how many projections it
    changes. Shapes are checked against the model: an adapter trained for another model is refused."""
    directory = Path(directory)
    config = AdapterConfig.read(directory)
    try:
        tensors = load_file(directory / WEIGHTS_FILE)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"LoRA adapter {directory}: cannot read {WEIGHTS_FILE}: {exc}") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        # base_model.model.<module>.lora_A.weight (PEFT may keep the adapter's name: .lora_A.default.weight)
        head, sep, tail = key.partition(".lora_")
        part = tail.split(".", 1)[0]
        if not sep or not key.startswith(_PREFIX) or part not in ("A", "B") or not key.endswith(".weight"):
            raise ConfigError(f"LoRA adapter {directory}: unexpected tensor {key!r}")
        pairs.setdefault(head.removeprefix(_PREFIX), {})[part] = tensor
    if not pairs:
        raise ConfigError(f"LoRA adapter {directory}: no LoRA weights in {WEIGHTS_FILE}")
    placed = []  # every matrix checked before any is attached: a refused adapter leaves nothing on the model
    for hf_module, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise ConfigError(f"LoRA adapter {directory}: {hf_module!r} lacks lora_A or lora_B")
        module, offset, size = _target(model, hf_module, directory)
        a, b = pair["A"], pair["B"]
        if tuple(a.shape) != (config.r, module.in_features) or tuple(b.shape) != (size, config.r):
            raise ConfigError(
                f"LoRA adapter {directory}: {hf_module!r} has A {tuple(a.shape)} and B {tuple(b.shape)}, the model "
                f"needs ({config.r}, {module.in_features}) and ({size}, {config.r})"
            )
        placed.append((module, offset, a, b))
    device = next(model.parameters()).device
    for module, offset, a, b in placed:
        hook_of(module).add(slot, offset, a.float().to(device), (b.float() * config.scale).to(device))
    return len(placed)


def detach(model: nn.Module, slot: int) -> None:
    """Take the adapter at ``slot`` off ``model`` (its matrices freed); the projections' hooks stay, empty."""
    for module in model.modules():
        hook = getattr(module, "lora_hook", None)
        if hook is not None:
            hook.adapters.pop(slot, None)
