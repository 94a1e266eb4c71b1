#!/usr/bin/env bash
# memad against the plain-PyTorch reference: training-step and scoring throughput of RD4AD,
# MNAD and MDD-Net, fit (features + coreset) and scoring throughput of PatchCore, run
# alternately (memad, reference, memad, reference, ...) into one CSV, then a
# table of the ratio memad / reference of images/s (medians over the rounds, and the ratio
# of the best rounds, which other jobs on the machine disturb least).
#
#   benches/reference/compare_steps.sh [--device cpu|cuda] [--quick] [--rounds N]
#                                      [--threads T] [--out FILE] [--methods LIST]
#                                      [--precision fp32|bf16] [--channels-last]
#                                      [--cudnn-benchmark] [--cuda-graphs]
#                                      [--steps N] [--warmup W]
#                                      [--table-only]
#
# CPU shapes: RD4AD batch 2 at 64 px (paper model) and batch 8 at 128 px (quickstart model),
# MNAD batch 2 at 64 px, MDD-Net batch 2 at 64 px (paper model) and batch 8 at 128 px
# (quickstart model, 3 classes), PatchCore WRN-50-2 batch 2 at
# 64 px fitted on 16 images and EfficientNet-Lite0 batch 8 at 128 px fitted on 64; 2 threads
# (--threads T: T threads, written to steps_cpu_<T>threads.csv unless T = 2). CUDA shapes:
# the papers' (RD4AD, MDD-Net batch 16 at 256 px, 15 classes; MNAD batch 4 at 256 px;
# PatchCore WRN-50-2 layer2+3 batch 16 at 256 px, 10% coreset of 200 fitted images) and the
# quickstart's (EfficientNet-Lite0, batch 8 at 128 px; PatchCore fitted on 200 images).
# --quick: fewer steps and fit images (a smoke test for CI, not figures), written to
# steps_<device>_quick.csv. --precision bf16 / --channels-last: both sides run the forward
# passes under bf16 autocast / with channels-last weights (methods labelled `_bf16` / `_cl`,
# results in steps_<device>[_bf16][_cl].csv). --cudnn-benchmark: both sides let cuDNN time
# its convolution algorithms on the warm-up steps (`_cudnn_benchmark`, CUDA only).
# --cuda-graphs: both sides replay their scoring from a CUDA graph (memad's GraphedScorer,
# the reference's torch.cuda.graph; `_cuda_graphs`, CUDA only; training stays eager).
# --rounds 1 (a budget run): the best-round ratio is then the ratio. --steps N / --warmup W:
# the timed and warm-up steps of every configuration (default 10/3 on CPU, 30/5 on CUDA;
# per-configuration settings of the CPU shapes still win). --methods: a comma-separated
# subset of the CSV method names (rd4ad, mnad, mddnet, patchcore, rd4ad_quickstart,
# mddnet_quickstart, patchcore_quickstart). Results:
# benches/reference/results/steps_<device>.csv. --table-only: run nothing, print the table
# of the CSV the same arguments name (rows of an interrupted run included).
#
# Work: the reference counts GFLOP per image of a scoring call and a training step
# (torch.utils.flop_counter, round 1, <out>_flops.csv); the table gives both sides' achieved
# TFLOP/s, and their share of PEAK_TFLOPS when that is set (tools/gpu_all.sh sets it).
#
# Heap: memad keeps freed CPU tensors in the heap (memad_core::device::tune_host_allocator:
# glibc mmap threshold 64 MiB, trim threshold 256 MiB); the reference runs with the same
# settings through GLIBC_TUNABLES, so the ratios compare the implementations, not malloc
# (set GLIBC_TUNABLES yourself to run both sides with other settings).
#
# Environment: MEMAD_BENCH_BIN (a prebuilt step_bench; default target/release/step_bench,
# built with cargo when missing and cargo exists), PYTHON (a python with torch; default the
# project venv's), MEMAD_COMMIT (the commit written in the rows; default the one step_bench
# was built from, else "unknown"). On a machine without Rust (a GPU box), build here with
# tools/gpu_prepare.sh, carry target/gpu, and there run tools/gpu_bench.sh (it sets
# LD_LIBRARY_PATH to that machine's torch, MEMAD_BENCH_BIN to target/gpu/step_bench and
# PYTHON to python3, and passes its arguments on).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DEVICE=cpu
QUICK=0
ROUNDS=2
OUT=""
CPU_THREADS=2
METHODS=""
PRECISION=fp32
CHANNELS_LAST=0
CUDNN_BENCHMARK=0
CUDA_GRAPHS=0
STEPS_ARG=""
WARMUP_ARG=""
TABLE_ONLY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --threads) CPU_THREADS="$2"; shift 2 ;;
        --methods) METHODS="$2"; shift 2 ;;
        --precision) PRECISION="$2"; shift 2 ;;
        --channels-last) CHANNELS_LAST=1; shift ;;
        --cudnn-benchmark) CUDNN_BENCHMARK=1; shift ;;
        --cuda-graphs) CUDA_GRAPHS=1; shift ;;
        --steps) STEPS_ARG="$2"; shift 2 ;;
        --warmup) WARMUP_ARG="$2"; shift 2 ;;
        --table-only) TABLE_ONLY=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$DEVICE" in cpu|cuda) ;; *) echo "--device must be cpu or cuda" >&2; exit 2 ;; esac
case "$PRECISION" in fp32|bf16) ;; *) echo "--precision must be fp32 or bf16" >&2; exit 2 ;; esac
if ! [[ "$ROUNDS" =~ ^[0-9]+$ ]] || [ "$ROUNDS" -lt 1 ]; then
    echo "--rounds must be a whole number of at least 1, got '$ROUNDS'" >&2; exit 2
fi

BIN="${MEMAD_BENCH_BIN:-$ROOT/target/release/step_bench}"
PYTHON="${PYTHON:-$HOME/.cache/memad/torch-2.11.0/venv/bin/python}"
if [ "$TABLE_ONLY" = 0 ] && [ ! -x "$BIN" ]; then
    if [ -z "${MEMAD_BENCH_BIN:-}" ] && command -v cargo >/dev/null; then
        (cd "$ROOT" && cargo build --release -p memad-benches --bin step_bench)
    else
        echo "step_bench not found at $BIN: set MEMAD_BENCH_BIN to a prebuilt binary" >&2
        exit 1
    fi
fi
"$PYTHON" -c 'import torch' || { echo "PYTHON=$PYTHON has no torch" >&2; exit 1; }
REF_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456}"
# The commit step_bench was built from (`--version`), so both sides' rows name memad's code;
# a binary that cannot start (libtorch not on LD_LIBRARY_PATH) says why here.
COMMIT="${MEMAD_COMMIT:-}"
if [ "$TABLE_ONLY" = 0 ] && [ -z "$COMMIT" ]; then
    VERSION_ERR="$(mktemp)"
    if ! VERSION="$("$BIN" --version 2>"$VERSION_ERR")"; then
        echo "$BIN does not start: $(cat "$VERSION_ERR")" >&2
        rm -f "$VERSION_ERR"
        exit 1
    fi
    rm -f "$VERSION_ERR"
    COMMIT="$(awk 'NR == 1 {print $2}' <<<"$VERSION")"
fi
COMMIT="${COMMIT:-unknown}"
DATE="$(date -u +%Y-%m-%d)"

# "label method batch size [extra step_bench arguments]", per device; steps and warm-up
# (extra arguments come last and override them).
if [ "$DEVICE" = cpu ]; then
    FIT=16; FIT_QS=64
    [ "$QUICK" = 1 ] && { FIT=4; FIT_QS=8; }
    CONFIGS=("rd4ad rd4ad 2 64" "mnad mnad 2 64"
             "mddnet mddnet 2 64 --steps 3 --warmup 1"
             "rd4ad_quickstart rd4ad 8 128 --shape quickstart --steps 6 --warmup 2"
             "mddnet_quickstart mddnet 8 128 --shape quickstart --steps 6 --warmup 2"
             "patchcore patchcore 2 64 --fit-images $FIT --steps 4 --warmup 1"
             "patchcore_quickstart patchcore 8 128 --shape quickstart --fit-images $FIT_QS")
    THREADS=(--threads "$CPU_THREADS")
    STEPS=10; WARMUP=3
    if [ "$QUICK" = 1 ]; then
        STEPS=2; WARMUP=1
        CONFIGS=("rd4ad rd4ad 2 64" "mnad mnad 2 64" "mddnet mddnet 1 64"
                 "rd4ad_quickstart rd4ad 2 64 --shape quickstart"
                 "mddnet_quickstart mddnet 2 64 --shape quickstart"
                 "patchcore patchcore 2 64 --fit-images $FIT"
                 "patchcore_quickstart patchcore 2 64 --shape quickstart --fit-images $FIT_QS")
    fi
else
    FIT=200
    [ "$QUICK" = 1 ] && FIT=32
    CONFIGS=("rd4ad rd4ad 16 256" "mnad mnad 4 256" "mddnet mddnet 16 256"
             "rd4ad_quickstart rd4ad 8 128 --shape quickstart"
             "mddnet_quickstart mddnet 8 128 --shape quickstart"
             "patchcore patchcore 16 256 --fit-images $FIT"
             "patchcore_quickstart patchcore 8 128 --shape quickstart --fit-images $FIT")
    THREADS=()
    STEPS=30; WARMUP=5
    [ "$QUICK" = 1 ] && { STEPS=3; WARMUP=2; }
fi
STEPS="${STEPS_ARG:-$STEPS}"
WARMUP="${WARMUP_ARG:-$WARMUP}"
SUFFIX=""
[ "$DEVICE" = cpu ] && [ "$CPU_THREADS" != 2 ] && SUFFIX="_${CPU_THREADS}threads"
[ "$PRECISION" = bf16 ] && SUFFIX="${SUFFIX}_bf16"
[ "$CHANNELS_LAST" = 1 ] && SUFFIX="${SUFFIX}_cl"
[ "$CUDNN_BENCHMARK" = 1 ] && SUFFIX="${SUFFIX}_cudnn_benchmark"
[ "$CUDA_GRAPHS" = 1 ] && SUFFIX="${SUFFIX}_cuda_graphs"
[ "$QUICK" = 1 ] && SUFFIX="${SUFFIX}_quick"
OUT="${OUT:-$HERE/results/steps_${DEVICE}${SUFFIX}.csv}"
mkdir -p "$(dirname "$OUT")"
FLOPS="${OUT%.csv}_flops.csv"
# The configurations' labels, space-separated with a space at both ends.
LABELS=" $(for config in "${CONFIGS[@]}"; do printf '%s ' "${config%% *}"; done)"
# MNAD's test-time update reads each frame's score on the host, which a capture forbids.
if [ "$CUDA_GRAPHS" = 1 ]; then
    if [ -z "$METHODS" ]; then
        METHODS="$(tr ' ' ',' <<<"${LABELS/ mnad / }")"
    elif [[ ",$METHODS," == *",mnad,"* ]]; then
        echo "--cuda-graphs: mnad's scoring cannot be captured (its test-time memory update reads scores on the host)" >&2
        exit 2
    fi
fi
# A label in --methods that no configuration has would leave a run that times nothing.
for label in ${METHODS//,/ }; do
    if [[ "$LABELS" != *" $label "* ]]; then
        echo "--methods: no configuration '$label' (choices:$LABELS)" >&2
        exit 2
    fi
done
if [ "$TABLE_ONLY" = 1 ]; then CONFIGS=(); else rm -f "$OUT" "$FLOPS"; fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

if [ "$TABLE_ONLY" = 0 ]; then
    echo "memad: $BIN"
    echo "reference: $PYTHON $HERE/step_reference.py ($("$PYTHON" -c 'import torch;print(torch.__version__)'))"
    echo "device $DEVICE, $ROUNDS rounds, $STEPS steps after $WARMUP warm-up, commit $COMMIT, load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
for config in "${CONFIGS[@]}"; do
    read -r LABEL METHOD BATCH SIZE EXTRA <<<"$config"
    if [ -n "$METHODS" ] && [[ ",$METHODS," != *",$LABEL,"* ]]; then
        continue
    fi
    # shellcheck disable=SC2206 # the extra arguments split on spaces
    EXTRA_ARGS=($EXTRA --precision $PRECISION)
    [ "$CHANNELS_LAST" = 1 ] && EXTRA_ARGS+=(--channels-last)
    [ "$CUDNN_BENCHMARK" = 1 ] && EXTRA_ARGS+=(--cudnn-benchmark)
    [ "$CUDA_GRAPHS" = 1 ] && EXTRA_ARGS+=(--cuda-graphs)
    ARGS=(--method "$METHOD" --device "$DEVICE" --batch "$BATCH" --size "$SIZE"
          --steps "$STEPS" --warmup "$WARMUP" "${THREADS[@]}" --out "$OUT"
          --commit "$COMMIT" --date "$DATE" "${EXTRA_ARGS[@]}")
    for round in $(seq 1 "$ROUNDS"); do
        echo "== $LABEL batch $BATCH, $SIZE px, round $round/$ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
        "$BIN" "${ARGS[@]}" | tee -a "$LOG" | sed "s/^trainable/memad $LABEL: trainable/"
        COUNT=()  # the work per image, counted once (after round 1's timed phases)
        [ "$round" = 1 ] && COUNT=(--flops-out "$FLOPS")
        GLIBC_TUNABLES="$REF_TUNABLES" "$PYTHON" "$HERE/step_reference.py" "${ARGS[@]}" "${COUNT[@]}" | tee -a "$LOG" \
            | sed "s/^trainable/pytorch $LABEL: trainable/"
    done
    # Both sides must build the same network: one distinct trainable count per method.
    COUNTS=$({ grep -h '^trainable parameters' "$LOG" || true; } | sort -u | wc -l)
    if [ "$COUNTS" = 0 ]; then
        echo "neither memad nor the reference printed its trainable parameters for $LABEL" >&2
        exit 1
    elif [ "$COUNTS" != 1 ]; then
        echo "parameter counts differ between memad and the reference for $LABEL:" >&2
        grep -h '^trainable parameters' "$LOG" | sort | uniq -c >&2
        exit 1
    fi
    : >"$LOG"
done

echo
echo "results: $OUT (work per image: $FLOPS)"
PEAK_TFLOPS="${PEAK_TFLOPS:-}" "$PYTHON" - "$OUT" "$FLOPS" <<'EOF'
import csv, os, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
gflop = {}
if os.path.exists(sys.argv[2]):
    gflop = {(r["method"], r["phase"]): float(r["gflop_per_image"])
             for r in csv.DictReader(open(sys.argv[2]))}
peak = float(os.environ["PEAK_TFLOPS"]) if os.environ.get("PEAK_TFLOPS") else None
def tflops(g, mi, pi):
    """GFLOP per image and the achieved TFLOP/s of both sides (and % of PEAK_TFLOPS)."""
    if g is None:
        return "- | - | - |"
    cells = []
    for ips in (mi, pi):
        t = g * ips / 1000
        cells.append(f"{t:.3g}" + (f" ({100 * t / peak:.1f}% of {peak:g})" if peak else ""))
    return f"{g:.3g} | {cells[0]} | {cells[1]} |"
groups = {}
for r in rows:
    groups.setdefault((r["method"], r["phase"], r["implementation"]), []).append(r)
print("| method | phase | device | batch x size | memad images/s | reference images/s | ratio memad/reference | memad best | reference best | best-round ratio | memad peak MiB | reference peak MiB | GFLOP/image | memad TFLOP/s | reference TFLOP/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for method in dict.fromkeys(r["method"] for r in rows):
    for phase in ("train", "fit", "coreset", "score"):
        m, p = groups.get((method, phase, "memad")), groups.get((method, phase, "pytorch"))
        if not m or not p:
            continue
        med = lambda g, k: statistics.median(float(r[k]) for r in g)
        best = lambda g: max(float(r["images_per_s"]) for r in g)
        mi, pi = med(m, "images_per_s"), med(p, "images_per_s")
        print(f"| {method} | {phase} | {m[0]['device']} | {m[0]['batch']} x {m[0]['size']} | "
              f"{mi:.2f} | {pi:.2f} | {mi / pi:.2f} | {best(m):.2f} | {best(p):.2f} | "
              f"{best(m) / best(p):.2f} | "
              f"{med(m, 'peak_mem_mib'):.0f} | {med(p, 'peak_mem_mib'):.0f} | "
              + tflops(gflop.get((method, phase)), mi, pi))
print(f"(medians over {len(rows) // max(1, len(groups))} rounds; images/s of each round: "
      + "; ".join(f"{k[0]} {k[1]} {k[2]} " + "/".join(r['images_per_s'] for r in g)
                  for k, g in groups.items()) + ")")
EOF
