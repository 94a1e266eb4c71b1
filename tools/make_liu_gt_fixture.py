"""A tiny frame-label file in the layout of Liu et al.'s frame tarballs (ped1/ped1.mat,
ped2/ped2.mat, avenue/avenue.mat of "Future Frame Prediction for Anomaly Detection", CVPR
2018, which MNAD's README points to), for crates/memad-data/tests/video_layout.rs.

Their `gt` is a 1 x N cell array, one cell per test video: a 2 x K matrix whose columns are
the K anomalous events, row 0 the first frame and row 1 the last (1-based, inclusive; the
official evaluate.py marks `gt[start - 1:end]`). This script writes N = 3 videos:

    video 1: double [[3], [5]]          -> frames 3..5 anomalous
    video 2: double [[1, 7], [2, 8]]    -> frames 1..2 and 7..8
    video 3: uint16 2 x 0 (no event)    -> all normal

into crates/memad-data/tests/fixtures/liu_gt.mat (MATLAB's default compression) with a
char variable before it (the reader must skip it).

Run (scipy is not part of the project's set-up; any python with numpy and scipy):
    python -m venv /tmp/scipy-venv && /tmp/scipy-venv/bin/pip install numpy scipy
    /tmp/scipy-venv/bin/python tools/make_liu_gt_fixture.py
"""

from pathlib import Path

import numpy as np
from scipy.io import savemat

OUT = Path(__file__).resolve().parent.parent / "crates/memad-data/tests/fixtures"


def main() -> None:
    gt = np.empty((1, 3), dtype=object)
    gt[0, 0] = np.array([[3.0], [5.0]])
    gt[0, 1] = np.array([[1.0, 7.0], [2.0, 8.0]])
    gt[0, 2] = np.zeros((2, 0), dtype=np.uint16)
    OUT.mkdir(parents=True, exist_ok=True)
    savemat(OUT / "liu_gt.mat", {"a_note": "frame ranges", "gt": gt}, do_compression=True)


if __name__ == "__main__":
    main()
