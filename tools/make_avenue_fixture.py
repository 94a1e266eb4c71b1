"""Tiny CUHK Avenue ground-truth files for crates/memad-data/tests/shanghaitech_avenue_layout.rs.

The official Avenue ground truth (`ground_truth_demo/testing_label_mask/<N>_label.mat`)
holds `volLabel`, a 1 x T cell array of H x W pixel masks. This script writes the same
structure for T = 4 frames of 4 x 6 pixels, with one cell per supported element type, and
a char variable before it (the reader must skip it):

    frame 0: double, all zero                  -> normal frame
    frame 1: double, 1.0 at row 0, column 5     -> anomalous, one pixel
    frame 2: uint8, 1 at rows 2-3, columns 1-2  -> anomalous, a 2 x 2 block
    frame 3: logical, row 3 and (1, 0) true     -> anomalous, 7 pixels

into crates/memad-data/tests/fixtures/avenue_label_compressed.mat (MATLAB's default,
miCOMPRESSED elements) and avenue_label_uncompressed.mat (plain miMATRIX elements).

Run (scipy is not part of the project's set-up; any python with numpy and scipy):
    python -m venv /tmp/scipy-venv && /tmp/scipy-venv/bin/pip install numpy scipy
    /tmp/scipy-venv/bin/python tools/make_avenue_fixture.py
"""

from pathlib import Path

import numpy as np
from scipy.io import savemat

OUT = Path(__file__).resolve().parent.parent / "crates/memad-data/tests/fixtures"


def vol_label() -> np.ndarray:
    h, w = 4, 6
    f0 = np.zeros((h, w), dtype=np.float64)
    f1 = np.zeros((h, w), dtype=np.float64)
    f1[0, 5] = 1.0
    f2 = np.zeros((h, w), dtype=np.uint8)
    f2[2:4, 1:3] = 1
    f3 = np.zeros((h, w), dtype=bool)
    f3[3, :] = True
    f3[1, 0] = True
    cells = np.empty((1, 4), dtype=object)
    for k, f in enumerate([f0, f1, f2, f3]):
        cells[0, k] = f
    return cells


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    variables = {"note": "memad avenue fixture", "volLabel": vol_label()}
    for name, compress in [("compressed", True), ("uncompressed", False)]:
        path = OUT / f"avenue_label_{name}.mat"
        savemat(path, variables, do_compression=compress, format="5")
        print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
