//! Exact anomaly-detection metrics: AUROC, average precision, F1-max, AUPRO and video frame
//! AUROC, in plain Rust with rayon.
//!
//! # Definitions
//! Labels are `bool`, `true` = anomalous (positive); higher scores mean more anomalous.
//! A threshold `t` predicts "anomalous" for `score >= t`; the thresholds are the distinct
//! scores, so tied scores always move together (one curve point per tied group), as in
//! scikit-learn's `_binary_clf_curve`. With `tp`, `fp` the counts at a threshold and `P`, `N`
//! the class sizes:
//! - [`auroc`]: area under `(fp/N, tp/P)` from `(0, 0)`, straight lines between points, so a
//!   tied positive/negative pair counts 1/2 (= Mann–Whitney `U / PN`); constant scores give
//!   0.5. Equals `sklearn.metrics.roc_auc_score`.
//! - [`average_precision`]: `sum_k (R_k - R_{k-1}) P_k` with `P_k = tp/(tp+fp)`,
//!   `R_k = tp/P`, thresholds from the highest down, no interpolation. Equals
//!   `sklearn.metrics.average_precision_score`.
//! - [`f1_max`]: `max_t 2PR/(P+R)` over the points of `sklearn.metrics.precision_recall_curve`,
//!   with the (lowest) threshold attaining it.
//! - [`aupro`]: MVTec AD's normalised area under the per-region-overlap curve up to an FPR
//!   limit (0.3 in the benchmark, [`MVTEC_FPR_LIMIT`]); regions are 8-connected components,
//!   PRO averages over all regions of the set, FPR pools all normal pixels.
//!   [`aupro_per_image`] is the per-image variant, named so it is never confused with it;
//!   [`aupro_rd4ad`] is RD4AD's official per-image PRO (200 thresholds per image, FPR axis
//!   rescaled), what that paper's PRO column reports.
//! - [`auspro`]: MVTec LOCO AD's saturated PRO (given regions, each with a saturation area;
//!   reported up to FPR 0.05, [`LOCO_FPR_LIMIT`]).
//! - [`frame_auroc_micro`] / [`frame_auroc_macro`]: pooled vs per-video-mean frame AUROC.
//! - [`evaluate_images`]: the image/pixel bundle of an image benchmark.
//!
//! Scores and maps are `f32` or `f64` ([`Score`]); each is ranked in its own precision, so
//! `f64` scores that differ beyond `f32`'s precision stay distinct (the video metrics take
//! `f32` and compute in `f64`).
//!
//! Degenerate inputs are errors ([`MetricError`]): a missing class, NaN/inf scores,
//! mismatched lengths or shapes, empty input. Nothing returns a silent NaN.
//!
//! ```
//! use memad_metrics::{auroc, f1_max, MetricError};
//! let (scores, labels) = ([0.1, 0.4, 0.35, 0.8], [false, false, true, true]);
//! assert_eq!(auroc(&scores, &labels)?, 0.75);
//! assert_eq!(f1_max(&scores, &labels)?.threshold, 0.35);
//! assert_eq!(auroc(&scores, &[false; 4]), Err(MetricError::NoPositives));
//! # Ok::<(), MetricError>(())
//! ```
//!
//! # Cost
//! Scores are mapped to order-preserving integer keys (`u32` for `f32`, `u64` for `f64`) and
//! radix sorted (`O(n)`, rayon parallel histograms), then every metric is one `O(n)` sweep
//! with integer counts and `f64` (compensated) accumulation; [`RankedScores`] shares one sort
//! among AUROC, AP and F1-max. AUPRO labels components once per image (`O(n h w)`) and sweeps
//! the sorted pixels once, carrying each region's weight `1/|r|`; it never relabels per
//! threshold.
//!
//! # References
//! - scikit-learn, `sklearn/metrics/_ranking.py` (`roc_auc_score`,
//!   `average_precision_score`, `precision_recall_curve`); golden values from
//!   `tools/golden_metrics.py` are checked in `tests/golden/`.
//! - P. Bergmann, K. Batzner, M. Fauser, D. Sattlegger, C. Steger, "The MVTec Anomaly
//!   Detection Dataset: A Comprehensive Real-World Dataset for Unsupervised Anomaly
//!   Detection", IJCV 129, 2021 (PRO / AUPRO and its evaluation code,
//!   `pro_curve_util.py`, `generic_util.py`).

mod components;
mod curve;
mod error;
mod images;
mod keys;
mod precision_recall;
mod pro;
mod pro_rd4ad;
mod radix;
mod roc;
mod sum;
mod video;

pub use components::{connected_components_8, Components};
pub use curve::RankedScores;
pub use error::{MetricError, Result};
pub use images::{evaluate_images, ImageMetrics, PixelInputs};
pub use keys::Score;
pub use precision_recall::{average_precision, f1_max, F1Max};
pub use pro::{aupro, aupro_per_image, auspro, SaturatedRegion, LOCO_FPR_LIMIT, MVTEC_FPR_LIMIT};
pub use pro_rd4ad::aupro_rd4ad;
pub use roc::auroc;
pub use video::{frame_auroc_macro, frame_auroc_micro, VideoNormalization};
