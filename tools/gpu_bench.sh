#!/usr/bin/env bash
# All step benchmarks (RD4AD, MNAD, MDD-Net train/score; PatchCore fit/coreset/score; paper and
# quickstart shapes) on a GPU machine, memad against the plain-PyTorch reference, in one call.
#
# The GPU machine has PyTorch 2.11 (+cu130) but no Rust: build with tools/gpu_prepare.sh
# here, carry target/gpu with the tree (step_bench is target/gpu/step_bench, else
# target/release/step_bench, or MEMAD_BENCH_BIN), and there run
#   bash tools/gpu_bench.sh [--quick] [--rounds N]      (default 2 rounds; --quick: smoke test)
# Results: benches/reference/results/steps_cuda[_quick].csv (--out FILE: elsewhere, e.g. under
# the device tool's $OUT, which is what comes back) and the printed table; the
# nvidia-smi line, the load and the commit are printed first. Arguments are passed on to
# benches/reference/compare_steps.sh (e.g. --methods patchcore,mddnet, --precision bf16
# --channels-last, --out FILE). tools/gpu_all.sh runs this and every other GPU check.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
torch_lib="$("$PYTHON" -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
default_bin=target/release/step_bench
[ -x target/gpu/step_bench ] && default_bin=target/gpu/step_bench
export MEMAD_BENCH_BIN="${MEMAD_BENCH_BIN:-$default_bin}"
export PYTHON
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
date -u
exec benches/reference/compare_steps.sh --device cuda "$@"
