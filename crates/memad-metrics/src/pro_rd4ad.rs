//! The PRO of RD4AD's official evaluation (Deng & Li, CVPR 2022; `test.py`, `compute_pro`
//! and `evaluation` of hq-deng/RD4AD), which the paper's PRO column (93.9 on MVTec AD) uses.
//! It is not MVTec AD's pooled AUPRO ([`crate::aupro`]) and gives other numbers.
//!
//! For each test image with at least one anomalous pixel, on its own:
//! - thresholds `t_i = min + i * d` below `max` (the map's own extremes), `d = (max - min) /
//!   200`, spaced as `numpy.arange(min, max, d)` spaces them (`t_1 = min + d`, then
//!   `min + i * ((min + d) - min)`);
//! - at each, `PRO(t)` = the mean over the mask's 8-connected regions of the share of the
//!   region's pixels with `s > t`, and `FPR(t)` = the share of the image's normal pixels with
//!   `s > t`;
//! - the points with `FPR < 0.3` are kept, their FPR divided by the largest kept FPR, and the
//!   area under `PRO` over that rescaled FPR taken with the trapezoid rule
//!   (`sklearn.metrics.auc`).
//!
//! The metric is the mean of these areas over the anomalous images. Normal images are left
//! out. Cost: `O(200 * h * w)` per anomalous image, in parallel over images.
//!
//! Deviations, for inputs where the official code fails, each giving an area of 0: a constant
//! map or one whose range overflows f64 (no threshold, numpy raises), no threshold with
//! `FPR < 0.3` (normal pixels tied at the map's maximum) or only one (`auc` needs two
//! points), and kept FPRs that are all 0 (0 / 0, NaN).

use crate::components::connected_components_8;
use crate::error::{MetricError, Result};
use crate::keys::Score;
use crate::pro::{check_inputs, mean_over_anomalous_images};

/// Thresholds per image.
const THRESHOLDS: usize = 200;
/// Points with a false-positive rate below this are kept.
const FPR_LIMIT: f64 = 0.3;

/// The mean over the anomalous images of RD4AD's per-image PRO area (see the module doc).
/// `maps` and `masks` are `n` row-major `h x w` images.
///
/// # Errors
/// `LengthMismatch` or `Shape` for inconsistent sizes, `Empty`, `NonFinite`; `NoPositives` if
/// no image has an anomalous pixel; `NoNegatives` (inside `In { context: "image i" }`) if an
/// anomalous image has no normal pixel.
pub fn aupro_rd4ad<S: Score>(
    maps: &[S],
    masks: &[bool],
    n: usize,
    h: usize,
    w: usize,
) -> Result<f64> {
    check_inputs(maps, masks, n, h, w, FPR_LIMIT)?;
    mean_over_anomalous_images(maps, masks, h * w, |map, mask| image_area(map, mask, h, w))
}

/// One anomalous image's area under its rescaled PRO curve.
fn image_area<S: Score>(map: &[S], mask: &[bool], h: usize, w: usize) -> Result<f64> {
    let normal = mask.iter().filter(|&&m| !m).count();
    if normal == 0 {
        return Err(MetricError::NoNegatives);
    }
    let map: Vec<f64> = map.iter().map(|&s| s.to_f64()).collect();
    let components = connected_components_8(mask, h, w);
    let (lo, hi) = map
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
            (lo.min(s), hi.max(s))
        });
    // (FPR, PRO) at each threshold kept, in increasing threshold order.
    let mut curve: Vec<(f64, f64)> = Vec::new();
    for t in thresholds(lo, hi) {
        let mut hits = vec![0u32; components.sizes.len()];
        let mut false_positives = 0usize;
        for (&s, &label) in map.iter().zip(&components.labels) {
            if s > t {
                match label {
                    0 => false_positives += 1,
                    l => hits[l as usize - 1] += 1,
                }
            }
        }
        let fpr = false_positives as f64 / normal as f64;
        if fpr < FPR_LIMIT {
            let shares = hits.iter().zip(&components.sizes);
            let pro = shares
                .map(|(&k, &size)| f64::from(k) / f64::from(size))
                .sum::<f64>()
                / components.sizes.len() as f64;
            curve.push((fpr, pro));
        }
    }
    let largest = curve.iter().fold(0.0f64, |m, &(fpr, _)| m.max(fpr));
    if largest == 0.0 || curve.len() < 2 {
        return Ok(0.0);
    }
    // The FPR falls as the threshold rises: the trapezoids run right to left.
    let area = curve
        .windows(2)
        .map(|p| (p[0].0 - p[1].0) / largest * (p[0].1 + p[1].1) / 2.0)
        .sum();
    Ok(area)
}

/// `numpy.arange(lo, hi, (hi - lo) / 200)` as numpy computes it: `lo`, `lo + d`, then
/// `lo + i * ((lo + d) - lo)`, `ceil((hi - lo) / d)` values; none for a constant map.
fn thresholds(lo: f64, hi: f64) -> Vec<f64> {
    let d = (hi - lo) / THRESHOLDS as f64;
    if d <= 0.0 {
        return Vec::new();
    }
    let count = ((hi - lo) / d).ceil() as usize;
    let step = (lo + d) - lo;
    (0..count)
        .map(|i| match i {
            0 => lo,
            1 => lo + d,
            _ => lo + i as f64 * step,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_numpy_arange() {
        let t = thresholds(0.0, 1.0);
        assert_eq!(t.len(), 200);
        assert_eq!((t[0], t[1]), (0.0, 0.005));
        assert!((t[199] - 0.995).abs() < 1e-12);
        assert!(thresholds(2.0, 2.0).is_empty());
    }

    #[test]
    fn a_separated_region_scores_one_and_normal_images_are_left_out() {
        // Image 0: a 2-pixel region above every normal pixel; image 1: normal.
        let maps = [
            0.9f32, 0.8, 0.1, 0.2, 0.3, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
        ];
        let masks = [
            true, true, false, false, false, false, false, false, false, false, false, false,
        ];
        let area = aupro_rd4ad(&maps, &masks, 2, 2, 3).unwrap();
        assert!((area - 1.0).abs() < 1e-12, "{area}");
        assert_eq!(
            aupro_rd4ad(&maps[6..], &masks[6..], 1, 2, 3),
            Err(MetricError::NoPositives)
        );
        let err = aupro_rd4ad(&maps[..2], &masks[..2], 1, 1, 2).unwrap_err();
        assert_eq!(err, MetricError::NoNegatives.within("image 0"));
    }

    /// Curves the official code cannot integrate (it raises) have area +0, not -0 or NaN.
    #[test]
    fn curves_of_fewer_than_two_points_have_area_zero() {
        let pixels = |maps: &[f64]| {
            let mut masks = vec![false; maps.len()];
            masks[0] = true;
            aupro_rd4ad(maps, &masks, 1, 1, maps.len())
        };
        // One threshold with FPR < 0.3 (the 1.0 pixel alone above 0.993 + d).
        let one = [0.999, 1.0, 0.993, 0.993, 0.993, 0.1, 0.2, 0.3, 0.4, 0.0];
        // None: three of eight normal pixels tie at the maximum.
        let none = [0.5, 1.0, 1.0, 1.0, 0.1, 0.2, 0.3, 0.4, 0.0];
        // A range past f64::MAX: no thresholds.
        let overflow = [0.5, -1e308, 0.2, 1e308];
        for maps in [&one[..], &none, &overflow] {
            let area = pixels(maps).unwrap();
            assert!(area == 0.0 && area.is_sign_positive(), "{maps:?}: {area}");
        }
    }
}
