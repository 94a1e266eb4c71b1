#!/usr/bin/env bash
# Builds what tools/gpu_all.sh needs on a GPU machine that has PyTorch but no Rust, into one
# folder to carry with the tree, target/gpu/ (about 47 MiB, binaries stripped):
#   memad, step_bench          release binaries
#   backbone_throughput        the criterion benchmark's binary (run with --bench)
#   memad_cuda_tests           memad-cuda's unit tests (the GPU ones run with --ignored)
#   weights/                   the converted EfficientNet-Lite0 weights (no ~/.cache/memad there)
#   COMMIT                     the commit they were built from (the tree there has no .git)
set -euo pipefail
cd "$(dirname "$0")/.."
./dev setup
nice cargo build --release -p memad-runner -p memad-benches --bin memad --bin step_bench
# cargo names the benchmark binary by a hash: take it from cargo's own report.
executable() { # target name: the executable in cargo's JSON report on stdin
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] \
            and m.get("executable"):
        print(m["executable"])' "$1"
}
teachers="$(nice cargo bench --no-run -p memad-benches --bench backbone_throughput \
    --message-format=json 2>/dev/null | executable backbone_throughput)"
cuda_tests="$(nice cargo test --release --no-run -p memad-cuda --lib \
    --message-format=json 2>/dev/null | executable memad_cuda)"
rm -rf target/gpu
mkdir -p target/gpu/weights
cp target/release/memad target/release/step_bench target/gpu/
cp "$teachers" target/gpu/backbone_throughput
cp "$cuda_tests" target/gpu/memad_cuda_tests
weights="${MEMAD_WEIGHTS_DIR:-${MEMAD_CACHE:-$HOME/.cache/memad}/weights}"
cp "$weights/efficientnet_lite0.safetensors" target/gpu/weights/
chmod 0644 target/gpu/weights/efficientnet_lite0.safetensors
# Symbol tables are a quarter of the binaries (7 of 38 MiB), and the carry limit is near:
# panic messages keep their file:line, backtraces lose function names.
if command -v strip >/dev/null; then
    strip target/gpu/{memad,step_bench,backbone_throughput,memad_cuda_tests}
else
    echo "strip not found (binutils): the binaries keep their symbols, 7 MiB more to carry" >&2
fi
# The commit string the binaries embed (`-dirty-<hash of the diff>` for an edited tree).
target/gpu/memad info | sed -n 's/^built from *commit //p' > target/gpu/COMMIT
[ -s target/gpu/COMMIT ] || { echo "memad info gave no commit" >&2; exit 1; }
# The device tool sends the working tree and the carried paths, 64 MiB in all.
tree_kib="$({ git ls-files; git ls-files --others --exclude-standard; } | tr '\n' '\0' \
    | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1 || true)"
gpu_kib="$(du -sk target/gpu | cut -f1)"
echo "to carry: target/gpu $((gpu_kib / 1024)) MiB + the working tree $((tree_kib / 1024)) MiB" \
    "= $(((gpu_kib + tree_kib) / 1024)) MiB (the device tool's limit: 64 MiB)"
