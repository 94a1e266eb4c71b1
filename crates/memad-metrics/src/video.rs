//! Frame-level AUROC for video anomaly detection (UCSD Ped2, CUHK Avenue, ShanghaiTech).
//!
//! Two conventions exist in the literature and give different numbers, so both are named:
//! *micro* pools the frames of all videos into one AUROC (the common convention, e.g. MNAD,
//! MemAE); *macro* averages per-video AUROCs. Scores are often min-max normalised per video
//! first ([`VideoNormalization::MinMaxPerVideo`]), which changes micro but not macro AUROC.
//! Normalisation is computed in `f64` (`(s - min) / (max - min)`; a constant video maps to 0);
//! scores are `f32` or `f64` ([`Score`]).

use rayon::prelude::*;

use crate::curve::{split_by_label, Ranking};
use crate::error::{MetricError, Result};
use crate::keys::{check_finite, check_lengths, f64_key, Score};

/// Per-video score normalisation before AUROC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoNormalization {
    /// Raw scores.
    #[default]
    None,
    /// `(s - min) / (max - min)` within each video; a constant video becomes all zeros.
    MinMaxPerVideo,
}

/// Frame AUROC over the frames of all videos pooled (micro average).
/// `videos`: per video `(scores, labels)`, `true` = abnormal frame.
///
/// # Errors
/// `Empty` for no videos; per video (inside `In { context: "video i" }`) `LengthMismatch`,
/// `Empty`, `NonFinite`; `NoPositives`/`NoNegatives` if the pooled frames lack a class.
pub fn frame_auroc_micro<S: Score>(
    videos: &[(Vec<S>, Vec<bool>)],
    norm: VideoNormalization,
) -> Result<f64> {
    if videos.is_empty() {
        return Err(MetricError::Empty);
    }
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (i, (scores, labels)) in videos.iter().enumerate() {
        let scores =
            checked_normalized(scores, labels, norm).map_err(|e| e.within(format!("video {i}")))?;
        let (p, n) = split_by_label(&scores, labels, f64_key);
        pos.extend(p);
        neg.extend(n);
    }
    Ok(Ranking::new(pos, neg)?.auroc())
}

/// Mean of the per-video frame AUROCs over the videos that contain both normal and
/// abnormal frames (macro average). Videos with a single class have no AUROC and are
/// skipped rather than counted as 0, 0.5 or 1. Not every paper's macro figure is this one:
/// Jigsaw-VAD's and SSMTL's evaluation code pads every video with a normal frame scored 0
/// and an abnormal one scored 1 and averages over all videos, which counts normal-only
/// videos and raises the figure.
///
/// # Errors
/// `Empty` for no videos; per video (inside `In`) `LengthMismatch`, `Empty`, `NonFinite`;
/// `NoVideoWithBothClasses` when no video is eligible.
pub fn frame_auroc_macro<S: Score>(
    videos: &[(Vec<S>, Vec<bool>)],
    norm: VideoNormalization,
) -> Result<f64> {
    if videos.is_empty() {
        return Err(MetricError::Empty);
    }
    let per_video = videos
        .par_iter()
        .enumerate()
        .map(|(i, (scores, labels))| {
            let scores = checked_normalized(scores, labels, norm)
                .map_err(|e| e.within(format!("video {i}")))?;
            let (pos, neg) = split_by_label(&scores, labels, f64_key);
            if pos.is_empty() || neg.is_empty() {
                return Ok(None);
            }
            Ok(Some(Ranking::new(pos, neg)?.auroc()))
        })
        .collect::<Result<Vec<Option<f64>>>>()?;
    let aurocs: Vec<f64> = per_video.into_iter().flatten().collect();
    if aurocs.is_empty() {
        return Err(MetricError::NoVideoWithBothClasses);
    }
    Ok(aurocs.iter().sum::<f64>() / aurocs.len() as f64)
}

/// Checks one video and returns its (normalised) scores in `f64`.
fn checked_normalized<S: Score>(
    scores: &[S],
    labels: &[bool],
    norm: VideoNormalization,
) -> Result<Vec<f64>> {
    check_lengths(scores.len(), labels.len())?;
    check_finite(scores)?;
    let raw = scores.iter().map(|&s| s.to_f64());
    Ok(match norm {
        VideoNormalization::None => raw.collect(),
        VideoNormalization::MinMaxPerVideo => {
            let min = raw.clone().fold(f64::INFINITY, f64::min);
            let max = raw.clone().fold(f64::NEG_INFINITY, f64::max);
            // Halved where `max - min` overflows (scores near +-f64::MAX): the same ratios.
            let scale = if (max - min).is_finite() { 1.0 } else { 0.5 };
            let (min, range) = (min * scale, max * scale - min * scale);
            raw.map(|s| match range > 0.0 {
                true => (s * scale - min) / range,
                false => 0.0,
            })
            .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roc::auroc;

    fn videos() -> Vec<(Vec<f32>, Vec<bool>)> {
        vec![
            // Ranked perfectly within the video, but on a high scale.
            (vec![10.0, 11.0, 12.0, 13.0], vec![false, false, true, true]),
            // Half right, low scale.
            (vec![0.1, 0.4, 0.35, 0.8], vec![false, false, true, true]),
            // Normal-only video.
            (vec![5.0, 0.0], vec![false, false]),
        ]
    }

    #[test]
    fn micro_pools_frames() {
        let v = videos();
        let pooled: Vec<f32> = v.iter().flat_map(|x| x.0.clone()).collect();
        let labels: Vec<bool> = v.iter().flat_map(|x| x.1.clone()).collect();
        assert_eq!(
            frame_auroc_micro(&v, VideoNormalization::None),
            auroc(&pooled, &labels)
        );
        // Min-max: video 0 -> 0, 1/3, 2/3, 1; video 1 -> 0, 3/7, 5/14, 1; video 2 -> 1, 0.
        let norm: Vec<f32> = vec![
            0.0,
            1.0 / 3.0,
            2.0 / 3.0,
            1.0,
            0.0,
            3.0 / 7.0,
            5.0 / 14.0,
            1.0,
            1.0,
            0.0,
        ];
        let want = auroc(&norm, &labels).unwrap();
        let got = frame_auroc_micro(&v, VideoNormalization::MinMaxPerVideo).unwrap();
        assert!((got - want).abs() < 1e-12);
    }

    #[test]
    fn macro_averages_eligible_videos_and_ignores_normalisation() {
        let v = videos();
        for norm in [VideoNormalization::None, VideoNormalization::MinMaxPerVideo] {
            assert_eq!(frame_auroc_macro(&v, norm), Ok((1.0 + 0.75) / 2.0));
        }
        assert_eq!(
            frame_auroc_macro(&v[2..], VideoNormalization::None),
            Err(MetricError::NoVideoWithBothClasses)
        );
    }

    #[test]
    fn constant_video_normalises_to_zero() {
        let v = vec![
            (vec![2.0, 2.0], vec![true, false]),
            (vec![0.0, 1.0], vec![false, true]),
        ];
        // Normalised: [0, 0] and [0, 1]: positives {0, 1}, negatives {0, 0}.
        assert_eq!(
            frame_auroc_micro(&v, VideoNormalization::MinMaxPerVideo),
            Ok(0.75)
        );
    }

    #[test]
    fn errors_name_the_video() {
        let mut v = videos();
        v[1].0[2] = f32::NAN;
        assert_eq!(
            frame_auroc_micro(&v, VideoNormalization::None),
            Err(MetricError::NonFinite { index: 2 }.within("video 1"))
        );
        v[1].0.pop();
        assert_eq!(
            frame_auroc_macro(&v, VideoNormalization::None),
            Err(MetricError::LengthMismatch {
                scores: 3,
                labels: 4
            }
            .within("video 1"))
        );
        assert_eq!(
            frame_auroc_micro::<f32>(&[], VideoNormalization::None),
            Err(MetricError::Empty)
        );
        assert_eq!(
            frame_auroc_micro(&v[2..], VideoNormalization::None),
            Err(MetricError::NoPositives)
        );
    }

    /// The audit's case: `max - min` overflows f64 in the first video; normalised, its
    /// scores are `[0, 0.5, 1]` as for any evenly spaced scores, never NaN.
    #[test]
    fn min_max_of_scores_spanning_f64_does_not_overflow() {
        let v: Vec<(Vec<f64>, Vec<bool>)> = vec![
            (vec![-1e308, 0.0, 1e308], vec![false, true, true]),
            (vec![5e307, -2.0, 3.0], vec![false, false, true]),
        ];
        let even = vec![(vec![0.0, 0.5, 1.0], v[0].1.clone()), v[1].clone()];
        let norm = VideoNormalization::MinMaxPerVideo;
        let want = frame_auroc_micro(&even, norm).unwrap();
        assert_eq!(frame_auroc_micro(&v, norm), Ok(want));
        assert!((want - 0.722_222_222_222_222_2).abs() < 1e-12, "{want}");
        assert_eq!(frame_auroc_macro(&v, norm), Ok(0.75));
    }

    #[test]
    fn f64_scores_keep_their_precision() {
        // Apart by 1e-10: equal in f32, ranked in f64.
        let v: Vec<(Vec<f64>, Vec<bool>)> = (0..2)
            .map(|k| {
                let base = 1.0 + f64::from(k) * 1e-9;
                (vec![base, base + 1e-10], vec![false, true])
            })
            .collect();
        assert_eq!(frame_auroc_macro(&v, VideoNormalization::None), Ok(1.0));
        let pooled = frame_auroc_micro(&v, VideoNormalization::None).unwrap();
        assert!((pooled - 0.75).abs() < 1e-12, "{pooled}");
    }
}
