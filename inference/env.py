"""The one reader of the environment for the inference service (no Django here)."""

from __future__ import annotations

import math
import os
from pathlib import Path


class ConfigError(ValueError):
    """A bad configuration value; the message names the variable or field."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int, min_value: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if min_value is not None and value < min_value:
        raise ConfigError(f"{name} must be >= {min_value}, got {value}")
    return value


def env_float(name: str, default: float, min_value: float | None = None) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {raw!r}")
    if min_value is not None and value < min_value:
        raise ConfigError(f"{name} must be >= {min_value}, got {value}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


PREFILL_DTYPES = ("auto", "bfloat16", "float32")


def prefill_dtype() -> str:
    """INFERENCE_PREFILL_DTYPE: the dtype of a quantized CPU model's prompt GEMMs (``inference/weights/quantize.py``):
    ``auto`` (the default: bfloat16 where the CPU multiplies bf16 natively, else float32), ``bfloat16`` or
    ``float32``."""
    value = env_str("INFERENCE_PREFILL_DTYPE", "auto").lower()
    if value not in PREFILL_DTYPES:
        raise ConfigError(f"INFERENCE_PREFILL_DTYPE must be one of {', '.join(PREFILL_DTYPES)}, got {value!r}")
    return value


def cache_dir() -> Path:
    """Converted weights and tokenizers live here (INFERENCE_CACHE_DIR, default ~/.cache/llm-hub)."""
    path = Path(env_str("INFERENCE_CACHE_DIR", str(Path.home() / ".cache" / "llm-hub"))).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
