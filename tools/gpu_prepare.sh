#!/usr/bin/env bash
# Builds what tools/gpu_all.sh needs on a GPU machine that has PyTorch but no Rust: the
# release `memad` and `step_bench`, and a copy of the converted EfficientNet-Lite0 weights in
# target/gpu-weights/ (the GPU machine has no ~/.cache/memad). Carry these three paths with
# the tree:  target/release/memad  target/release/step_bench  target/gpu-weights
set -euo pipefail
cd "$(dirname "$0")/.."
./dev setup
nice cargo build --release -p memad-runner -p memad-benches --bin memad --bin step_bench
weights="${MEMAD_WEIGHTS_DIR:-${MEMAD_CACHE:-$HOME/.cache/memad}/weights}"
mkdir -p target/gpu-weights
cp "$weights/efficientnet_lite0.safetensors" target/gpu-weights/
du -ch target/release/memad target/release/step_bench target/gpu-weights | tail -1
