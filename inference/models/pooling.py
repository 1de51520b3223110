"""Sentence embeddings from token hidden states: the pooling and normalisation a checkpoint's sentence-transformers
files name (``modules.json`` → ``*_Pooling/config.json`` and an optional ``Normalize`` module).

Without those files the model family's default (its class's ``default_pooling``) applies: BERT / MiniLM mean +
normalise, XLM-R (bge-m3) CLS + normalise, decoder embedding models (Qwen3-Embedding) last token + normalise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from inference.models.config import ConfigError

MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "lasttoken")
# sentence-transformers < 5 wrote one boolean per mode; 5+ writes ``pooling_mode``
_LEGACY_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class Pooling:
    mode: str = "mean"
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"Pooling: mode {self.mode!r} is not supported; supported: {', '.join(MODES)}")


def _pooling_mode(config: dict, path: Path) -> str:
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [m for key, m in _LEGACY_KEYS.items() if config.get(key)]
        mode = modes if len(modes) != 1 else modes[0]
        mode = mode or "mean"  # sentence-transformers' own default when no flag is set
    if isinstance(mode, list | tuple):
        if len(mode) != 1:
            raise ConfigError(f"{path}: pooling_mode {mode!r}: concatenated pooling modes are not supported")
        mode = mode[0]
    if config.get("include_prompt", True) is False:
        raise ConfigError(f"{path}: include_prompt false (prompt tokens left out of the pooling) is not supported")
    if mode not in MODES:
        raise ConfigError(f"{path}: pooling_mode {mode!r} is not supported; supported: {', '.join(MODES)}")
    return mode


def read_pooling(model_dir: Path, default: Pooling) -> Pooling:
    """The pooling of the sentence-transformers pipeline in ``model_dir`` (its modules after the transformer),
    or ``default`` when the directory has no ``modules.json``."""
    modules_file = Path(model_dir) / "modules.json"
    if not modules_file.is_file():
        return default
    mode, normalize = None, False
    for module in json.loads(modules_file.read_text()):
        kind = module.get("type", "").rsplit(".", 1)[-1]
        if kind == "Transformer" or module.get("idx") == 0:
            continue
        if kind == "Pooling":
            config_file = Path(model_dir) / module.get("path", "") / "config.json"
            mode = _pooling_mode(json.loads(config_file.read_text()), config_file)
        elif kind == "Normalize":
            normalize = True
        else:  # Dense projections and the like change the vector: refuse rather than serve something else
            raise ConfigError(f"{modules_file}: sentence-transformers module {module.get('type')!r} is not supported")
    if mode is None:
        raise ConfigError(f"{modules_file}: no Pooling module")
    return Pooling(mode, normalize)


def pool(hidden: torch.Tensor, lengths: list[int], pooling: Pooling) -> torch.Tensor:
    """hidden [T, H] of a flat batch of sequences of ``lengths`` → [S, H] float32 sentence vectors."""
    hidden = hidden.float()
    device = hidden.device
    counts = torch.tensor(lengths, device=device)
    ends = counts.cumsum(0)  # [S] one past each sequence's last token
    lens = counts.to(hidden.dtype)[:, None]
    if pooling.mode == "cls":
        out = hidden[ends - counts]
    elif pooling.mode == "lasttoken":
        out = hidden[ends - 1]
    elif pooling.mode == "max":
        out = torch.stack([rows.amax(0) for rows in hidden.split(lengths)])
    else:  # mean, or sum / sqrt(n)
        seq_of_token = torch.repeat_interleave(torch.arange(len(lengths), device=device), counts)  # [T]
        sums = hidden.new_zeros(len(lengths), hidden.shape[1]).index_add_(0, seq_of_token, hidden)
        out = sums / (lens if pooling.mode == "mean" else lens.sqrt())
    return F.normalize(out, p=2, dim=-1) if pooling.normalize else out
