//! The image-benchmark bundle (MVTec AD, VisA, ...): image-level AUROC/AP/F1-max and, given
//! anomaly maps and masks, the same at pixel level plus AUPRO, each ranking sorted once.

use crate::curve::RankedScores;
use crate::error::{MetricError, Result};
use crate::keys::Score;
use crate::pro::{aupro, MVTEC_FPR_LIMIT};
use serde::Serialize;

/// Anomaly maps (`f32` or `f64`) and ground-truth masks of the `n` test images, `n * h * w`
/// row-major.
#[derive(Debug, Clone, Copy)]
pub struct PixelInputs<'a, S = f32> {
    pub maps: &'a [S],
    pub masks: &'a [bool],
    pub h: usize,
    pub w: usize,
    /// AUPRO's FPR limit.
    pub fpr_limit: f64,
}

impl<'a, S: Score> PixelInputs<'a, S> {
    /// Maps and masks with the MVTec AUPRO limit, [`MVTEC_FPR_LIMIT`] = 0.3.
    pub fn new(maps: &'a [S], masks: &'a [bool], h: usize, w: usize) -> Self {
        PixelInputs {
            maps,
            masks,
            h,
            w,
            fpr_limit: MVTEC_FPR_LIMIT,
        }
    }
}

/// Image- and (optionally) pixel-level metrics of one test set; serialized with the absent
/// ones left out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImageMetrics {
    pub image_auroc: f64,
    pub image_ap: f64,
    pub image_f1_max: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_auroc: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_ap: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_f1_max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aupro: Option<f64>,
}

impl ImageMetrics {
    /// The computed values by name (`image_auroc`, `image_ap`, `image_f1_max`,
    /// `pixel_auroc`, `pixel_ap`, `pixel_f1_max`, `aupro`), absent ones left out.
    pub fn named(&self) -> Vec<(&'static str, f64)> {
        [
            ("image_auroc", Some(self.image_auroc)),
            ("image_ap", Some(self.image_ap)),
            ("image_f1_max", Some(self.image_f1_max)),
            ("pixel_auroc", self.pixel_auroc),
            ("pixel_ap", self.pixel_ap),
            ("pixel_f1_max", self.pixel_f1_max),
            ("aupro", self.aupro),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.map(|v| (name, v)))
        .collect()
    }
}

/// Image metrics from `scores`/`labels` (`[N]`, `true` = anomalous) and, with `pixels`,
/// pixel AUROC/AP/F1-max (pixels pooled over the set) and AUPRO ([`aupro`]). Scores and
/// maps are `f32` or `f64`, ranked in their own precision.
///
/// # Errors
/// `Shape` if the maps do not hold `N * h * w` values; otherwise the metric errors, inside
/// `In { context: "image level" | "pixel level" }` (see [`MetricError::root`]).
pub fn evaluate_images<S: Score>(
    scores: &[S],
    labels: &[bool],
    pixels: Option<PixelInputs<'_, S>>,
) -> Result<ImageMetrics> {
    let image = RankedScores::new(scores, labels).map_err(|e| e.within("image level"))?;
    let mut metrics = ImageMetrics {
        image_auroc: image.auroc(),
        image_ap: image.average_precision(),
        image_f1_max: image.f1_max().f1,
        pixel_auroc: None,
        pixel_ap: None,
        pixel_f1_max: None,
        aupro: None,
    };
    drop(image);
    if let Some(p) = pixels {
        let n = scores.len();
        let expected = n
            .checked_mul(p.h)
            .and_then(|x| x.checked_mul(p.w))
            .unwrap_or(usize::MAX);
        if p.maps.len() != expected {
            return Err(MetricError::Shape {
                what: "anomaly maps (N * h * w)",
                expected,
                actual: p.maps.len(),
            });
        }
        let (ranked, pro) = rayon::join(
            || RankedScores::new(p.maps, p.masks),
            || aupro(p.maps, p.masks, n, p.h, p.w, p.fpr_limit),
        );
        let ranked = ranked.map_err(|e| e.within("pixel level"))?;
        metrics.pixel_auroc = Some(ranked.auroc());
        metrics.pixel_ap = Some(ranked.average_precision());
        metrics.pixel_f1_max = Some(ranked.f1_max().f1);
        metrics.aupro = Some(pro.map_err(|e| e.within("pixel level"))?);
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{average_precision, f1_max};

    #[test]
    fn bundles_the_individual_metrics() {
        let scores = [0.1, 0.4, 0.35, 0.8];
        let labels = [false, false, true, true];
        let maps: Vec<f32> = (0..16).map(|i| (i * 7 % 16) as f32 / 16.0).collect();
        let masks: Vec<bool> = (0..16).map(|i| i % 4 == 3 || i == 6).collect();
        let m = evaluate_images(
            &scores,
            &labels,
            Some(PixelInputs::new(&maps, &masks, 2, 2)),
        )
        .unwrap();
        assert_eq!(m.image_auroc, 0.75);
        assert_eq!(m.image_ap, average_precision(&scores, &labels).unwrap());
        assert_eq!(m.image_f1_max, 0.8);
        assert_eq!(m.pixel_auroc, crate::auroc(&maps, &masks).ok());
        assert_eq!(m.pixel_ap, average_precision(&maps, &masks).ok());
        assert_eq!(m.pixel_f1_max, f1_max(&maps, &masks).ok().map(|f| f.f1));
        assert_eq!(m.aupro, aupro(&maps, &masks, 4, 2, 2, 0.3).ok());
        let names: Vec<&str> = m.named().iter().map(|x| x.0).collect();
        assert_eq!(
            names,
            [
                "image_auroc",
                "image_ap",
                "image_f1_max",
                "pixel_auroc",
                "pixel_ap",
                "pixel_f1_max",
                "aupro"
            ]
        );
        let image_only = evaluate_images(&scores, &labels, None).unwrap();
        assert_eq!(image_only.named().len(), 3);
        assert_eq!(image_only.pixel_ap, None);
    }

    #[test]
    fn errors_say_where() {
        let (scores, labels) = ([0.1, 0.4], [false, true]);
        let maps = [0.0f32; 8];
        let masks = [false; 8];
        let e = evaluate_images(
            &scores,
            &labels,
            Some(PixelInputs::new(&maps, &masks, 2, 2)),
        )
        .unwrap_err();
        assert_eq!(e, MetricError::NoPositives.within("pixel level"));
        assert_eq!(e.root(), &MetricError::NoPositives);
        let e = evaluate_images(
            &scores,
            &labels,
            Some(PixelInputs::new(&maps, &masks, 3, 2)),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            MetricError::Shape {
                expected: 12,
                actual: 8,
                ..
            }
        ));
        let e = evaluate_images(&scores, &[true, true], None).unwrap_err();
        assert_eq!(e.root(), &MetricError::NoNegatives);
    }
}
