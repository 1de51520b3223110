"""Building and loading the fused CPU decode extension (``decode.cpp``) through torch's extension mechanism.

``make install`` builds it (``python -m inference.cpu.extension``, ~30 s with g++ on 2 cores) into
``INFERENCE_EXTENSION_DIR/<key>/`` (default ``build/cpu-ext/`` in the checkout: part of the install, not of the
model cache, so a new ``INFERENCE_CACHE_DIR`` does not compile it again). ``key`` hashes the source, torch's
version, the compiler flags and this CPU's model and flags (the code is compiled for the CPU it runs on,
``-march=native``), so a changed source or a build copied to another machine builds anew and never loads a stale
or illegal binary. A later start imports the built module directly (milliseconds). When it cannot be built (no
compiler, no ninja, a failed build) the service decodes on the torch path and says so once in a warning, never a
failure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import platform
import sys
import threading
from pathlib import Path
from types import ModuleType

import torch

from inference.env import env_str

log = logging.getLogger("inference.cpu")

SOURCE = Path(__file__).with_name("decode.cpp")
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "build" / "cpu-ext"
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17"]
_lock = threading.Lock()
_loaded: dict[str, ModuleType | None] = {}


def _cpu_signature() -> str:
    """This CPU's model and instruction-set flags (what ``-march=native`` compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(("model name", "flags"))]
    return "|".join(wanted[:2])


def build_key() -> str:
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), " ".join(CFLAGS).encode(),
                 _cpu_signature().encode(), sys.version.encode()):  # fmt: skip
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def extension_dir() -> Path:
    """Where built extensions live (INFERENCE_EXTENSION_DIR, default build/cpu-ext in the checkout)."""
    return Path(env_str("INFERENCE_EXTENSION_DIR", str(DEFAULT_DIR))).expanduser()


def _module_name(key: str) -> str:
    return f"llm_hub_cpu_decode_{key}"


def _built_file(directory: Path, name: str) -> Path | None:
    found = sorted(directory.glob(f"{name}*.so"))
    return found[0] if found else None


def _import_built(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(build: bool = True) -> ModuleType | None:
    """The extension module, built first if it is not in the cache and ``build``; None (with one warning) when
    it cannot be had."""
    key = build_key()
    with _lock:
        if key in _loaded:
            return _loaded[key]
        directory = extension_dir() / key
        name = _module_name(key)
        module = None
        try:
            built = _built_file(directory, name)
            if built is not None:
                module = _import_built(built, name)
            elif build:
                module = _build(directory, name)
            else:
                log.warning("the fused CPU decode extension is not built (python -m inference.cpu.extension)")
        except Exception as exc:  # noqa: BLE001 - any build or import failure falls back to the torch path
            log.warning("the fused CPU decode extension is unavailable, decoding on the torch path: %s", exc)
            module = None
        _loaded[key] = module
        return module


def _build(directory: Path, name: str) -> ModuleType:
    from torch.utils import cpp_extension

    directory.mkdir(parents=True, exist_ok=True)
    log.info("building the fused CPU decode extension into %s (once per machine)...", directory)
    return cpp_extension.load(
        name=name,
        sources=[str(SOURCE)],
        extra_cflags=CFLAGS,
        extra_ldflags=["-fopenmp"],
        build_directory=str(directory),
        verbose=False,
    )


def main() -> int:
    """Build (or find) the extension; exit 0 either way, printing what the service will do."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    module = load()
    if module is None:
        print("fused CPU decode: not available here, the service decodes on the torch path (see the warning above)")
    else:
        print(f"fused CPU decode: ready ({extension_dir() / build_key()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
