"""A ground-truth mask and PIL's bilinear resize of it, for the `mask_resize` test of
crates/memad-data/tests/mvtec_layout.rs.

RD4AD's and PatchCore's official evaluations resize masks with torchvision's `Resize` on a
PIL image, i.e. PIL's BILINEAR filter (antialiased when shrinking), then binarise: RD4AD
`gt > 0.5`, PatchCore `.astype(int)` (wholly covered pixels only). This script draws a
300 x 300 mask of discs and thin lines (seeded) and writes, into
crates/memad-data/tests/fixtures/:

    mask_resize_source.png       the 0/255 mask
    mask_resize_pil_64.png       PIL's BILINEAR resize of it to 64 x 64 (grey values)

Run (Pillow and numpy; not part of the project's set-up):
    python -m venv /tmp/pil-venv && /tmp/pil-venv/bin/pip install numpy pillow
    /tmp/pil-venv/bin/python tools/make_mask_resize_fixture.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "crates/memad-data/tests/fixtures"


def main() -> None:
    rng = np.random.default_rng(7)
    mask = Image.new("L", (300, 300), 0)
    draw = ImageDraw.Draw(mask)
    for _ in range(8):
        x, y = (int(v) for v in rng.integers(20, 280, 2))
        r = int(rng.integers(3, 40))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    for _ in range(5):
        x, y = (int(v) for v in rng.integers(20, 280, 2))
        dx, dy = (int(v) for v in rng.integers(-120, 120, 2))
        draw.line([x, y, x + dx, y + dy], fill=255, width=int(rng.integers(1, 4)))
    mask.save(OUT / "mask_resize_source.png")
    mask.resize((64, 64), Image.BILINEAR).save(OUT / "mask_resize_pil_64.png")


if __name__ == "__main__":
    main()
