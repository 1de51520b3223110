"""Time the GGUF header parse (ours vs gguf-py's GGUFReader) and a fresh conversion of each packaged model.

    .venv/bin/python benchmarks/bench_gguf_parse.py [--reader] [--convert]

``--reader`` also times ``gguf.GGUFReader`` (slow on Gemma's 262k vocabulary); ``--convert`` converts both
models into a throwaway directory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference import packaged  # noqa: E402
from inference.loader.convert import ensure_converted  # noqa: E402
from inference.loader.gguf import GGUFFile  # noqa: E402


def _time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", action="store_true", help="also time gguf.GGUFReader")
    parser.add_argument("--convert", action="store_true", help="also time a fresh conversion")
    args = parser.parse_args()
    files = {"SmolLM2 Q4_1": packaged.smollm2_gguf(), "Gemma 3 Q4_K_M": packaged.gemma3_gguf()}
    for label, path in files.items():
        ours = _time(lambda path=path: GGUFFile(path), repeat=5)
        line = f"{label:15s} ours {ours * 1000:7.1f} ms"
        if args.reader:
            import gguf

            line += f"   GGUFReader {_time(lambda path=path: gguf.GGUFReader(path), repeat=1):6.2f} s"
        if args.convert:
            with tempfile.TemporaryDirectory() as tmp:
                line += f"   convert {_time(lambda path=path, tmp=tmp: ensure_converted(path, tmp, False), 1):5.1f} s"
        print(line)


if __name__ == "__main__":
    main()
