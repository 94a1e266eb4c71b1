"""The common PyTorch input pipeline, timed for `loader_bench` (benches/src/bin/loader_bench.rs).

PIL `Image.open(...).convert("RGB")` + torchvision `Resize(size)` (bilinear, PIL's
antialiased resampling) + `ToTensor()` in a `torch.utils.data.DataLoader` (shuffled,
`num_workers` worker processes, default collation), over every `*.png` of a folder: one
epoch, timed from creating the iterator (worker start-up included, as every epoch pays it
without `persistent_workers`) to the last batch. Prints one JSON line:
{"images": N, "seconds": s, "images_per_s": r, "versions": {...}}.

    python loader_reference.py --dir DIR [--size 256] [--batch 16] [--workers 2] [--seed 0]
"""
import argparse
import json
import pathlib
import time

import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms


class PngFolder(torch.utils.data.Dataset):
    def __init__(self, root, size):
        self.paths = sorted(pathlib.Path(root).glob("*.png"))
        self.transform = transforms.Compose(
            [transforms.Resize(size), transforms.ToTensor()]
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im:
            return self.transform(im.convert("RGB"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = PngFolder(args.dir, args.size)
    if len(data) == 0:
        raise SystemExit(f"no *.png in {args.dir}")
    gen = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch, shuffle=True, num_workers=args.workers, generator=gen
    )
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        assert batch.shape[1:] == (3, args.size, args.size), batch.shape
        n += batch.shape[0]
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "images": n,
                "seconds": seconds,
                "images_per_s": n / seconds,
                "versions": {
                    "torch": torch.__version__,
                    "torchvision": torchvision.__version__,
                    "pillow": PIL.__version__,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
