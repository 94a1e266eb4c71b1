"""Non-square images and a mask with torchvision's `Resize(32)` + `CenterCrop(28)` of them,
for the `resize_shape = "shorter_side"` tests of crates/memad-data/src/image_io.rs and
loader.rs.

PatchCore's official code (amazon-science/patchcore-inspection) feeds images and masks
through `transforms.Resize(256)` (an int: the shorter side becomes 256, the longer
`int(256 * long / short)`) and `transforms.CenterCrop(224)` (offsets
`int(round((side - 224) / 2.0))`, half to even). This script writes, into
crates/memad-data/tests/fixtures/, at 32 / 28 instead of 256 / 224:

    resize_shape_landscape.png         92 x 60 RGB: R a horizontal ramp, G a vertical one,
                                       B sharp vertical stripes and a block (offsets and
                                       the resize show in every channel)
    resize_shape_portrait.png          60 x 96, the same pattern transposed
    resize_shape_mask.png              92 x 60 0/255 mask: a block and a 1 px line
    resize_shape_landscape_tv.png      torchvision's output of each, 28 x 28 (the mask's
    resize_shape_portrait_tv.png       grey, before PatchCore's `astype(int)` or RD4AD's
    resize_shape_mask_tv.png           `> 0.5`)

92 x 60 resizes to 49 x 32 (49.07 truncated): the crop starts at x = round(10.5) = 10
(half to even); 60 x 96 resizes to 32 x 51 (51.2): y = round(11.5) = 12.

Run with the project's torch venv (torch, torchvision, Pillow):
    ~/.cache/memad/torch-2.11.0/venv/bin/python tools/make_resize_shape_fixture.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import transforms

OUT = Path(__file__).resolve().parent.parent / "crates/memad-data/tests/fixtures"


def pattern(w: int, h: int) -> np.ndarray:
    x = np.arange(w)[None, :].repeat(h, 0)
    y = np.arange(h)[:, None].repeat(w, 1)
    r = x * 255 // (w - 1)
    g = y * 255 // (h - 1)
    b = np.where((x // 3) % 2 == 0, 230, 20)
    b[(y >= 20) & (y < 40) & (x >= 46) & (x < 70)] = 128
    return np.stack([r, g, b], -1).astype(np.uint8)


def main() -> None:
    t = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(28)])
    landscape = Image.fromarray(pattern(92, 60))
    portrait = Image.fromarray(pattern(96, 60).transpose(1, 0, 2).copy())
    mask = np.zeros((60, 92), np.uint8)
    mask[20:40, 46:70] = 255
    mask[5:55, 30] = 255
    mask = Image.fromarray(mask, "L")
    for name, img in [("landscape", landscape), ("portrait", portrait), ("mask", mask)]:
        img.save(OUT / f"resize_shape_{name}.png")
        out = t(img)
        assert out.size == (28, 28), out.size
        out.save(OUT / f"resize_shape_{name}_tv.png")


if __name__ == "__main__":
    main()
