#!/usr/bin/env python3
"""Golden values for memad-metrics, from scikit-learn and the MVTec AD reference code.

Writes crates/memad-metrics/tests/golden/data.rs (test vectors + expected values), read by
crates/memad-metrics/tests/golden/main.rs.

    python3 -m venv /tmp/sk && /tmp/sk/bin/pip install -r tools/requirements-golden.txt
    /tmp/sk/bin/python tools/golden_metrics.py && cargo fmt -p memad-metrics

- AUROC: sklearn.metrics.roc_auc_score.
- AP: sklearn.metrics.average_precision_score.
- F1-max: max of 2PR/(P+R) over sklearn.metrics.precision_recall_curve's points (0 where
  P+R = 0, as anomalib's F1Max up to its 1e-10); the threshold is that of np.argmax (the
  lowest threshold among equal maxima), checked against exact rational arithmetic.
- AUPRO: compute_pro + trapezoid of the MVTec AD evaluation code (Bergmann et al., IJCV
  2021), copied below with scipy.ndimage.label and a 3x3 structure. The official code
  casts the cumulative false-positive counts to float32 before dividing; `aupro_mvtec_f32`
  is that, `aupro_mvtec_f64` the same code with float64 FPRs (what memad computes).
- Per-image AUPRO: the mean of the MVTec AUPRO (float64 FPRs) of each image that has
  anomalous pixels.
- RD4AD's PRO: the protocol of RD4AD's official test.py (hq-deng/RD4AD, `compute_pro` per
  anomalous image: 200 thresholds from numpy.arange between the image's map extremes,
  regions from skimage.measure.label, points with FPR < 0.3 rescaled by their largest FPR,
  sklearn.metrics.auc), written here from that description; the mean over the images.
"""
import argparse
import os
from bisect import bisect
from fractions import Fraction

import numpy as np
import sklearn
from scipy.ndimage import label
from skimage import measure
from sklearn.metrics import auc as sklearn_auc
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "memad-metrics", "tests", "golden", "data.rs")


# ---------------------------------------------------------------- sklearn-based metrics
def f1_max(scores, labels):
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    i = int(np.argmax(f1[:-1]))  # the last point (P=1, R=0) has no threshold
    # Exact check: the maximal F1 and the lowest threshold attaining it.
    p_total = int(np.sum(labels))
    best = None
    for t in sorted(set(scores.tolist())):  # ascending, like precision_recall_curve
        tp = int(np.sum((scores >= t) & labels))
        fp = int(np.sum((scores >= t) & ~labels))
        value = Fraction(2 * tp, tp + fp + p_total)
        if best is None or value > best[0]:
            best = (value, t)
    assert abs(float(best[0]) - f1[i]) < 1e-12, (best, f1[i])
    assert np.float32(best[1]) == np.float32(thresholds[i]), (best, thresholds[i])
    return float(f1[i]), float(thresholds[i])


# ---------------------------------------------------------------- MVTec AD reference code
def trapezoid(x, y, x_max=None):
    x = np.asarray(x)
    y = np.asarray(y)
    finite_mask = np.logical_and(np.isfinite(x), np.isfinite(y))
    x = x[finite_mask]
    y = y[finite_mask]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        mask = x <= x_max
        x = x[mask]
        y = y[mask]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def compute_pro(anomaly_maps, ground_truth_maps, fpr_dtype):
    structure = np.ones((3, 3), dtype=int)
    num_ok_pixels = 0
    num_gt_regions = 0
    shape = (len(anomaly_maps), anomaly_maps[0].shape[0], anomaly_maps[0].shape[1])
    fp_changes = np.zeros(shape, dtype=np.uint32)
    pro_changes = np.zeros(shape, dtype=np.float64)
    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = label(gt_map, structure)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels += np.sum(ok_mask)
        fp_change = np.zeros_like(gt_map, dtype=fp_changes.dtype)
        fp_change[ok_mask] = 1
        pro_change = np.zeros_like(gt_map, dtype=np.float64)
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            pro_change[region_mask] = 1.0 / np.sum(region_mask)
        fp_changes[gt_ind, :, :] = fp_change
        pro_changes[gt_ind, :, :] = pro_change
    anomaly_scores_flat = np.array(anomaly_maps).ravel()
    fp_changes_flat = fp_changes.ravel()
    pro_changes_flat = pro_changes.ravel()
    sort_idxs = np.argsort(anomaly_scores_flat).astype(np.uint32)[::-1]
    np.take(anomaly_scores_flat, sort_idxs, out=anomaly_scores_flat)
    anomaly_scores_sorted = anomaly_scores_flat
    np.take(fp_changes_flat, sort_idxs, out=fp_changes_flat)
    np.take(pro_changes_flat, sort_idxs, out=pro_changes_flat)
    np.cumsum(fp_changes_flat, out=fp_changes_flat)
    fprs = fp_changes_flat.astype(fpr_dtype)  # the official code: np.float32
    fprs = np.divide(fprs, num_ok_pixels).astype(fpr_dtype)
    np.cumsum(pro_changes_flat, out=pro_changes_flat)
    pros = np.divide(pro_changes_flat, num_gt_regions)
    keep_mask = np.append(np.diff(anomaly_scores_sorted) != 0, np.True_)
    fprs = fprs[keep_mask]
    pros = pros[keep_mask]
    np.clip(fprs, a_min=None, a_max=1.0, out=fprs)
    np.clip(pros, a_min=None, a_max=1.0, out=pros)
    zero = np.array([0.0])
    one = np.array([1.0])
    return np.concatenate((zero, fprs, one)), np.concatenate((zero, pros, one))


def aupro_mvtec(maps, masks, limit, fpr_dtype):
    fprs, pros = compute_pro(list(maps), list(masks.astype(np.uint8)), fpr_dtype)
    return float(trapezoid(fprs, pros, x_max=limit) / limit)


# ---------------------------------------------------------------- test data
def rd4ad_pro(maps, masks):
    areas = []
    for amap, mask in zip(maps.astype(np.float64), masks):
        if not mask.any():
            continue
        regions = measure.regionprops(measure.label(mask.astype(int)))
        normal = ~mask
        lo, hi = amap.min(), amap.max()
        fprs, pros = [], []
        for th in np.arange(lo, hi, (hi - lo) / 200):
            above = amap > th
            pros.append(np.mean([above[r.coords[:, 0], r.coords[:, 1]].sum() / r.area for r in regions]))
            fprs.append(np.logical_and(normal, above).sum() / normal.sum())
        fprs, pros = np.asarray(fprs), np.asarray(pros)
        kept = fprs < 0.3
        areas.append(sklearn_auc(fprs[kept] / fprs[kept].max(), pros[kept]))
    return float(np.mean(areas))


def binary_cases(rng):
    cases = []

    def add(name, scores, labels):
        cases.append((name, np.asarray(scores, dtype=np.float32), np.asarray(labels, dtype=bool)))

    add("sklearn_docs", [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    add("constant_scores", [0.7] * 9, [1, 0, 0, 1, 0, 0, 0, 1, 0])
    add("all_tied_but_one", [0.5] * 11 + [0.9], [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    # Five levels, 60 samples: heavy ties mixing both classes.
    labels = rng.random(60) < 0.4
    add("five_levels", np.floor(rng.random(60) * 5 + labels * 1.5) / 4, labels)
    # Signed scores, with -0.0 and 0.0 (one tie) and a wide magnitude range.
    s = np.array([-0.0, 0.0, -3.5, 1e-30, -1e-30, 2.5e7, -2.5e7, 0.0, 1.0, -1.0, 3e38, -3e38, 0.0, 1e-30])
    add("signed_and_wide", s, [0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0])
    # Continuous scores (float32), 200 samples, 30 % positives.
    labels = rng.random(200) < 0.3
    add("continuous_200", rng.normal(size=200) + labels * 0.8, labels)
    # 2000 samples, 20 levels, 5 % positives (imbalanced like pixels).
    labels = rng.random(2000) < 0.05
    add("levels20_imbalanced_2000", np.floor((rng.random(2000) + labels * 0.5) * 20) / 20, labels)
    # Perfect and inverted separation.
    add("perfect", [0.1, 0.2, 0.3, 0.9, 0.95], [0, 0, 0, 1, 1])
    add("inverted", [0.1, 0.2, 0.3, 0.9, 0.95], [1, 1, 0, 0, 0])
    return cases


def blob_masks(rng, n, h, w):
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        for _ in range(int(rng.integers(0, 4))):
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            ry, rx = int(rng.integers(1, 4)), int(rng.integers(1, 5))
            blob = rng.random((2 * ry, 2 * rx)) < 0.75
            y0, x0 = max(cy - ry, 0), max(cx - rx, 0)
            y1, x1 = min(cy + ry, h), min(cx + rx, w)
            masks[i, y0:y1, x0:x1] |= blob[: y1 - y0, : x1 - x0]
        masks[i, (3 * i) % h, (5 * i) % w] ^= True  # isolated / diagonal specks
        masks[i, (3 * i + 1) % h, (5 * i + 1) % w] ^= True
    if not masks.any():
        masks[0, 0, 0] = True
    return masks


def pro_cases(rng):
    cases = []
    n, h, w = 4, 16, 12
    masks = blob_masks(rng, n, h, w)
    u = rng.random((n, h, w)) + masks * 0.5
    cases.append(("continuous_4x16x12", (u / 1.5).astype(np.float32), masks))
    masks = blob_masks(rng, n, h, w)
    u = rng.random((n, h, w)) + masks * 0.4
    cases.append(("levels8_4x16x12", (np.floor(u * 8) / 8).astype(np.float32), masks))
    n, h, w = 6, 20, 20
    masks = blob_masks(rng, n, h, w)
    masks[2] = False  # a normal image
    u = rng.random((n, h, w)) * 0.7 + masks * rng.random((n, h, w)) * 0.6
    cases.append(("mixed_6x20x20", np.round(u * 64).astype(np.float32) / 64, masks))
    return cases


# ---------------------------------------------------------------- Rust output
def f32_lit(x):
    x = np.float32(x)
    if x == 0:
        return "-0.0" if np.signbit(x) else "0.0"
    if 1e-4 <= abs(x) < 1e7:
        s = np.format_float_positional(x, unique=True)
        return s + "0" if s.endswith(".") else s
    m, e = np.format_float_scientific(x, unique=True, trim="-").split("e")
    return f"{m}e{int(e)}"


def f64_lit(x):
    s = repr(float(x))
    return s if ("." in s or "e" in s) else s + ".0"


def bits(values):
    return '"' + "".join("1" if v else "0" for v in np.ravel(values)) + '"'


def floats(values):
    return "&[" + ", ".join(f32_lit(v) for v in np.ravel(values)) + "]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=OUT, help="Rust file to write (default: %(default)s)")
    args = parser.parse_args()
    rng = np.random.default_rng(20240607)
    lines = [
        "// @generated by tools/golden_metrics.py -- do not edit; rerun the script.",
        f"// scikit-learn {sklearn.__version__}, numpy {np.__version__}.",
        "",
        "pub struct BinaryCase {",
        "    pub name: &'static str,",
        "    pub scores: &'static [f32],",
        "    /// One char per sample, '1' = positive.",
        "    pub labels: &'static str,",
        "    pub auroc: f64,",
        "    pub ap: f64,",
        "    pub f1_max: f64,",
        "    pub f1_threshold: f32,",
        "}",
        "",
        "pub struct ProCase {",
        "    pub name: &'static str,",
        "    pub n: usize,",
        "    pub h: usize,",
        "    pub w: usize,",
        "    pub maps: &'static [f32],",
        "    /// One char per pixel, '1' = anomalous.",
        "    pub masks: &'static str,",
        "    /// (fpr_limit, MVTec code with f64 FPRs, official MVTec code (f32 FPRs), per-image).",
        "    pub aupro: &'static [(f64, f64, f64, f64)],",
        "    /// RD4AD's official per-image PRO (its test.py protocol).",
        "    pub rd4ad_pro: f64,",
        "}",
        "",
        "pub const BINARY: &[BinaryCase] = &[",
    ]
    for name, scores, labels in binary_cases(rng):
        auc = roc_auc_score(labels, scores)
        ap = average_precision_score(labels, scores)
        f1, t = f1_max(scores, labels)
        print(f"{name:28} n={len(scores):5} auroc={auc:.12f} ap={ap:.12f} f1max={f1:.12f} @ {t}")
        lines += [
            "    BinaryCase {",
            f'        name: "{name}",',
            f"        scores: {floats(scores)},",
            f"        labels: {bits(labels)},",
            f"        auroc: {f64_lit(auc)},",
            f"        ap: {f64_lit(ap)},",
            f"        f1_max: {f64_lit(f1)},",
            f"        f1_threshold: {f32_lit(t)},",
            "    },",
        ]
    lines += ["];", "", "pub const PRO: &[ProCase] = &["]
    for name, maps, masks in pro_cases(rng):
        n, h, w = maps.shape
        rd4ad = rd4ad_pro(maps, masks)
        print(f"{name:28} rd4ad pro={rd4ad:.12f}")
        rows = []
        for limit in [0.3, 0.05, 1.0]:
            a64 = aupro_mvtec(maps, masks, limit, np.float64)
            a32 = aupro_mvtec(maps, masks, limit, np.float32)
            per_image = [aupro_mvtec(maps[i : i + 1], masks[i : i + 1], limit, np.float64) for i in range(n) if masks[i].any()]
            pi = float(np.mean(per_image))
            print(f"{name:28} limit={limit:4} aupro={a64:.12f} (official f32 FPRs {a32:.12f}) per-image={pi:.12f}")
            rows.append(f"({f64_lit(limit)}, {f64_lit(a64)}, {f64_lit(a32)}, {f64_lit(pi)})")
        lines += [
            "    ProCase {",
            f'        name: "{name}",',
            f"        n: {n},",
            f"        h: {h},",
            f"        w: {w},",
            f"        maps: {floats(maps)},",
            f"        masks: {bits(masks)},",
            f"        aupro: &[{', '.join(rows)}],",
            f"        rd4ad_pro: {f64_lit(rd4ad)},",
            "    },",
        ]
    lines += ["];", ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
