#!/usr/bin/env python3
"""`memad metrics` against scikit-learn + the MVTec AD AUPRO code, side by side.

Generates N anomaly maps of SIDE x SIDE (default 200 x 256 x 256) with blob-shaped defects
of varied size on about half the images, saves them as `pred.npz` / `gt.npz`, then times
- memad: `target/release/memad metrics --pred pred.npz --gt gt.npz --json --stats`, the whole
  process (start-up, libtorch loading, npz reading, all 7 image and pixel metrics);
- the reference: `np.load` of the same files, `sklearn.metrics.roc_auc_score`,
  `average_precision_score` on the pooled pixels and the MVTec AD AUPRO
  (`mvtec_aupro.py`, official float32 FPRs), in a fresh Python process, imports excluded.
Peak memory: the growth of the resident set (VmHWM, reset at the start, minus VmRSS) in
each process, memad's from `--stats`; `/usr/bin/time` max RSS minus the resident set when
`metrics` starts is printed as a cross-check (libtorch's start-up alone peaks higher than a
tiny run's baseline, so "max RSS minus a tiny run" would understate it). Values are compared and the differences printed. Writes
`benches/reference/results/metrics_compare.csv` (one row per implementation, medians).

    python3 -m venv /tmp/sk && /tmp/sk/bin/pip install -r tools/requirements-golden.txt
    cargo build --release -p memad-runner
    /tmp/sk/bin/python benches/reference/metrics_compare.py
"""
import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIELDS = ["date", "machine", "implementation", "seconds", "peak_rss_mb",
          "pixel_auroc", "pixel_ap", "aupro"]


# ---------------------------------------------------------------- inputs
def make_inputs(n, side, seed):
    """Maps (float32), masks (bool): 1-3 blobs of radius 2-48 px on about half the images."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    masks = np.zeros((n, side, side), dtype=bool)
    maps = np.empty((n, side, side), dtype=np.float32)
    for i in range(n):
        if rng.random() < 0.5:
            for _ in range(rng.integers(1, 4)):
                radius = np.exp(rng.uniform(np.log(2), np.log(48)))
                cy, cx = rng.uniform(0.1 * side, 0.9 * side, 2)
                angle, stretch = rng.uniform(0, np.pi), rng.uniform(0.4, 1.0)
                dy, dx = yy - cy, xx - cx
                u = dx * np.cos(angle) + dy * np.sin(angle)
                v = (-dx * np.sin(angle) + dy * np.cos(angle)) / stretch
                theta = np.arctan2(v, u)
                wobble = sum(rng.uniform(0, 0.2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                             for k in range(2, 6))
                masks[i] |= np.hypot(u, v) < radius * (1 + wobble)
        background = gaussian_filter(rng.standard_normal((side, side)), 4) * 8
        response = gaussian_filter(masks[i].astype(np.float64), 3) * rng.uniform(0.3, 2.0)
        noise = rng.standard_normal((side, side)) * 0.15
        maps[i] = np.abs(background + noise) * 0.3 + response
    return maps, masks


def write_inputs(folder, n, side, seed, compressed):
    maps, masks = make_inputs(n, side, seed)
    save = np.savez_compressed if compressed else np.savez
    pred, gt = os.path.join(folder, "pred.npz"), os.path.join(folder, "gt.npz")
    save(pred, image_scores=maps.max(axis=(1, 2)), anomaly_maps=maps)
    save(gt, image_labels=masks.any(axis=(1, 2)), masks=masks)
    return pred, gt, maps.nbytes


# ---------------------------------------------------------------- memory of this process
def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the reference (a worker)
def reference_worker(pred, gt):
    """Runs in a fresh process: prints timings, values and peak memory as JSON."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    sys.path.insert(0, HERE)
    import mvtec_aupro

    peak_reset = reset_peak()
    rss_start = status_mib("VmRSS")
    t = [time.perf_counter()]
    with np.load(pred) as p, np.load(gt) as g:
        maps, masks = p["anomaly_maps"], g["masks"] != 0
    t.append(time.perf_counter())
    pixel_auroc = roc_auc_score(masks.ravel(), maps.ravel())
    t.append(time.perf_counter())
    pixel_ap = average_precision_score(masks.ravel(), maps.ravel())
    t.append(time.perf_counter())
    aupro = mvtec_aupro.aupro(maps, masks, 0.3, np.float32)
    t.append(time.perf_counter())
    peak = status_mib("VmHWM")
    aupro_f64 = mvtec_aupro.aupro(maps, masks, 0.3, np.float64)  # not timed
    print(json.dumps({
        "load_seconds": t[1] - t[0], "auroc_seconds": t[2] - t[1],
        "ap_seconds": t[3] - t[2], "aupro_seconds": t[4] - t[3], "seconds": t[4] - t[0],
        "peak_rss_growth_mib": peak - rss_start, "peak_reset": peak_reset,
        "pixel_auroc": float(pixel_auroc), "pixel_ap": float(pixel_ap),
        "aupro": aupro, "aupro_f64": aupro_f64,
    }))


# ---------------------------------------------------------------- driver
def run_checked(cmd):
    """`cmd`'s completed process; on failure, its stderr is printed before the error."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        done.check_returncode()
    return done


def max_rss_mib(cmd):
    """`/usr/bin/time` max RSS of `cmd`, in MiB."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return int(out.read().split()[-1]) / 1024


def run_memad(memad, pred, gt):
    start = time.perf_counter()
    done = run_checked([memad, "metrics", "--pred", pred, "--gt", gt, "--json", "--stats"])
    seconds = time.perf_counter() - start
    report = json.loads(done.stdout)
    stats = json.loads(done.stderr.split("stats: ", 1)[1])
    return seconds, report["mean"], stats


def describe_machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()}-core {platform.machine()}, {cpu}, {mem:.0f} GiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each; medians reported")
    ap.add_argument("--compressed", action="store_true", help="np.savez_compressed inputs")
    ap.add_argument("--inputs", help="folder to keep pred.npz / gt.npz in (default: temporary)")
    ap.add_argument("--memad", default=os.path.join(ROOT, "target", "release", "memad"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "metrics_compare.csv"))
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    ap.add_argument("--machine", default=describe_machine())
    ap.add_argument("--reference-worker", nargs=2, metavar=("PRED", "GT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference_worker:
        return reference_worker(*args.reference_worker)

    with tempfile.TemporaryDirectory() as folder:
        if args.inputs:
            os.makedirs(args.inputs, exist_ok=True)
        pred, gt, map_bytes = write_inputs(args.inputs or folder, args.images, args.side, args.seed,
                                           args.compressed)
        tiny = os.path.join(folder, "tiny")
        os.mkdir(tiny)
        tiny_pred, tiny_gt, _ = write_inputs(tiny, 8, 16, 1, False)
        map_mib = map_bytes / 2**20
        print(f"inputs: {args.images} maps of {args.side}x{args.side} float32 = {map_mib:.1f} MiB"
              f", {'deflated' if args.compressed else 'stored'} npz")

        memad_runs = [run_memad(args.memad, pred, gt) for _ in range(args.repeats)]
        ref_runs = []
        for _ in range(args.repeats):
            done = run_checked([sys.executable, __file__, "--reference-worker", pred, gt])
            ref_runs.append(json.loads(done.stdout))
        rss_memad = max_rss_mib([args.memad, "metrics", "--pred", pred, "--gt", gt])
        rss_tiny = max_rss_mib([args.memad, "metrics", "--pred", tiny_pred, "--gt", tiny_gt])

    med = statistics.median
    m_seconds = med(r[0] for r in memad_runs)
    m_inner = med(r[2]["read_seconds"] + r[2]["evaluate_seconds"] for r in memad_runs)
    m_read = med(r[2]["read_seconds"] for r in memad_runs)
    m_peak = max(r[2]["peak_rss_growth_mib"] for r in memad_runs)
    m_rss_start = med(r[2]["rss_start_mib"] for r in memad_runs)
    mean = memad_runs[0][1]
    ref = {k: med(r[k] for r in ref_runs) for k in ref_runs[0] if k.endswith("seconds")}
    ref_peak = max(r["peak_rss_growth_mib"] for r in ref_runs)
    r0 = ref_runs[0]

    rows = [
        ("memad metrics (process: start-up + npz read + 7 metrics)", m_seconds, m_peak,
         mean["pixel_auroc"], mean["pixel_ap"], mean["aupro"]),
        ("memad metrics (in process: npz read + 7 metrics)", m_inner, m_peak,
         mean["pixel_auroc"], mean["pixel_ap"], mean["aupro"]),
        ("reference (np.load + roc_auc_score + average_precision_score + MVTec AUPRO)",
         ref["seconds"], ref_peak, r0["pixel_auroc"], r0["pixel_ap"], r0["aupro"]),
        ("sklearn roc_auc_score", ref["auroc_seconds"], "", r0["pixel_auroc"], "", ""),
        ("sklearn average_precision_score", ref["ap_seconds"], "", "", r0["pixel_ap"], ""),
        ("MVTec AD AUPRO (scipy.ndimage.label, float32 FPRs)", ref["aupro_seconds"], "",
         "", "", r0["aupro"]),
    ]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        for name, seconds, peak, auroc, ap_, aupro in rows:
            w.writerow([args.date, args.machine, name, f"{seconds:.3f}", fmt(peak, ".1f"),
                        fmt(auroc, ".17g"), fmt(ap_, ".17g"), fmt(aupro, ".17g")])

    for name, seconds, peak, *_ in rows:
        memory = "" if peak == "" else f"{peak:7.1f} MiB"
        print(f"{seconds:9.3f} s  {memory:>11}  {name}")
    print(f"np.load in the reference: {ref['load_seconds']:.3f} s; memad npz read: {m_read:.3f} s")
    print(f"speed-up, memad process vs reference: {ref['seconds'] / m_seconds:.1f}x "
          f"(in process: {ref['seconds'] / m_inner:.1f}x; vs reference without np.load: "
          f"{(ref['seconds'] - ref['load_seconds']) / m_seconds:.1f}x)")
    print(f"memad peak memory growth: {m_peak:.1f} MiB = {m_peak / map_mib:.2f}x the maps; "
          f"cross-check: /usr/bin/time max RSS {rss_memad:.1f} MiB - {m_rss_start:.1f} MiB "
          f"resident when `metrics` starts (libtorch loaded) = {rss_memad - m_rss_start:.1f} MiB "
          f"(a tiny run peaks at {rss_tiny:.1f} MiB: start-up)")
    print("differences memad - reference:")
    print(f"  pixel_auroc {mean['pixel_auroc'] - r0['pixel_auroc']:+.3e}")
    print(f"  pixel_ap    {mean['pixel_ap'] - r0['pixel_ap']:+.3e}")
    print(f"  aupro       {mean['aupro'] - r0['aupro']:+.3e} (official float32 FPRs), "
          f"{mean['aupro'] - r0['aupro_f64']:+.3e} (float64 FPRs)")
    print(f"wrote {args.out}")


def fmt(x, spec):
    return x if x == "" else format(x, spec)


if __name__ == "__main__":
    main()
