//! AUPRO: area under the per-region-overlap curve, MVTec AD definition (Bergmann et al.,
//! IJCV 2021; reference code `pro_curve_util.compute_pro` and `generic_util.trapezoid` of the
//! MVTec AD evaluation scripts).
//!
//! Regions are the 8-connected components of each ground-truth mask. At a threshold `t`,
//! `PRO(t) = (1/R) sum_r |{p in r : s_p >= t}| / |r|` over the `R` regions of the whole set
//! and `FPR(t)` = normal pixels scoring `>= t` over all normal pixels (pooled over images).
//! The curve through `(0, 0)` and the points of every distinct threshold is integrated with
//! the trapezoid rule over `FPR in [0, fpr_limit]`, the end point linearly interpolated,
//! and divided by `fpr_limit`.
//!
//! Exact curve without recomputing components: labels are computed once per image, each
//! anomalous pixel carries the weight `1/|r|` of its region, so `R * PRO(t)` is the sum of the
//! weights of pixels scoring `>= t` (compensated summation), the identity the reference code
//! uses. Between thresholds held by anomalous pixels the curve is flat, so one sweep over
//! the sorted anomalous pixels, with a pointer into the sorted normal ones for the FPR,
//! gives every corner of the exact curve. Only thresholds down to the first point with
//! `FPR > fpr_limit` matter, so pixels below a cutoff found from a 16-bit histogram of the
//! normal scores are dropped before sorting. Cost: `O(n*h*w)` labelling and filtering
//! (parallel over images and chunks), a parallel radix sort of the pixels kept and one
//! `O(kept)` sweep; about 8 bytes per pixel of working memory.
//!
//! Deviation: the official code rounds the FPRs to `f32` before integrating; here they are
//! `f64`, which moves results by ~1e-8 (golden test: `tests/golden/`).

use rayon::prelude::*;

use crate::components::connected_components_8;
use crate::error::{MetricError, Result};
use crate::keys::{check_finite, f32_key};
use crate::radix::{self, Tagged};
use crate::sum::Neumaier;

/// The FPR limit of the MVTec AD benchmark.
pub const MVTEC_FPR_LIMIT: f64 = 0.3;

/// Elements per parallel histogram task.
const CHUNK: usize = 1 << 16;

/// AUPRO, MVTec definition: `maps` and `masks` are `n` images of `h*w` pixels, row-major,
/// concatenated. Regions = 8-connected components of each ground-truth mask; per
/// threshold, PRO = mean over all regions of the set of the overlap fraction, FPR = false
/// positives over all normal pixels (pooled). PRO is integrated over FPR in
/// `[0, fpr_limit]` (interpolating the end point) and divided by `fpr_limit`.
///
/// # Errors
/// `InvalidFprLimit` unless `0 < fpr_limit <= 1`; `LengthMismatch` (maps vs masks);
/// `Shape` unless both hold `n*h*w` values; `Empty`; `NonFinite`; `NoPositives` without
/// any anomalous pixel; `NoNegatives` without any normal pixel.
pub fn aupro(
    maps: &[f32],
    masks: &[bool],
    n: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<f64> {
    check_inputs(maps, masks, n, h, w, fpr_limit)?;
    ProPixels::collect(maps, masks, h, w).area(fpr_limit)
}

/// The per-image variant some papers use: the mean, over the images with at least one
/// anomalous pixel, of each image's own [`aupro`] (its regions, its normal pixels).
/// Normal images are skipped. Not comparable with [`aupro`]'s pooled numbers.
///
/// # Errors
/// As [`aupro`]; `NoPositives` if no image has an anomalous pixel; `NoNegatives` (inside
/// `In { context: "image i" }`) if an anomalous image has no normal pixel.
pub fn aupro_per_image(
    maps: &[f32],
    masks: &[bool],
    n: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<f64> {
    check_inputs(maps, masks, n, h, w, fpr_limit)?;
    let hw = h * w;
    let per_image: Vec<Option<Result<f64>>> = maps
        .par_chunks(hw)
        .zip(masks.par_chunks(hw))
        .enumerate()
        .map(|(i, (map, mask))| {
            mask.iter().any(|&m| m).then(|| {
                ProPixels::collect(map, mask, h, w)
                    .area(fpr_limit)
                    .map_err(|e| e.within(format!("image {i}")))
            })
        })
        .collect();
    let values = per_image
        .into_iter()
        .flatten()
        .collect::<Result<Vec<f64>>>()?;
    if values.is_empty() {
        return Err(MetricError::NoPositives);
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

fn check_inputs(
    maps: &[f32],
    masks: &[bool],
    n: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<()> {
    if !(fpr_limit > 0.0 && fpr_limit <= 1.0) {
        return Err(MetricError::InvalidFprLimit(fpr_limit));
    }
    if maps.len() != masks.len() {
        return Err(MetricError::LengthMismatch {
            scores: maps.len(),
            labels: masks.len(),
        });
    }
    let expected = n
        .checked_mul(h)
        .and_then(|nh| nh.checked_mul(w))
        .unwrap_or(usize::MAX);
    if expected != maps.len() {
        return Err(MetricError::Shape {
            what: "anomaly maps (n * h * w)",
            expected,
            actual: maps.len(),
        });
    }
    if expected == 0 {
        return Err(MetricError::Empty);
    }
    check_finite(maps)
}

/// Score keys of normal pixels, and of anomalous pixels tagged with their region.
struct ProPixels {
    normal: Vec<u32>,
    anomalous: Vec<Tagged>,
    /// `1 / |r|` per region `r` (the tag).
    inv_size: Vec<f64>,
}

impl ProPixels {
    /// Labels each image's regions (in parallel) and gathers the keys.
    fn collect(maps: &[f32], masks: &[bool], h: usize, w: usize) -> Self {
        let hw = h * w;
        let per_image: Vec<(Vec<u32>, Vec<Tagged>, Vec<u32>)> = maps
            .par_chunks(hw)
            .zip(masks.par_chunks(hw))
            .map(|(map, mask)| {
                let comps = connected_components_8(mask, h, w);
                let mut normal = Vec::with_capacity(hw);
                let mut anomalous = Vec::new();
                for (&s, &label) in map.iter().zip(&comps.labels) {
                    if label == 0 {
                        normal.push(f32_key(s));
                    } else {
                        anomalous.push(Tagged {
                            key: f32_key(s),
                            tag: label - 1,
                        });
                    }
                }
                (normal, anomalous, comps.sizes)
            })
            .collect();
        let total_normal = per_image.iter().map(|p| p.0.len()).sum();
        let mut pixels = ProPixels {
            normal: Vec::with_capacity(total_normal),
            anomalous: Vec::new(),
            inv_size: Vec::new(),
        };
        for (normal, anomalous, sizes) in per_image {
            let offset = pixels.inv_size.len() as u32;
            pixels.normal.extend_from_slice(&normal);
            pixels
                .anomalous
                .extend(anomalous.into_iter().map(|t| Tagged {
                    key: t.key,
                    tag: t.tag + offset,
                }));
            pixels
                .inv_size
                .extend(sizes.iter().map(|&s| 1.0 / f64::from(s)));
        }
        pixels
    }

    /// Normalised area under the PRO curve up to `fpr_limit`.
    fn area(mut self, fpr_limit: f64) -> Result<f64> {
        let regions = self.inv_size.len() as f64;
        if self.inv_size.is_empty() {
            return Err(MetricError::NoPositives);
        }
        let n_normal = self.normal.len();
        if n_normal == 0 {
            return Err(MetricError::NoNegatives);
        }
        if let Some(m) = first_count_above(fpr_limit, n_normal) {
            let cutoff = cutoff_key(&self.normal, m);
            retain_par(&mut self.normal, |&k| k >= cutoff);
            retain_par(&mut self.anomalous, |t| t.key >= cutoff);
        }
        rayon::join(
            || radix::sort(&mut self.normal),
            || radix::sort(&mut self.anomalous),
        );

        // Points only where anomalous pixels enter: between two such thresholds the curve is
        // flat (normal pixels only move the FPR), so one corner point `(FPR above the
        // group, PRO so far)` stands for the whole flat run. Normals: a pointer scan.
        let (normal, anomalous) = (&self.normal, &self.anomalous);
        let fpr = |j: usize| (normal.len() - j) as f64 / n_normal as f64;
        let (mut i, mut j) = (anomalous.len(), normal.len());
        let (mut weight, mut pro) = (Neumaier::default(), 0.0);
        let mut curve = Trapezoid::new(fpr_limit);
        while i > 0 && curve.open() {
            let key = anomalous[i - 1].key;
            while j > 0 && normal[j - 1] > key {
                j -= 1;
            }
            curve.push(fpr(j), pro);
            while i > 0 && anomalous[i - 1].key == key {
                weight.add(self.inv_size[anomalous[i - 1].tag as usize]);
                i -= 1;
            }
            while j > 0 && normal[j - 1] == key {
                j -= 1;
            }
            pro = (weight.value() / regions).min(1.0);
            curve.push(fpr(j), pro);
        }
        curve.push(1.0, pro); // flat to the end: only normal pixels (or none) remain
        Ok(curve.area / fpr_limit)
    }
}

/// The smallest false-positive count `m <= n` with `m / n > limit` (as computed in f64).
fn first_count_above(limit: f64, n: usize) -> Option<usize> {
    let above = |m: usize| m as f64 / n as f64 > limit;
    let mut m = ((limit * n as f64) as usize).min(n);
    while m > 0 && above(m) {
        m -= 1;
    }
    while m <= n && !above(m) {
        m += 1;
    }
    (m <= n).then_some(m)
}

/// A key `<=` the `m`-th largest of `keys` (`1 <= m <= keys.len()`): the lower bound of the
/// 16-bit histogram bucket holding it. Every threshold whose FPR does not exceed the limit
/// is `>=` the `m`-th largest normal score, so nothing below the cutoff can matter.
fn cutoff_key(keys: &[u32], m: usize) -> u32 {
    let hist = keys
        .par_chunks(CHUNK)
        .fold(
            || vec![0usize; 1 << 16],
            |mut h, chunk| {
                chunk.iter().for_each(|&k| h[(k >> 16) as usize] += 1);
                h
            },
        )
        .reduce(
            || vec![0usize; 1 << 16],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut above = 0;
    for bucket in (0..hist.len()).rev() {
        above += hist[bucket];
        if above >= m {
            return (bucket as u32) << 16;
        }
    }
    0
}

/// `v.retain(keep)` in parallel: each chunk compacts in place, then the kept fronts are
/// moved together.
fn retain_par<T: Copy + Send + Sync>(v: &mut Vec<T>, keep: impl Fn(&T) -> bool + Sync) {
    let kept: Vec<usize> = v
        .par_chunks_mut(CHUNK)
        .map(|chunk| {
            let mut k = 0;
            for i in 0..chunk.len() {
                if keep(&chunk[i]) {
                    chunk[k] = chunk[i];
                    k += 1;
                }
            }
            k
        })
        .collect();
    let mut len = 0;
    for (c, &k) in kept.iter().enumerate() {
        v.copy_within(c * CHUNK..c * CHUNK + k, len);
        len += k;
    }
    v.truncate(len);
}

/// The MVTec `trapezoid(x, y, x_max)`: trapezoid rule from `(0, 0)` through the pushed
/// points up to `x = limit`, the last segment cut at `limit` by linear interpolation.
struct Trapezoid {
    limit: f64,
    x: f64,
    y: f64,
    area: f64,
    open: bool,
}

impl Trapezoid {
    fn new(limit: f64) -> Self {
        Trapezoid {
            limit,
            x: 0.0,
            y: 0.0,
            area: 0.0,
            open: true,
        }
    }

    /// Whether points up to the limit may still come.
    fn open(&self) -> bool {
        self.open
    }

    /// Adds the next point (`x` non-decreasing); ignored once past the limit.
    fn push(&mut self, x: f64, y: f64) {
        if !self.open {
            return;
        }
        if x <= self.limit {
            self.area += 0.5 * (y + self.y) * (x - self.x);
            (self.x, self.y) = (x, y);
        } else {
            let y_limit = self.y + (y - self.y) * (self.limit - self.x) / (x - self.x);
            self.area += 0.5 * (y_limit + self.y) * (self.limit - self.x);
            self.open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent straightforward AUPRO: union-find components, then for every distinct
    /// score as a threshold, recount each region's overlap and the false positives from
    /// scratch; trapezoid with interpolation at the limit.
    fn reference(maps: &[f32], masks: &[bool], n: usize, h: usize, w: usize, limit: f64) -> f64 {
        let hw = h * w;
        let mut regions: Vec<Vec<usize>> = Vec::new(); // global pixel indices per region
        for img in 0..n {
            let mut parent: Vec<usize> = (0..hw).collect();
            fn find(p: &mut [usize], mut a: usize) -> usize {
                while p[a] != a {
                    p[a] = p[p[a]];
                    a = p[a];
                }
                a
            }
            let on = |y: i64, x: i64| {
                y >= 0
                    && x >= 0
                    && y < h as i64
                    && x < w as i64
                    && masks[img * hw + y as usize * w + x as usize]
            };
            for y in 0..h as i64 {
                for x in 0..w as i64 {
                    if !on(y, x) {
                        continue;
                    }
                    for (dy, dx) in [(-1, -1), (-1, 0), (-1, 1), (0, -1)] {
                        if on(y + dy, x + dx) {
                            let a = find(&mut parent, (y * w as i64 + x) as usize);
                            let b = find(&mut parent, ((y + dy) * w as i64 + x + dx) as usize);
                            parent[a] = b;
                        }
                    }
                }
            }
            let mut by_root = std::collections::BTreeMap::<usize, Vec<usize>>::new();
            for p in 0..hw {
                if masks[img * hw + p] {
                    let r = find(&mut parent, p);
                    by_root.entry(r).or_default().push(img * hw + p);
                }
            }
            regions.extend(by_root.into_values());
        }
        let normal: Vec<usize> = (0..n * hw).filter(|&p| !masks[p]).collect();
        let mut thresholds = maps.to_vec();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let mut points = vec![(0.0, 0.0)];
        for t in thresholds {
            let fpr = normal.iter().filter(|&&p| maps[p] >= t).count() as f64 / normal.len() as f64;
            let pro = regions
                .iter()
                .map(|r| r.iter().filter(|&&p| maps[p] >= t).count() as f64 / r.len() as f64)
                .sum::<f64>()
                / regions.len() as f64;
            points.push((fpr, pro));
        }
        let mut area = 0.0;
        for seg in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (seg[0], seg[1]);
            if x1 <= limit {
                area += 0.5 * (y0 + y1) * (x1 - x0);
            } else {
                let yl = y0 + (y1 - y0) * (limit - x0) / (x1 - x0);
                area += 0.5 * (y0 + yl) * (limit - x0);
                break;
            }
        }
        area / limit
    }

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    /// `n` images with a few blobs (some touching only diagonally) and maps that are
    /// higher inside the blobs; `levels` quantises scores to create ties (0 = continuous).
    fn synthetic(seed: u64, n: usize, h: usize, w: usize, levels: u64) -> (Vec<f32>, Vec<bool>) {
        let mut s = seed;
        let mut masks = vec![false; n * h * w];
        for img in 0..n {
            for _ in 0..lcg(&mut s) % 4 {
                let (cy, cx) = (lcg(&mut s) as usize % h, lcg(&mut s) as usize % w);
                let (ry, rx) = (1 + lcg(&mut s) as usize % 3, 1 + lcg(&mut s) as usize % 4);
                for y in cy.saturating_sub(ry)..(cy + ry).min(h) {
                    for x in cx.saturating_sub(rx)..(cx + rx).min(w) {
                        if (y + x + lcg(&mut s) as usize) % 5 != 0 {
                            masks[img * h * w + y * w + x] = true;
                        }
                    }
                }
            }
            masks[img * h * w + (img % h) * w + img % w] ^= true; // diagonal specks
        }
        let maps = masks
            .iter()
            .map(|&m| {
                let u = lcg(&mut s) as f64 / (1u64 << 31) as f64 + if m { 0.6 } else { 0.0 };
                if levels > 0 {
                    (u * levels as f64).floor() as f32 / levels as f32
                } else {
                    u as f32
                }
            })
            .collect();
        (maps, masks)
    }

    #[test]
    fn matches_straightforward_reference() {
        for (seed, levels) in [(1, 0), (2, 4), (3, 16), (4, 0), (5, 2)] {
            let (n, h, w) = (4, 13, 11);
            let (maps, masks) = synthetic(seed, n, h, w, levels);
            for limit in [0.01, 0.05, 0.3, 0.5, 1.0] {
                let ours = aupro(&maps, &masks, n, h, w, limit).unwrap();
                let want = reference(&maps, &masks, n, h, w, limit);
                assert!(
                    (ours - want).abs() < 1e-9,
                    "seed {seed} limit {limit}: {ours} vs {want}"
                );
            }
        }
    }

    #[test]
    fn per_image_is_mean_of_single_image_aupro() {
        let (n, h, w) = (5, 9, 10);
        let (maps, mut masks) = synthetic(11, n, h, w, 8);
        masks[2 * h * w..3 * h * w].fill(false); // a normal image: skipped
        let hw = h * w;
        let mut values = Vec::new();
        for i in [0, 1, 3, 4] {
            let (m, k) = (&maps[i * hw..(i + 1) * hw], &masks[i * hw..(i + 1) * hw]);
            values.push(reference(m, k, 1, h, w, 0.3));
        }
        let want = values.iter().sum::<f64>() / 4.0;
        let ours = aupro_per_image(&maps, &masks, n, h, w, 0.3).unwrap();
        assert!((ours - want).abs() < 1e-9);
    }

    #[test]
    fn hand_computed() {
        // One 1x4 image: pixels [normal 0.1, normal 0.3, region A = {0.5, 0.2} connected].
        // Thresholds 0.5: fpr 0, pro 1/2; 0.3: fpr 1/2, pro 1/2; 0.2: 1/2, 1; 0.1: 1, 1.
        let maps = [0.1, 0.3, 0.5, 0.2];
        let masks = [false, false, true, true];
        // limit 1: 0.5 * 0.5 (flat at 1/2) + 0.5 * 1 = 0.75.
        assert!((aupro(&maps, &masks, 1, 1, 4, 1.0).unwrap() - 0.75).abs() < 1e-15);
        // limit 0.25: flat 1/2 over [0, 0.25] -> 0.5.
        assert!((aupro(&maps, &masks, 1, 1, 4, 0.25).unwrap() - 0.5).abs() < 1e-15);
        // Perfect separation: PRO 1 at FPR 0.
        assert!((aupro(&[0.0, 0.0, 1.0, 1.0], &masks, 1, 1, 4, 0.3).unwrap() - 1.0).abs() < 1e-15);
        // Two images, regions of sizes 1 and 3: the small region weighs as much as the big one.
        // img0: [n 0.0, A 0.9]; img1: [B 0.9, B 0.1, B 0.1, n 0.0 ] as 2x2.
        let maps = [0.0, 0.9, 0.9, 0.1, 0.1, 0.0, 0.0, 0.0];
        let masks = [false, true, false, false, true, true, true, false];
        // 2x2 images: img0 = [0.0 0.9; 0.9 0.1] mask [F T; F F] -> A={1}, normals 0.0 .9 .1
        // img1 = [0.1 0.0; 0.0 0.0] mask [T T; T F] -> B size 3 (scores .1 0 0), normal 0.0.
        // Normals: 0.0, 0.9, 0.1, 0.0 (4). t=.9: fpr 1/4, pro (1 + 0)/2; t=.1: fpr 2/4,
        // pro (1 + 1/3)/2; t=0: fpr 1, pro 1.
        let want = (0.5 * (0.0 + 0.5) * 0.25
            + 0.5 * (0.5 + 2.0 / 3.0) * 0.25
            + 0.5 * (2.0 / 3.0 + 1.0) * 0.5)
            / 1.0;
        assert!((aupro(&maps, &masks, 2, 2, 2, 1.0).unwrap() - want).abs() < 1e-15);
    }

    #[test]
    fn cutoff_keeps_every_needed_threshold() {
        // Enough pixels for the radix path, and limits that cut most of them away.
        let (n, h, w) = (3, 64, 64);
        let (maps, masks) = synthetic(9, n, h, w, 0);
        for limit in [1e-4, 0.002, 0.3] {
            let ours = aupro(&maps, &masks, n, h, w, limit).unwrap();
            let want = reference(&maps, &masks, n, h, w, limit);
            assert!(
                (ours - want).abs() < 1e-9,
                "limit {limit}: {ours} vs {want}"
            );
        }
    }

    #[test]
    fn parallel_retain_keeps_order_across_chunks() {
        let mut v: Vec<u32> = (0..(3 * CHUNK as u32 + 17)).collect();
        retain_par(&mut v, |&x| x % 3 == 1 || x > 3 * CHUNK as u32);
        let want: Vec<u32> = (0..(3 * CHUNK as u32 + 17))
            .filter(|&x| x % 3 == 1 || x > 3 * CHUNK as u32)
            .collect();
        assert_eq!(v, want);
    }

    #[test]
    fn first_count_above_is_exact() {
        assert_eq!(first_count_above(0.3, 10), Some(4));
        assert_eq!(first_count_above(0.25, 4), Some(2));
        assert_eq!(first_count_above(1.0, 4), None);
        assert_eq!(first_count_above(1e-9, 3), Some(1));
        for n in 1..200 {
            for limit in [0.01, 0.1, 0.3, 0.7, 0.999] {
                let m = first_count_above(limit, n).unwrap();
                assert!(m as f64 / n as f64 > limit && (m - 1) as f64 / n as f64 <= limit);
            }
        }
    }

    #[test]
    fn errors() {
        let (maps, masks) = ([0.1f32, 0.2, 0.3, 0.4], [false, true, false, false]);
        assert_eq!(
            aupro(&maps, &masks, 1, 2, 2, 0.0),
            Err(MetricError::InvalidFprLimit(0.0))
        );
        assert!(matches!(
            aupro(&maps, &masks, 1, 2, 2, f64::NAN),
            Err(MetricError::InvalidFprLimit(_))
        ));
        assert_eq!(
            aupro(&maps, &masks, 2, 2, 2, 0.3),
            Err(MetricError::Shape {
                what: "anomaly maps (n * h * w)",
                expected: 8,
                actual: 4
            })
        );
        assert_eq!(
            aupro(&maps, &masks[..3], 1, 2, 2, 0.3),
            Err(MetricError::LengthMismatch {
                scores: 4,
                labels: 3
            })
        );
        assert_eq!(aupro(&[], &[], 0, 2, 2, 0.3), Err(MetricError::Empty));
        assert_eq!(
            aupro(&maps, &[false; 4], 1, 2, 2, 0.3),
            Err(MetricError::NoPositives)
        );
        assert_eq!(
            aupro(&maps, &[true; 4], 1, 2, 2, 0.3),
            Err(MetricError::NoNegatives)
        );
        assert_eq!(
            aupro(&[0.0, f32::NAN, 0.0, 0.0], &masks, 1, 2, 2, 0.3),
            Err(MetricError::NonFinite { index: 1 })
        );
        assert_eq!(
            aupro_per_image(&maps, &[false; 4], 1, 2, 2, 0.3),
            Err(MetricError::NoPositives)
        );
        let all_anomalous = [false, false, false, false, true, true, true, true];
        assert_eq!(
            aupro_per_image(&[0.5; 8], &all_anomalous, 2, 2, 2, 0.3),
            Err(MetricError::NoNegatives.within("image 1"))
        );
    }
}
