#!/usr/bin/env bash
# Every GPU check the open issues ask for, in one call on a GPU machine (PyTorch 2.11 with
# CUDA, no Rust), each part under its own time limit so one slow part cannot take the rest:
#   1. the CUDA proof (issue 2): `memad info`, a 2-epoch quickstart on CUDA and on the CPU;
#   2. the evaluation benchmark (issue 10): RD4AD and PatchCore score the 1,725-image
#      `synthetic-mvtec-sized` test set on CUDA (timings.csv per run);
#   3. the step benchmarks against the PyTorch reference (issues 5 and 10): fp32, then bf16
#      autocast + channels-last, and memad bf16 + channels-last over the fp32 reference.
# Prepare here with tools/gpu_prepare.sh; there run
#   bash tools/gpu_all.sh [--quick]
# Everything lands in $OUT (the device tool's output folder) or gpu-results/.
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=()
[ "${1:-}" = --quick ] && QUICK=(--quick)
RESULTS="${OUT:-gpu-results}"
mkdir -p "$RESULTS"
export MEMAD_WEIGHTS_DIR="${MEMAD_WEIGHTS_DIR:-$PWD/target/gpu-weights}"
torch_lib="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin=target/release/memad

part() { # name seconds command... (the environment passes through)
    local name="$1" limit="$2"; shift 2
    echo "=== $name (limit ${limit}s, $(date -u +%H:%M:%S))"
    timeout "$limit" "$@" > "$RESULTS/$name.txt" 2>&1
    echo "exit $? after part $name"; tail -25 "$RESULTS/$name.txt"
}

part proof 150 bash tools/gpu_proof.sh
for m in rd4ad patchcore; do
    part "eval_$m" 120 "$bin" run "experiments/bench/eval_mvtec_sized_$m.toml" --runs /tmp/gpu-eval-runs
    cp /tmp/gpu-eval-runs/eval_mvtec_sized_"$m"/*/timings.csv "$RESULTS/eval_${m}_timings.csv" 2>/dev/null
done
# Dense tensor-core peaks (TFLOP/s) for the achieved-TFLOP/s columns: TF32 for the fp32
# runs (cuDNN convolutions use TF32 by default in PyTorch and libtorch alike), BF16.
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
case "$gpu" in
    *H100*PCIe*) TF32_PEAK=378; BF16_PEAK=756 ;;
    *H100*|*H200*) TF32_PEAK=494.7; BF16_PEAK=989.4 ;;
    *) TF32_PEAK=""; BF16_PEAK="" ;;
esac
PEAK_TFLOPS="$TF32_PEAK" part steps_fp32 420 bash tools/gpu_bench.sh "${QUICK[@]}" \
    --out "$RESULTS/steps_cuda.csv"
PEAK_TFLOPS="$BF16_PEAK" part steps_bf16_cl 420 bash tools/gpu_bench.sh "${QUICK[@]}" \
    --precision bf16 --channels-last --out "$RESULTS/steps_cuda_bf16_cl.csv"
python3 - "$RESULTS/steps_cuda.csv" "$RESULTS/steps_cuda_bf16_cl.csv" <<'PY' | tee "$RESULTS/bf16_over_fp32_reference.md"
import csv, statistics, sys
def load(path):
    try:
        rows = list(csv.DictReader(open(path)))
    except OSError:
        return {}
    out = {}
    for r in rows:
        key = (r["method"].replace("_bf16", "").replace("_cl", ""), r["phase"], r["implementation"])
        out.setdefault(key, []).append(float(r["images_per_s"]))
    return {k: statistics.median(v) for k, v in out.items()}
fp32, bf16 = load(sys.argv[1]), load(sys.argv[2])
print("| method | phase | reference fp32 images/s | memad bf16 + channels-last images/s | ratio (target >= 1.5) |")
print("|---|---|---|---|---|")
for (method, phase, impl), ref in fp32.items():
    fast = bf16.get((method, phase, "memad"))
    if impl == "pytorch" and fast:
        print(f"| {method} | {phase} | {ref:.1f} | {fast:.1f} | {fast / ref:.2f} |")
PY
