#!/usr/bin/env bash
# Run ON the GPU machine (device tool), from the repository root, with .whl carried (fetch_wheels.sh made it):
#   bash benchmarks/gpu/run_issue5.sh [tests|engine_tests|engine|kernels|offline|sanitize|tune|invariance|engine_more|
#                                      models|moe|tp|all ...]
# Installs the carried wheels beside the image's torch / triton, then runs issue 28's GPU checks, section by
# section, each under its own time limit (LIMIT_<section>=seconds overrides it) so that one hung or slow part cannot
# eat the lease. Each section's log goes to /tmp/gpu-logs; after every section they are packed into $OUT/logs.tgz
# and $OUT/summary.txt (one line per section: exit status, seconds), since only 8 files come back from $OUT.
# Rehearse it on the CPU first: benchmarks/gpu/dry_run.sh runs this very script with DRY=1 (interpreted kernels,
# tiny shapes) in the GPU image's Python and package versions.
#
# A lease is ~15 minutes of device time, the machine's start (1-2 min) included, at most 10 minutes a call; the
# sections' limits (below) in the issue's order of need:
#   call 1: COMMIT=<sha> bash benchmarks/gpu/run_issue5.sh tests engine_tests engine      (at most 560 s)
#   call 2: COMMIT=<sha> bash benchmarks/gpu/run_issue5.sh kernels offline                (at most 350 s)
#   later lendings: sanitize tune invariance engine_more models moe (tp on a machine of 2+ GPUs); `sanitize` at
#   once if `tests` reports "an illegal memory access" (SANITIZE_K=<the file's name> narrows it)
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
LOGS=${LOGS:-/tmp/gpu-logs}
mkdir -p "$OUT" "$LOGS"
if [[ ${DRY:-0} == 1 ]]; then  # the rehearsal on a CPU
  export INFERENCE_TEST_DEVICE=cpu TRITON_INTERPRET=1
  workers=2
  scale=4  # the interpreter on 2 cores: the limits below are the GPU's
else
  export INFERENCE_TEST_DEVICE=cuda
  unset TRITON_INTERPRET
  workers=8  # pytest-xdist: Triton compiles the kernels' many specializations in parallel (16 cores there)
  scale=1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
# the real GGUF blocks the kernel tests read (the packaged models do not travel): tests/support/gguf_blocks.py
export PYTHONPATH=/tmp/site:$PWD INFERENCE_TEST_GGUF_BLOCKS=$PWD/.whl/gguf_blocks.npz
# the tree travels without .git: the caller names the commit (COMMIT=$(git rev-parse --short HEAD) in the command)
export COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
{
  [[ ${DRY:-0} == 1 ]] && echo "DRY RUN on the CPU" || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, torch, triton, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__,
'triton', triton.__version__, 'transformers', transformers.__version__)"
  echo "commit $COMMIT"
  date -u +%FT%TZ
} 2>&1 | tee "$LOGS/summary.txt"
cp "$LOGS/summary.txt" "$OUT/summary.txt"

section() {  # NAME DEFAULT_SECONDS COMMAND...: run it under its limit, log it, pack the logs so far into $OUT
  local name=$1 limit_var="LIMIT_$1" start=$SECONDS rc
  local limit=${!limit_var:-$(( $2 * scale ))}
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  tail -n 12 "$LOGS/$name.log"
  echo "$name: rc=$rc$([[ $rc == 124 || $rc == 137 ]] && echo ' (time limit)') in $((SECONDS - start)) s" \
    | tee -a "$LOGS/summary.txt"
  cp "$LOGS/summary.txt" "$OUT/summary.txt"
  tar czf "$OUT/logs.tgz" -C "$LOGS" .
}

# pytest without the project's Django conftest (tests/conftest.py): each run's --confcutdir keeps to its folder
pytest_=(python3 -m pytest -q -p no:cacheprovider -c /dev/null --rootdir . -W ignore::pytest.PytestUnknownMarkWarning)

# small shapes for the rehearsal, the shapes on the GPU
if [[ ${DRY:-0} == 1 ]]; then
  engine_args=(--device cpu --dtype float32 --rounds 1 --decode-tokens 8 --batch 1 4)
  q4_args=(--batch 1 --decode-tokens 2)  # Q4_K blocks dequantize in the interpreter on the CPU: slow
  shape_8b=tiny
  packaged_shapes=(tiny)
  kernel_args=(--device cpu --smoke --no-compile --rep 5)
  tune_args=(--device cpu --smoke --rep 5 --jobs 2)  # two processes: checks the precompiling path
  invariance_args=(--device cpu --shape tiny --dtype float32 --prompts 4 --tokens 8)
  offline_args=(--device cpu --shape tiny --dtype float32 --prompts 16 --scale 0.05)
  moe_args=(--rounds 1)
  moe_shapes=()
else
  engine_args=(--dtype bfloat16 --batch 1 8 64 256)
  q4_args=()
  shape_8b=llama-8b
  packaged_shapes=(smollm2 gemma3-270m)  # their files (94 MB, 240 MB) are over what a call carries
  kernel_args=(--rep 100)  # ms of timed runs per figure; torch.compile's ~24 baselines take most of the section
  tune_args=(--rep 25 --jobs 12)  # 473 candidates, compiled by 12 processes before the timing
  invariance_args=(--shape llama-1b --dtype bfloat16)
  offline_args=(--shape llama-8b --dtype bfloat16 --prompts 1000)
  moe_args=(--rounds 5)
  moe_shapes=(mixtral-8x7b deepseek-v2-lite)
fi

targets=("$@")
[[ ${#targets[@]} == 0 || " ${targets[*]} " == *" all "* ]] \
  && targets=(tests engine_tests engine kernels offline sanitize tune invariance engine_more models moe tp)
for what in "${targets[@]}"; do
  case $what in
    tests)  # deliverable 1: every kernel against its reference at odd shapes, compiled
      # test_cuda_compile (sm_90 cubins through a stand-in driver) only in the rehearsal: there it checks that the
      # kernels compile under the image's Triton; on the GPU every test compiles them for real
      # test_interpreter_checks checks the interpreter's own checks (tests/support/interpreter_checks.py): CPU only
      cpu_only=(--ignore=tests/kernels/test_cuda_compile.py --ignore=tests/kernels/test_interpreter_checks.py)
      section tests 200 "${pytest_[@]}" -n "$workers" --confcutdir tests/kernels tests/kernels \
        $([[ ${DRY:-0} == 1 ]] || echo "${cpu_only[@]}") ;;
    sanitize)  # deliverable 1: the kernel tests under compute-sanitizer's memcheck (out-of-bounds and misaligned
      # accesses, the GPU's counterpart of the interpreter's check). Without torch's caching allocator every tensor
      # is its own allocation, so a read past a tensor's end is caught, not served from the pool's next block.
      # SANITIZE_K narrows it (a pytest -k expression), e.g. to the file a failed `tests` run named.
      if [[ ${DRY:-0} == 1 ]]; then
        sanitize_=()  # the rehearsal runs the same selection without the sanitizer (there is no GPU to check)
      else
        sanitize_=("$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer | head -1)" \
          --tool memcheck --leak-check no --error-exitcode 99 --target-processes all --print-limit 20)
      fi
      PYTORCH_NO_CUDA_MEMORY_CACHING=1 section sanitize 200 "${sanitize_[@]}" "${pytest_[@]}" -n "$workers" \
        --confcutdir tests/kernels tests/kernels --ignore=tests/kernels/test_cuda_compile.py \
        --ignore=tests/kernels/test_interpreter_checks.py ${SANITIZE_K:+-k "$SANITIZE_K"} ;;
    engine_tests)  # deliverables 1-2: the engine on the device (CUDA graphs replayed, the KV budget from free memory)
      # alone, not under xdist: the KV budget test reads the card's free memory
      section engine_tests 120 "${pytest_[@]}" --confcutdir tests/inference tests/inference/test_engine_device.py ;;
    models)  # the model families' tests that honour INFERENCE_TEST_DEVICE (Qwen3, MoE, DeepSeek-V2, rope, LLaVA)
      section models 180 "${pytest_[@]}" -n "$workers" --confcutdir tests/inference tests/inference/test_qwen3.py \
        tests/inference/test_moe.py tests/inference/test_deepseek_v2.py tests/inference/test_rope_scaling.py \
        tests/inference/test_llava.py ;;
    kernels)  # deliverable 3: each kernel against torch eager and torch.compile, share of the peak
      section kernels 200 python3 benchmarks/bench_kernels.py "${kernel_args[@]}" ;;
    tune)  # deliverable 3's tuning: each kernel's candidate tiles, warps, stages and splits timed on Llama-8B's shapes
      section tune 240 python3 benchmarks/bench_tune.py "${tune_args[@]}" ;;
    invariance)  # whether an answer depends on the batch on CUDA (kernels and torch layers): alone vs together
      section invariance 120 python3 benchmarks/bench_invariance.py "${invariance_args[@]}" ;;
    engine)  # deliverable 4: decode tok/s at 1-256 and TTFT (512) against transformers' static-cache generate
      section engine_8b_bf16 240 python3 benchmarks/bench_engine.py "${engine_args[@]}" --shape "$shape_8b" --hf ;;
    engine_more)  # deliverable 4's other rows: Q4_K blocks, and the packaged models' shapes as random weights
      section engine_8b_q4_k 90 python3 benchmarks/bench_engine.py "${engine_args[@]}" --shape "$shape_8b" \
        --weights q4_k "${q4_args[@]}"
      for shape in "${packaged_shapes[@]}"; do
        section "engine_$shape" 60 python3 benchmarks/bench_engine.py "${engine_args[@]}" --shape "$shape" --hf
      done ;;
    offline)  # deliverable 5: 1,000 ShareGPT-like prompts at once, Llama-3-8B bf16
      section offline 150 python3 benchmarks/bench_offline.py "${offline_args[@]}" ;;
    moe)  # issue 23: the experts' kernel and the MoE shapes (active bytes)
      section moe 120 python3 benchmarks/bench_moe.py "${moe_args[@]}"
      for shape in "${moe_shapes[@]}"; do
        section "engine_$shape" 150 python3 benchmarks/bench_engine.py --shape "$shape" --batch 1 8 64 --hf
      done
      if [[ ${DRY:-0} != 1 ]]; then  # the experts on Q4_K blocks (fused_moe_gguf): the bytes a Q4_K_M file reads
        section engine_mixtral_q4_k 120 python3 benchmarks/bench_engine.py --shape mixtral-8x7b --weights q4_k \
          --batch 1 8 64
      fi ;;
    tp)  # issue 26: tensor parallelism over NCCL, when the machine has 2+ GPUs
      if [[ ${DRY:-0} != 1 ]] && (( $(nvidia-smi -L | wc -l) >= 2 )); then
        section tp 180 python3 benchmarks/bench_tp.py --size 2
      else
        echo "tp: needs 2 or more GPUs" | tee -a "$LOGS/summary.txt"
      fi ;;
    *) echo "unknown target $what" >&2; exit 2 ;;
  esac
done
cat "$LOGS/summary.txt"
