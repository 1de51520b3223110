#!/usr/bin/env bash
# Run ON the GPU machine (device tool), from the repository root, with .whl carried (fetch_wheels.sh made it):
#   bash benchmarks/gpu/run_issue5.sh [tests|models|kernels|engine|offline|moe|tp|all]
# Installs the carried wheels beside the image's torch / triton, then runs issue 5's GPU checks, each
# logged to $OUT (which comes back). Django is not there, so pytest runs without the project's conftest.
set -uo pipefail
export PYTHONUNBUFFERED=1 INFERENCE_TEST_DEVICE=cuda
unset TRITON_INTERPRET
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
git rev-parse HEAD 2>/dev/null | tee -a "$OUT/gpu.txt"
what=${1:-all}
if [[ $what == tests || $what == all ]]; then
  python3 -m pytest -q -p no:cacheprovider --noconftest -c /dev/null --rootdir . \
    tests/kernels tests/inference/test_engine_device.py 2>&1 | tee "$OUT/tests.log" | tail -25
fi
if [[ $what == models || $what == all ]]; then  # issue 28: the model families' tests on the device (kernels compiled)
  python3 -m pytest -q -p no:cacheprovider --noconftest -c /dev/null --rootdir . \
    tests/inference/test_qwen3.py tests/inference/test_moe.py tests/inference/test_deepseek_v2.py \
    tests/inference/test_rope_scaling.py tests/inference/test_llava.py 2>&1 | tee "$OUT/tests_models.log" | tail -25
fi
if [[ $what == kernels || $what == all ]]; then
  python3 benchmarks/bench_kernels.py 2>&1 | tee "$OUT/bench_kernels.log"
fi
if [[ $what == engine || $what == all ]]; then
  for weights in dense q4_k; do
    python3 benchmarks/bench_engine.py --shape llama-8b --weights $weights --batch 1 8 64 256 \
      $([[ $weights == dense ]] && echo --hf) 2>&1 | tee "$OUT/bench_engine_$weights.log"
  done
fi
if [[ $what == offline || $what == all ]]; then  # issue 28: 1,000 ShareGPT-like prompts at once, Llama-3-8B bf16
  python3 benchmarks/bench_offline.py --shape llama-8b --dtype bfloat16 --prompts 1000 2>&1 | tee "$OUT/bench_offline.log"
fi
if [[ $what == moe || $what == all ]]; then  # issue 23: the experts' kernel and the MoE shapes (active bytes)
  python3 benchmarks/bench_moe.py --rounds 5 2>&1 | tee "$OUT/bench_moe.log"
  for shape in mixtral-8x7b deepseek-v2-lite; do
    python3 benchmarks/bench_engine.py --shape $shape --batch 1 8 64 --hf 2>&1 | tee "$OUT/bench_engine_$shape.log"
  done
  # the experts on Q4_K blocks (fused_moe_gguf): the bytes a Q4_K_M file reads
  python3 benchmarks/bench_engine.py --shape mixtral-8x7b --weights q4_k --batch 1 8 64 2>&1 \
    | tee "$OUT/bench_engine_mixtral-8x7b_q4_k.log"
fi
if [[ $what == tp || $what == all ]]; then  # issue 26: tensor parallelism over NCCL, when the machine has 2+ GPUs
  if (( $(nvidia-smi -L | wc -l) >= 2 )); then
    python3 benchmarks/bench_tp.py --size 2 2>&1 | tee "$OUT/bench_tp.log"
  else
    echo "tensor parallelism: one GPU here; needs 2 or more" | tee "$OUT/bench_tp.log"
  fi
fi
