"""The `[data] resize_filter` references, for the tests of crates/memad-data/src/image_io.rs.

Each method's official code resizes its inputs with its own library, and the filters differ
by up to 20-30 grey levels on UCSD Ped2 frames (360 x 240 -> 256 x 256):

- MNAD (cvlab-yonsei/MNAD, `model/utils.py`, `np_load_frame`): `cv2.resize` with OpenCV's
  default `INTER_LINEAR`, no antialiasing: `resize_filter = "bilinear"`;
- MemAE (donggong1/memae-anomaly-detection): frames resized by MATLAB's `imresize` (bicubic,
  antialiased when shrinking): `resize_filter = "antialiased_bicubic"`.

This script resizes crates/memad-data/tests/fixtures/resize_shape_landscape.png (92 x 60,
ramps and 3 px stripes; tools/make_resize_shape_fixture.py) to 64 x 64, shrinking one axis and
enlarging the other as Ped2 does, and writes next to it:

    resize_filter_cv2_linear.png     cv2.resize(..., (64, 64), interpolation=INTER_LINEAR)
    resize_filter_matlab_bicubic.png a port of MATLAB's imresize(..., [64 64]) (bicubic,
                                     antialiasing), below: `matlab_imresize`
    resize_filter_pil_bicubic.png    PIL's resize((64, 64), BICUBIC)

Run with the project's venv and OpenCV beside it (not part of the set-up):
    pip install --target /tmp/cv2lib opencv-python-headless==4.10.0.84
    PYTHONPATH=/tmp/cv2lib ~/.cache/memad/torch-2.11.0/venv/bin/python \
        tools/make_resize_filter_fixture.py
"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parent.parent / "crates/memad-data/tests/fixtures"
SIZE = 64


def cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB's `cubic` kernel (Keys, a = -0.5)."""
    a = np.abs(x)
    return (1.5 * a**3 - 2.5 * a**2 + 1) * (a <= 1) + (
        -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    ) * ((a > 1) & (a <= 2))


def contributions(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB `imresize`'s `contributions`: per output pixel, the source indices (0-based,
    mirrored at the edges as MATLAB's `aux` does) and their normalised weights."""
    scale = out_len / in_len
    width = 4.0
    if scale < 1:  # antialiasing: the kernel stretched by 1 / scale
        kernel = lambda x: scale * cubic(scale * x)
        width /= scale
    else:
        kernel = cubic
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(np.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps)[None, :]
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    indices = mirror[np.mod(indices.astype(int) - 1, 2 * in_len)]
    return indices, weights


def matlab_imresize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """`imresize(img, [out_h out_w])` of a uint8 H x W x C image: bicubic, antialiased,
    the axis shrunk most first (MATLAB's order), rounded to uint8."""
    x = img.astype(np.float64)
    scales = {0: out_h / img.shape[0], 1: out_w / img.shape[1]}
    for axis in sorted(scales, key=scales.get):
        indices, weights = contributions(x.shape[axis], (out_h, out_w)[axis])
        moved = np.moveaxis(x, axis, 0)
        x = np.moveaxis(np.einsum("ot,ot...->o...", weights, moved[indices]), 0, axis)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def main() -> None:
    source = np.asarray(Image.open(FIXTURES / "resize_shape_landscape.png").convert("RGB"))
    linear = cv2.resize(source, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    Image.fromarray(linear).save(FIXTURES / "resize_filter_cv2_linear.png")
    Image.fromarray(matlab_imresize(source, SIZE, SIZE)).save(
        FIXTURES / "resize_filter_matlab_bicubic.png"
    )
    Image.fromarray(source).resize((SIZE, SIZE), Image.BICUBIC).save(
        FIXTURES / "resize_filter_pil_bicubic.png"
    )


if __name__ == "__main__":
    main()
