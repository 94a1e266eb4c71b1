#!/usr/bin/env bash
# GPU proof for docs/benchmarks.md, on a machine with a GPU and PyTorch 2.11 but no Rust:
# build here with tools/gpu_prepare.sh, carry target/gpu (memad and the EfficientNet-Lite0
# weights the quickstart needs) with the tree, then on the GPU machine:
#   bash tools/gpu_proof.sh > gpu_proof.txt
# (MEMAD_BIN / MEMAD_WEIGHTS_DIR: another binary or weights folder). It prints `memad info`
# (CUDA must be seen) and times a 2-epoch quickstart on CUDA and on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
torch_lib="$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib"
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="${MEMAD_BIN:-target/gpu/memad}"
[ -z "${MEMAD_BIN:-}" ] && [ ! -x "$bin" ] && bin=target/release/memad
[ -d target/gpu/weights ] && export MEMAD_WEIGHTS_DIR="${MEMAD_WEIGHTS_DIR:-$PWD/target/gpu/weights}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$bin" info
for device in cuda cpu; do
    sed "s/^device = .*/device = \"$device\"/; s/^name = .*/name = \"gpu-proof-$device\"/" \
        experiments/quickstart.toml > "/tmp/gpu-proof-$device.toml"
    echo "== quickstart, 2 epochs, device $device"
    start=$(date +%s%N)
    "$bin" --datasets datasets.toml run "/tmp/gpu-proof-$device.toml" --epochs 2 --runs /tmp/gpu-proof-runs
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf 'wall seconds: %d.%03d\n' $((ms / 1000)) $((ms % 1000))
done
