"""Where a model's weights come from: a model source (``packaged:smollm2|gemma3|minilm|whisper-base``, a ``.gguf``
file, a CTranslate2 Whisper directory or an HF directory) resolved to the HF-format directory the loader reads, and
to the GGUF file behind it if there is one.
"""

from __future__ import annotations

from pathlib import Path

from inference.env import ConfigError


def gguf_file(source: str) -> Path | None:
    """The GGUF file behind a model source, if it is one."""
    from inference import packaged

    if source.startswith("packaged:"):
        files = {"smollm2": packaged.smollm2_gguf, "gemma3": packaged.gemma3_gguf}
        name = source.split(":", 1)[1]
        return Path(files[name]()) if name in files else None
    path = Path(source).expanduser()
    return path if path.suffix == ".gguf" else None


def resolve_source(source: str) -> Path:
    """An HF-format directory for a model source (GGUF files are converted once and cached)."""
    from inference import packaged
    from inference.loader import ctranslate2
    from inference.loader.convert import ensure_converted

    if source.startswith("packaged:"):
        name = source.split(":", 1)[1]
        if name == "minilm":
            return packaged.minilm_dir()
        if name == "whisper-base":
            return ctranslate2.ensure_converted(*packaged.whisper_base())
        files = {"smollm2": packaged.smollm2_gguf, "gemma3": packaged.gemma3_gguf}
        if name not in files:
            raise ConfigError(
                f"unknown packaged model {name!r}; packaged models: smollm2, gemma3, minilm, whisper-base"
            )
        return ensure_converted(files[name]())
    path = Path(source).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return ensure_converted(path)
    if path.is_dir() and (path / "model.bin").is_file() and (path / "tokenizer.json").is_file():
        return ctranslate2.ensure_converted(path)  # CTranslate2 (faster-whisper's format)
    if path.is_dir() and (path / "config.json").exists():
        return path
    raise ConfigError(
        f"model source {source!r} is neither a .gguf file, a CTranslate2 Whisper directory nor an HF directory "
        "with config.json"
    )
