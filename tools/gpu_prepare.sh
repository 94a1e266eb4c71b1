#!/usr/bin/env bash
# Builds what tools/gpu_all.sh needs on a GPU machine that has PyTorch but no Rust, into one
# folder to carry with the tree, target/gpu/ (about 50 MB):
#   memad, step_bench          release binaries
#   backbone_throughput        the criterion benchmark's binary (run with --bench)
#   weights/                   the converted EfficientNet-Lite0 weights (no ~/.cache/memad there)
#   COMMIT                     the commit they were built from (the tree there has no .git)
set -euo pipefail
cd "$(dirname "$0")/.."
./dev setup
nice cargo build --release -p memad-runner -p memad-benches --bin memad --bin step_bench
# cargo names the benchmark binary by a hash: take it from cargo's own report.
teachers="$(nice cargo bench --no-run -p memad-benches --bench backbone_throughput \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "backbone_throughput" \
            and m.get("executable"):
        print(m["executable"])')"
rm -rf target/gpu
mkdir -p target/gpu/weights
cp target/release/memad target/release/step_bench target/gpu/
cp "$teachers" target/gpu/backbone_throughput
weights="${MEMAD_WEIGHTS_DIR:-${MEMAD_CACHE:-$HOME/.cache/memad}/weights}"
cp "$weights/efficientnet_lite0.safetensors" target/gpu/weights/
commit="$(git rev-parse --short HEAD)"
git diff --quiet HEAD || commit="$commit-dirty"
echo "$commit" > target/gpu/COMMIT
du -sh target/gpu
