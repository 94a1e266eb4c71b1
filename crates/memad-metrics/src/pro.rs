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
//!
//! [`auspro`] is MVTec LOCO AD's saturated variant (Bergmann et al., IJCV 2022, Sec. 5.1;
//! the official `mvtec_loco_ad_evaluation` code, `src/metrics.py`, `src/image.py`): the
//! regions are given (one ground-truth channel each, which may overlap and need not be
//! connected), each with a saturation area `s_r`, and
//! `sPRO(t) = (1/R) sum_r min(|{p in r : s_p > t}| / s_r, 1)`; FPR pools every pixel outside
//! all regions of all images. PRO is the case `s_r = |r|`, so both run through the same
//! sweep, which counts each region's pixels and adds `1/s_r` per pixel until the region
//! saturates. The curve points are those of every distinct threshold either way, so the
//! official `>` and this module's `>=` give the same curve. Deviation: the official script
//! evaluates the curve at a finite set of thresholds drawn from the scores; this is the
//! exact curve, which that sampling approaches.

use rayon::prelude::*;

use crate::components::connected_components_8;
use crate::error::{MetricError, Result};
use crate::keys::{check_finite, Key, Score};
use crate::radix::{self, RadixKey, Tagged};
use crate::sum::Neumaier;

/// The FPR limit of the MVTec AD benchmark.
pub const MVTEC_FPR_LIMIT: f64 = 0.3;

/// Elements per parallel histogram task.
const CHUNK: usize = 1 << 16;

/// AUPRO, MVTec definition: `maps` and `masks` are `n` images of `h*w` pixels, row-major,
/// concatenated. Regions = 8-connected components of each ground-truth mask; per
/// threshold, PRO = mean over all regions of the set of the overlap fraction, FPR = false
/// positives over all normal pixels (pooled). PRO is integrated over FPR in
/// `[0, fpr_limit]` (interpolating the end point) and divided by `fpr_limit`. `f32` or
/// `f64` maps, compared in their own precision.
///
/// # Errors
/// `InvalidFprLimit` unless `0 < fpr_limit <= 1`; `LengthMismatch` (maps vs masks);
/// `Shape` unless both hold `n*h*w` values; `Empty`; `NonFinite`; `NoPositives` without
/// any anomalous pixel; `NoNegatives` without any normal pixel.
pub fn aupro<S: Score>(
    maps: &[S],
    masks: &[bool],
    n: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<f64> {
    check_inputs(maps, masks, n, h, w, fpr_limit)?;
    ProPixels::collect(maps, masks, h, w).area(fpr_limit)
}

/// The FPR limit MVTec LOCO AD reports its AU-sPRO at.
pub const LOCO_FPR_LIMIT: f64 = 0.05;

/// One ground-truth region of [`auspro`]: its pixels and saturation area.
#[derive(Debug, Clone, PartialEq)]
pub struct SaturatedRegion {
    /// The image it belongs to (index into the `n` maps).
    pub image: usize,
    /// Its pixels, row-major indices into the image's `h*w`.
    pub pixels: Vec<u32>,
    /// `s_r`: the overlap, in pixels, at which the region counts as fully found.
    pub saturation: f64,
}

/// AU-sPRO, MVTec LOCO AD's normalised area under the saturated per-region-overlap curve
/// up to `fpr_limit` ([`LOCO_FPR_LIMIT`] in the benchmark). `maps` are `n` images of `h*w`
/// pixels; `regions` the ground-truth channels of all images; every pixel outside all
/// regions is a normal pixel for the FPR.
///
/// # Errors
/// As [`aupro`]; `InvalidRegion` when a region names an image `>= n` or a pixel `>= h*w`,
/// has no pixel, or a saturation area that is not finite and positive; `NoPositives`
/// without regions.
pub fn auspro<S: Score>(
    maps: &[S],
    regions: &[SaturatedRegion],
    n: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<f64> {
    let hw = h * w;
    let expected = n.saturating_mul(hw);
    if expected != maps.len() {
        return Err(MetricError::Shape {
            what: "anomaly maps (n * h * w)",
            expected,
            actual: maps.len(),
        });
    }
    let mut in_region = vec![false; expected];
    for (index, r) in regions.iter().enumerate() {
        let invalid = |reason: String| Err(MetricError::InvalidRegion { index, reason });
        if r.image >= n {
            return invalid(format!("image {} of {n}", r.image));
        }
        if let Some(p) = r.pixels.iter().find(|&&p| p as usize >= hw) {
            return invalid(format!("pixel {p} outside the {h}x{w} map"));
        }
        if r.pixels.is_empty() {
            return invalid("no pixel".into());
        }
        if !(r.saturation.is_finite() && r.saturation > 0.0) {
            return invalid(format!("saturation area {} (must be > 0)", r.saturation));
        }
        for &p in &r.pixels {
            in_region[r.image * hw + p as usize] = true;
        }
    }
    check_inputs(maps, &in_region, n, h, w, fpr_limit)?;
    let normal: Vec<S::Key> = maps
        .par_iter()
        .zip(in_region.par_iter())
        .filter(|(_, &a)| !a)
        .map(|(&s, _)| s.key())
        .collect();
    let mut anomalous = Vec::new();
    for (tag, r) in regions.iter().enumerate() {
        let base = r.image * hw;
        anomalous.extend(r.pixels.iter().map(|&p| Tagged {
            key: maps[base + p as usize].key(),
            tag: tag as u32,
        }));
    }
    ProPixels {
        normal,
        anomalous,
        saturation: regions.iter().map(|r| r.saturation).collect(),
    }
    .area(fpr_limit)
}

/// The per-image variant some papers use: the mean, over the images with at least one
/// anomalous pixel, of each image's own [`aupro`] (its regions, its normal pixels).
/// Normal images are skipped. Not comparable with [`aupro`]'s pooled numbers.
///
/// # Errors
/// As [`aupro`]; `NoPositives` if no image has an anomalous pixel; `NoNegatives` (inside
/// `In { context: "image i" }`) if an anomalous image has no normal pixel.
pub fn aupro_per_image<S: Score>(
    maps: &[S],
    masks: &[bool],
    n: usize,
    h: usize,
    w: usize,
    fpr_limit: f64,
) -> Result<f64> {
    check_inputs(maps, masks, n, h, w, fpr_limit)?;
    mean_over_anomalous_images(maps, masks, h * w, |map, mask| {
        ProPixels::collect(map, mask, h, w).area(fpr_limit)
    })
}

/// The mean of `area(map, mask)` over the images (`hw` pixels each) with an anomalous pixel,
/// computed in parallel over images; an image's error names it (`image i`), the first in
/// image order when several fail.
///
/// # Errors
/// `NoPositives` if no image has an anomalous pixel; the first image's error.
pub(crate) fn mean_over_anomalous_images<S: Score>(
    maps: &[S],
    masks: &[bool],
    hw: usize,
    area: impl Fn(&[S], &[bool]) -> Result<f64> + Sync,
) -> Result<f64> {
    let per_image: Vec<Option<Result<f64>>> = maps
        .par_chunks(hw)
        .zip(masks.par_chunks(hw))
        .enumerate()
        .map(|(i, (map, mask))| {
            (mask.iter().any(|&m| m))
                .then(|| area(map, mask).map_err(|e| e.within(format!("image {i}"))))
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

/// The checks every PRO variant makes of its inputs (sizes, finiteness, the FPR limit).
pub(crate) fn check_inputs<S: Score>(
    maps: &[S],
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

/// One image's normal keys, anomalous keys tagged with their region (numbered within the
/// image) and its regions' sizes.
type ImagePixels<K> = (Vec<K>, Vec<Tagged<K>>, Vec<u32>);

/// Score keys of normal pixels, and of anomalous pixels tagged with their region.
struct ProPixels<K> {
    normal: Vec<K>,
    anomalous: Vec<Tagged<K>>,
    /// `s_r` per region `r` (the tag): `|r|` for PRO.
    saturation: Vec<f64>,
}

impl<K: Key> ProPixels<K> {
    /// Labels each image's regions (in parallel) and gathers the keys.
    fn collect<S: Score<Key = K>>(maps: &[S], masks: &[bool], h: usize, w: usize) -> Self {
        let hw = h * w;
        let per_image: Vec<ImagePixels<K>> = maps
            .par_chunks(hw)
            .zip(masks.par_chunks(hw))
            .map(|(map, mask)| {
                let comps = connected_components_8(mask, h, w);
                let mut normal = Vec::with_capacity(hw);
                let mut anomalous = Vec::new();
                for (&s, &label) in map.iter().zip(&comps.labels) {
                    if label == 0 {
                        normal.push(s.key());
                    } else {
                        anomalous.push(Tagged {
                            key: s.key(),
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
            saturation: Vec::new(),
        };
        for (normal, anomalous, sizes) in per_image {
            let offset = pixels.saturation.len() as u32;
            pixels.normal.extend_from_slice(&normal);
            pixels
                .anomalous
                .extend(anomalous.into_iter().map(|t| Tagged {
                    key: t.key,
                    tag: t.tag + offset,
                }));
            pixels
                .saturation
                .extend(sizes.iter().map(|&s| f64::from(s)));
        }
        pixels
    }

    /// Normalised area under the PRO curve up to `fpr_limit`.
    fn area(mut self, fpr_limit: f64) -> Result<f64> {
        let regions = self.saturation.len() as f64;
        if self.saturation.is_empty() {
            return Err(MetricError::NoPositives);
        }
        let n_normal = self.normal.len();
        if n_normal == 0 {
            return Err(MetricError::NoNegatives);
        }
        if let Some(m) = first_count_above(fpr_limit, n_normal) {
            let cutoff = cutoff_key(&self.normal, m);
            retain_par(&mut self.normal, |k| k.radix_key() >= cutoff);
            retain_par(&mut self.anomalous, |t| t.radix_key() >= cutoff);
        }
        rayon::join(
            || radix::sort(&mut self.normal),
            || radix::sort(&mut self.anomalous),
        );

        // Points only where anomalous pixels enter: between two such thresholds the curve is
        // flat (normal pixels only move the FPR), so one corner point `(FPR above the
        // group, PRO so far)` stands for the whole flat run. Normals: a pointer scan. Each
        // region's pixels found so far are counted; a pixel adds `1/s_r` until the region
        // saturates (PRO: `s_r = |r|`, never reached before its last pixel).
        let mut found = vec![0u32; self.saturation.len()];
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
                let r = anomalous[i - 1].tag as usize;
                let s = self.saturation[r];
                let before = f64::from(found[r]);
                found[r] += 1;
                if before + 1.0 <= s {
                    weight.add(1.0 / s);
                } else if before < s {
                    weight.add(1.0 - before / s); // the last step up to saturation
                }
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

/// A radix key `<=` that of the `m`-th largest of `keys` (`1 <= m <= keys.len()`): the
/// lower bound of the histogram bucket of the key's top 16 bits holding it. Every threshold
/// whose FPR does not exceed the limit is `>=` the `m`-th largest normal score, so nothing
/// below the cutoff can matter.
fn cutoff_key<K: Key>(keys: &[K], m: usize) -> u64 {
    let shift = K::KEY_BITS - 16;
    let hist = keys
        .par_chunks(CHUNK)
        .fold(
            || vec![0usize; 1 << 16],
            |mut h, chunk| {
                chunk
                    .iter()
                    .for_each(|k| h[(k.radix_key() >> shift) as usize] += 1);
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
            return (bucket as u64) << shift;
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
        curve_area(&points, limit)
    }

    /// Trapezoid rule through `points` (from `(0, 0)`) up to `x = limit`, the last segment
    /// cut by linear interpolation, divided by `limit`.
    fn curve_area(points: &[(f64, f64)], limit: f64) -> f64 {
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

    /// Straightforward AU-sPRO as the official LOCO code computes it: for every distinct
    /// score `t` (binary map `s > t`, plus the point above the maximum), each region's
    /// `min(tp / s_r, 1)` and the FPR over pixels outside every region, recounted from
    /// scratch; trapezoid with interpolation at the limit.
    fn spro_reference(maps: &[f32], regions: &[SaturatedRegion], hw: usize, limit: f64) -> f64 {
        let mut outside = vec![true; maps.len()];
        for r in regions {
            for &p in &r.pixels {
                outside[r.image * hw + p as usize] = false;
            }
        }
        let normal: Vec<usize> = (0..maps.len()).filter(|&p| outside[p]).collect();
        let mut thresholds = maps.to_vec();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let mut points = vec![(0.0, 0.0)];
        for i in 0..thresholds.len() {
            // `> next lower score` selects the same pixels as `>= this score`.
            let above = |v: f32| match thresholds.get(i + 1) {
                Some(&lower) => v > lower,
                None => true,
            };
            let fpr =
                normal.iter().filter(|&&p| above(maps[p])).count() as f64 / normal.len() as f64;
            let spro = regions
                .iter()
                .map(|r| {
                    let tp = (r.pixels.iter())
                        .filter(|&&p| above(maps[r.image * hw + p as usize]))
                        .count() as f64;
                    (tp / r.saturation).min(1.0)
                })
                .sum::<f64>()
                / regions.len() as f64;
            points.push((fpr, spro));
        }
        curve_area(&points, limit)
    }

    /// Regions cut from the masks of [`synthetic`]: each image's anomalous pixels split in
    /// two overlapping channels (by column), saturating at a fraction or a pixel count.
    fn spro_regions(masks: &[bool], n: usize, hw: usize, w: usize) -> Vec<SaturatedRegion> {
        let mut regions = Vec::new();
        for image in 0..n {
            let on: Vec<u32> = (0..hw as u32)
                .filter(|&p| masks[image * hw + p as usize])
                .collect();
            let left: Vec<u32> = on
                .iter()
                .copied()
                .filter(|&p| (p as usize % w) < w / 2 + 1)
                .collect();
            let right: Vec<u32> = on
                .iter()
                .copied()
                .filter(|&p| (p as usize % w) >= w / 2)
                .collect();
            for (k, pixels) in [left, right].into_iter().enumerate() {
                if pixels.is_empty() {
                    continue;
                }
                let area = pixels.len() as f64;
                let saturation = if k == 0 {
                    (0.4 * area).floor().max(1.0)
                } else {
                    area.min(3.0)
                };
                regions.push(SaturatedRegion {
                    image,
                    pixels,
                    saturation,
                });
            }
        }
        regions
    }

    #[test]
    fn auspro_matches_the_official_definition() {
        for (seed, levels) in [(1, 0), (2, 4), (3, 16), (7, 0)] {
            let (n, h, w) = (4, 13, 11);
            let (maps, masks) = synthetic(seed, n, h, w, levels);
            let regions = spro_regions(&masks, n, h * w, w);
            for limit in [0.01, LOCO_FPR_LIMIT, 0.3, 1.0] {
                let ours = auspro(&maps, &regions, n, h, w, limit).unwrap();
                let want = spro_reference(&maps, &regions, h * w, limit);
                assert!(
                    (ours - want).abs() < 1e-9,
                    "seed {seed} limit {limit}: {ours} vs {want}"
                );
            }
        }
    }

    #[test]
    fn auspro_with_full_saturation_is_aupro() {
        // One region per connected component, saturating at its size: PRO itself.
        let (n, h, w) = (4, 13, 11);
        let (maps, masks) = synthetic(5, n, h, w, 0);
        let mut regions = Vec::new();
        for image in 0..n {
            let comps = connected_components_8(&masks[image * h * w..(image + 1) * h * w], h, w);
            for (label, &size) in comps.sizes.iter().enumerate() {
                let pixels: Vec<u32> = (0..(h * w) as u32)
                    .filter(|&p| comps.labels[p as usize] == label as u32 + 1)
                    .collect();
                assert_eq!(pixels.len(), size as usize);
                regions.push(SaturatedRegion {
                    image,
                    pixels,
                    saturation: f64::from(size),
                });
            }
        }
        for limit in [0.05, 0.3] {
            let spro = auspro(&maps, &regions, n, h, w, limit).unwrap();
            let pro = aupro(&maps, &masks, n, h, w, limit).unwrap();
            assert!((spro - pro).abs() < 1e-12, "{spro} vs {pro}");
        }
    }

    #[test]
    fn auspro_saturates_hand_computed() {
        // One 1x6 image: normals 0.1, 0.2; region {0.9, 0.8, 0.15, 0.05}.
        let maps = [0.1, 0.2, 0.9, 0.8, 0.15, 0.05];
        let region = |saturation| SaturatedRegion {
            image: 0,
            pixels: vec![2, 3, 4, 5],
            saturation,
        };
        let area = |s: f64, limit| auspro(&maps, &[region(s)], 1, 1, 6, limit).unwrap();
        // s = |r| = 4 (PRO): 2/4 found at FPR 0, 3/4 at FPR 1/2, all at FPR 1.
        assert!((area(4.0, 1.0) - (0.5 * 0.5 + 0.5 * 0.75)).abs() < 1e-15);
        // s = 2: saturated by the two pixels above every normal one.
        assert!((area(2.0, 0.05) - 1.0).abs() < 1e-15);
        assert!((area(2.0, 1.0) - 1.0).abs() < 1e-15);
        // s = 3: 2/3 at FPR 0, saturated by the third pixel at FPR 1/2.
        assert!((area(3.0, 0.05) - 2.0 / 3.0).abs() < 1e-15);
        assert!((area(3.0, 1.0) - (0.5 * 2.0 / 3.0 + 0.5)).abs() < 1e-15);
        // A fractional saturation (relative thresholds): 1.5 pixels, reached by the second.
        assert!((area(1.5, 0.05) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn auspro_rejects_bad_regions() {
        let maps = [0.1, 0.2, 0.9, 0.8];
        let r = |image, pixels: Vec<u32>, saturation| SaturatedRegion {
            image,
            pixels,
            saturation,
        };
        let err = |regions: &[SaturatedRegion]| auspro(&maps, regions, 1, 2, 2, 0.05).unwrap_err();
        assert!(matches!(
            err(&[r(1, vec![0], 1.0)]),
            MetricError::InvalidRegion { index: 0, .. }
        ));
        assert!(matches!(
            err(&[r(0, vec![2], 1.0), r(0, vec![4], 1.0)]),
            MetricError::InvalidRegion { index: 1, .. }
        ));
        assert!(matches!(
            err(&[r(0, vec![], 1.0)]),
            MetricError::InvalidRegion { .. }
        ));
        assert!(matches!(
            err(&[r(0, vec![1], 0.0)]),
            MetricError::InvalidRegion { .. }
        ));
        assert_eq!(err(&[]), MetricError::NoPositives);
        assert!(matches!(
            auspro(&maps[..3], &[r(0, vec![1], 1.0)], 1, 2, 2, 0.05),
            Err(MetricError::Shape { .. })
        ));
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
    fn f64_maps_give_the_f32_result_and_keep_their_precision() {
        // Same values (exact in both types): same AUPRO, also through the cutoff (u64 keys).
        let (n, h, w) = (3, 64, 64);
        let (maps, masks) = synthetic(9, n, h, w, 0);
        let wide: Vec<f64> = maps.iter().map(|&s| f64::from(s)).collect();
        for limit in [1e-4, 0.3, 1.0] {
            assert_eq!(
                aupro(&wide, &masks, n, h, w, limit),
                aupro(&maps, &masks, n, h, w, limit),
                "limit {limit}"
            );
        }
        // Anomalous pixels 1e-10 above the normal ones: found first in f64, tied in f32.
        let masks = [false, false, true, true];
        let wide = [1.0, 1.0, 1.0 + 1e-10, 1.0 + 2e-10];
        assert_eq!(aupro(&wide, &masks, 1, 2, 2, 1.0), Ok(1.0));
        let narrow = wide.map(|s| s as f32);
        assert_eq!(aupro(&narrow, &masks, 1, 2, 2, 1.0), Ok(0.5));
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
        assert_eq!(
            aupro::<f32>(&[], &[], 0, 2, 2, 0.3),
            Err(MetricError::Empty)
        );
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
