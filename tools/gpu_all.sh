#!/usr/bin/env bash
# Every GPU check the open issues ask for, in one call on a GPU machine (PyTorch 2.11 with
# CUDA, no Rust), most important first, under one time budget: a device session has about 15
# minutes in all, machine start included, so the whole script stays inside BUDGET seconds
# (default 480; give the device call 540) and each part gets its own limit, cut to what is
# left of the budget. PARTS="teachers eval_rd4ad ..." runs only the parts named (a second
# call while the machine is still warm, for parts the budget cut):
#   1. proof (issue 2): `memad info`, a 2-epoch quickstart on CUDA and on the CPU;
#   cuda_extension (issue 10): memad-cuda's GPU tests (allocator statistics, CUDA graph
#      capture and replay against eager results, a failed capture);
#   2. steps_fp32 (issue 10): the paper shapes of RD4AD, MNAD, MDD-Net and PatchCore,
#      memad against the PyTorch reference, fp32, one round of 15 steps after 5 warm-up;
#   3. steps_bf16_cl (issues 5 and 10): the same with bf16 autocast, channels-last and
#      cuDNN's algorithm search on both sides, then memad's over the fp32 reference (the
#      1.5x target) in bf16_over_fp32_reference.md;
#   4. teachers (issue 5): frozen-teacher images/s, batch 16 at 256 px, NCHW / channels-last
#      / channels-last bf16 / fp16;
#   5. eval_rd4ad, eval_patchcore (issue 10): the 1,725-image `synthetic-mvtec-sized` test set
#      scored on CUDA end to end (timings.csv per run);
#   6. steps_graphs (issue 10): the step comparison of RD4AD, MDD-Net and PatchCore (fp32)
#      with the scoring replayed from a CUDA graph on both sides (`--cuda-graphs`);
#   7. eval_rd4ad_graphs, eval_patchcore_graphs (issue 10): part 5's checkpoints scored again
#      with `cuda_graphs = true` (`memad eval`), metrics to compare with part 5's.
# Then the tables of whatever step rows were written (interrupted parts included).
# Prepare here with tools/gpu_prepare.sh and carry target/gpu (what it builds); there run
#   bash tools/gpu_all.sh [--quick]        (--quick: fewer steps and fit images in the step
#                                           parts; proof and the evaluations run in full)
# Everything lands in gpu-results/ (ignored by git; memad's runs in runs/gpu/). The device
# tool sends back at most 8 files from $OUT, so with OUT set the whole of gpu-results/ is
# packed into $OUT/gpu_results.tar.gz after every part (a call stopped at its limit still
# returns the parts it finished). A part that finished (exit 0) leaves gpu-results/NAME.done
# (a step part under --quick: NAME.quick.done, which a full call does not count) and is
# skipped by a later
# call on the same warm machine (remove the file to run it again): a second call can name the
# parts the budget cut without repeating the others.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
BUDGET="${BUDGET:-480}"
QUICK=()
MODE=""  # in the step parts' .done markers: a smoke call's steps do not count for a real one
[ "${1:-}" = --quick ] && { QUICK=(--quick); MODE=".quick"; }
# In case the copy to the device machine dropped the executable bits.
chmod +x target/gpu/{memad,step_bench,backbone_throughput,memad_cuda_tests} \
    benches/reference/compare_steps.sh 2>/dev/null
RESULTS="${RESULTS:-$PWD/gpu-results}"  # (a test points it elsewhere)
RUNS="$PWD/runs/gpu"
mkdir -p "$RESULTS"
export MEMAD_WEIGHTS_DIR="${MEMAD_WEIGHTS_DIR:-$PWD/target/gpu/weights}"
export MEMAD_BIN="$PWD/target/gpu/memad" MEMAD_BENCH_BIN="$PWD/target/gpu/step_bench"
MEMAD_COMMIT="$(cat target/gpu/COMMIT 2>/dev/null || echo unknown)"
export MEMAD_COMMIT
torch_lib="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

pack() { # gpu-results/ as one file in $OUT (written aside, then renamed: never half a file)
    [ -n "${OUT:-}" ] || return 0
    tar -czf "$OUT/gpu_results.tar.gz.tmp" -C "$RESULTS" . \
        && mv "$OUT/gpu_results.tar.gz.tmp" "$OUT/gpu_results.tar.gz"
}

part() { # name seconds command... (the environment passes through)
    local name="$1" limit="$2"; shift 2
    if [ -n "${PARTS:-}" ] && [[ " $PARTS " != *" $name "* ]]; then
        return
    fi
    local marker="$RESULTS/$name.done"
    # --quick shortens the step parts only: their smoke runs do not count for a full call.
    [[ "$name" == steps_* ]] && marker="$RESULTS/$name$MODE.done"
    if [ -e "$marker" ]; then
        echo "=== $name skipped: finished by an earlier call ($marker)"
        return
    fi
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt 15 ]; then
        echo "=== $name skipped: the budget of ${BUDGET}s is spent"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (limit ${limit}s, $((SECONDS - START))s into the budget)"
    timeout "$limit" "$@" > "$RESULTS/$name.txt" 2>&1
    local status=$?
    echo "exit $status after part $name ($((SECONDS - START))s into the budget)"
    tail -25 "$RESULTS/$name.txt"
    [ "$status" = 0 ] && touch "$marker"
    pack
}

latest() { # the newest complete run folder under $1, with a trailing /, or nothing
    ls -d "$1"/*/ 2>/dev/null | grep -v '[.]partial/$' | tail -1
}

part proof 100 bash tools/gpu_proof.sh
part cuda_extension 40 target/gpu/memad_cuda_tests --ignored --test-threads 1

# Dense tensor-core peaks (TFLOP/s) for the achieved-TFLOP/s columns: TF32 for the fp32
# runs (cuDNN convolutions use TF32 by default in PyTorch and libtorch alike), BF16.
gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
case "$gpu" in
    *H100*PCIe*) TF32_PEAK=378; BF16_PEAK=756 ;;
    *H100*|*H200*) TF32_PEAK=494.7; BF16_PEAK=989.4 ;;
    *) TF32_PEAK=""; BF16_PEAK="" ;;
esac
# One round of 15 steps after 5 warm-up (--quick: 3 after 2).
STEPS=(--rounds 1 --steps 15 --warmup 5)
[ ${#QUICK[@]} = 1 ] && STEPS=(--rounds 1 --steps 3 --warmup 2)
PAPER=(--methods rd4ad,mnad,mddnet,patchcore "${STEPS[@]}")
FP32=(--out "$RESULTS/steps_cuda.csv")
FAST=(--precision bf16 --channels-last --cudnn-benchmark --out "$RESULTS/steps_cuda_fast.csv")
PEAK_TFLOPS="$TF32_PEAK" part steps_fp32 150 \
    bash tools/gpu_bench.sh "${PAPER[@]}" "${QUICK[@]}" "${FP32[@]}"
PEAK_TFLOPS="$BF16_PEAK" part steps_bf16_cl 150 \
    bash tools/gpu_bench.sh "${PAPER[@]}" "${QUICK[@]}" "${FAST[@]}"

# criterion's --quick: each teacher is timed until two runs (n and 2n batches) agree within
# 5% (at most 10 s). The bench's group fixes its warm-up and measurement times (2 s + 10 s),
# which --warm-up-time / --measurement-time cannot shorten: 12 executions would take 150 s.
MEMAD_BENCH_DEVICE=cuda part teachers 60 \
    target/gpu/backbone_throughput --bench --noplot --quick

for m in rd4ad patchcore; do
    part "eval_$m" 90 "$MEMAD_BIN" run "experiments/bench/eval_mvtec_sized_$m.toml" --runs "$RUNS"
    run="$(latest "$RUNS/eval_mvtec_sized_$m")"
    if [ -n "$run" ]; then
        cp "${run}timings.csv" "$RESULTS/eval_${m}_timings.csv"
        cp "${run}metrics.csv" "$RESULTS/eval_${m}_metrics.csv"
    fi
done
pack
GRAPHS=(--methods rd4ad,mddnet,patchcore "${STEPS[@]}" --cuda-graphs
        --out "$RESULTS/steps_cuda_graphs.csv")
PEAK_TFLOPS="$TF32_PEAK" part steps_graphs 120 bash tools/gpu_bench.sh "${GRAPHS[@]}" "${QUICK[@]}"

# Part 5's checkpoints scored again with cuda_graphs = true (`memad eval`: nothing trained or
# fitted again, so eager and graphed metrics come from the same model and must agree).
for m in rd4ad patchcore; do
    eager="$(latest "$RUNS/eval_mvtec_sized_$m")"
    part "eval_${m}_graphs" 60 "$MEMAD_BIN" --datasets "$PWD/datasets.toml" \
        eval "${eager:-no complete eval_$m run: run part eval_$m first}" --set cuda_graphs=true
    graphed="$(latest "${eager}evals/eval_mvtec_sized_${m}_cuda_graphs-true")"
    if [ -n "$eager" ] && [ -n "$graphed" ]; then
        cp "${graphed}timings.csv" "$RESULTS/eval_${m}_graphs_timings.csv"
        cp "${graphed}metrics.csv" "$RESULTS/eval_${m}_graphs_metrics.csv"
    fi
done

# The tables, from whatever rows the step parts wrote before their limits.
for table in "steps_cuda $TF32_PEAK" "steps_cuda_fast $BF16_PEAK" "steps_cuda_graphs $TF32_PEAK"; do
    read -r csv peak <<<"$table"
    [ -s "$RESULTS/$csv.csv" ] && PEAK_TFLOPS="$peak" PYTHON=python3 benches/reference/compare_steps.sh \
        --device cuda --table-only --out "$RESULTS/$csv.csv" | tee "$RESULTS/$csv.md"
done
python3 - "$RESULTS/steps_cuda.csv" "$RESULTS/steps_cuda_fast.csv" <<'PY' | tee "$RESULTS/bf16_over_fp32_reference.md"
import csv, statistics, sys
def load(path):
    try:
        rows = list(csv.DictReader(open(path)))
    except OSError:
        return {}
    out = {}
    for r in rows:
        method = r["method"].split("_bf16")[0]
        out.setdefault((method, r["phase"], r["implementation"]), []).append(float(r["images_per_s"]))
    return {k: statistics.median(v) for k, v in out.items()}
fp32, fast = load(sys.argv[1]), load(sys.argv[2])
print("| method | phase | reference fp32 images/s | memad bf16 + channels-last + cuDNN search images/s | ratio (target >= 1.5) |")
print("|---|---|---|---|---|")
for (method, phase, impl), ref in fp32.items():
    mine = fast.get((method, phase, "memad"))
    if impl == "pytorch" and mine:
        print(f"| {method} | {phase} | {ref:.1f} | {mine:.1f} | {mine / ref:.2f} |")
PY
pack
echo "commit $MEMAD_COMMIT; total $((SECONDS - START))s of the ${BUDGET}s budget"
