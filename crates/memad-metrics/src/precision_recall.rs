//! Average precision and F1-max, as derived from scikit-learn's `precision_recall_curve`.
//!
//! At each distinct threshold `t` (tied scores form one group): `precision = tp/(tp+fp)`,
//! `recall = tp/P`. Average precision is the step-wise sum `sum (R_k - R_{k-1}) * P_k` over
//! thresholds from the highest down (`average_precision_score`, no interpolation), summed
//! with compensation. F1 at a threshold is `2PR/(P+R) = 2tp/(tp+fp+P)`; the maximum is found
//! with exact integer comparisons; it is attained at a score held by a positive (between
//! two such scores, lowering the threshold only adds false positives). Both are one `O(n)`
//! sweep after the sort.

use crate::curve::{rank, RankedScores, Ranking};
use crate::error::Result;
use crate::keys::{Key, Score};
use crate::sum::Neumaier;

/// The best F1 score over all thresholds and the threshold that attains it (a score of the
/// type ranked, `f32` or `f64`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F1Max<S = f32> {
    /// `max_t 2PR/(P+R)`.
    pub f1: f64,
    /// A score: samples scoring `>= threshold` are predicted anomalous. The lowest such
    /// threshold when several attain the maximum (what `np.argmax` returns on
    /// `precision_recall_curve`'s ascending thresholds).
    pub threshold: S,
}

impl<K: Key> Ranking<K> {
    /// Step-wise average precision.
    pub(crate) fn average_precision(&self) -> f64 {
        let mut sum = Neumaier::default();
        let mut tp_prev = 0u64;
        self.for_each_positive_threshold(|p| {
            sum.add((p.tp - tp_prev) as f64 * (p.tp as f64 / (p.tp + p.fp) as f64));
            tp_prev = p.tp;
        });
        sum.value() / self.positives() as f64
    }

    /// Maximal F1 and the key of its (lowest) threshold.
    pub(crate) fn f1_max(&self) -> (f64, K) {
        let p = self.positives();
        // F1 = num/den; compare num_a * den_b with num_b * den_a exactly.
        let mut best: Option<(u128, u128, K)> = None;
        self.for_each_positive_threshold(|pt| {
            let (num, den) = (2 * u128::from(pt.tp), u128::from(pt.tp + pt.fp + p));
            match best {
                Some((bn, bd, _)) if num * bd < bn * den => {}
                _ => best = Some((num, den, pt.key)), // ties: the later, lower threshold wins
            }
        });
        match best {
            Some((num, den, key)) => (num as f64 / den as f64, key),
            None => unreachable!("a ranking holds at least one positive and one negative"),
        }
    }
}

impl<S: Score> RankedScores<S> {
    /// Average precision; see [`average_precision`].
    pub fn average_precision(&self) -> f64 {
        self.0.average_precision()
    }

    /// Best F1; see [`f1_max`].
    pub fn f1_max(&self) -> F1Max<S> {
        let (f1, key) = self.0.f1_max();
        F1Max {
            f1,
            threshold: S::from_key(key),
        }
    }
}

/// Average precision exactly as scikit-learn's `average_precision_score` (step-wise, no
/// interpolation): `sum_k (R_k - R_{k-1}) P_k` over distinct thresholds.
///
/// # Errors
/// `LengthMismatch`, `Empty`, `NonFinite`, `NoPositives`, `NoNegatives` (scikit-learn
/// returns a number with a warning for the last two; here they are errors).
pub fn average_precision<S: Score>(scores: &[S], labels: &[bool]) -> Result<f64> {
    Ok(rank(scores, labels)?.average_precision())
}

/// Best F1 over all thresholds (as derived from scikit-learn's `precision_recall_curve`:
/// `max 2PR/(P+R)` over its points), with the threshold attaining it.
///
/// # Errors
/// `LengthMismatch`, `Empty`, `NonFinite`, `NoPositives`, `NoNegatives`.
pub fn f1_max<S: Score>(scores: &[S], labels: &[bool]) -> Result<F1Max<S>> {
    Ok(RankedScores::new(scores, labels)?.f1_max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MetricError;
    use proptest::prelude::*;

    /// Straight from the definitions: every distinct score as a threshold, counted anew.
    fn naive(scores: &[f32], labels: &[bool]) -> (f64, f64, f32) {
        let mut ts = scores.to_vec();
        ts.sort_by(|a, b| b.total_cmp(a));
        ts.dedup();
        let p = labels.iter().filter(|&&l| l).count() as f64;
        let (mut ap, mut r_prev, mut best, mut best_t) = (0.0, 0.0, -1.0, 0.0);
        for &t in &ts {
            let tp = scores
                .iter()
                .zip(labels)
                .filter(|(&s, &l)| l && s >= t)
                .count() as f64;
            let fp = scores
                .iter()
                .zip(labels)
                .filter(|(&s, &l)| !l && s >= t)
                .count() as f64;
            let (prec, rec) = (tp / (tp + fp), tp / p);
            ap += (rec - r_prev) * prec;
            r_prev = rec;
            let f1 = if prec + rec > 0.0 {
                2.0 * prec * rec / (prec + rec)
            } else {
                0.0
            };
            if f1 >= best - 1e-12 {
                (best, best_t) = (f1.max(best), t);
            }
        }
        (ap, best, best_t)
    }

    #[test]
    fn hand_computed() {
        // sklearn docs example: AP = 0.8333...
        let (s, l) = ([0.1, 0.4, 0.35, 0.8], [false, false, true, true]);
        assert!((average_precision(&s, &l).unwrap() - 5.0 / 6.0).abs() < 1e-15);
        // Thresholds 0.8: P=1 R=.5 F1=2/3; 0.4: P=.5 R=.5; 0.35: P=2/3 R=1 F1=.8; 0.1: F1=2/3.
        assert_eq!(
            f1_max(&s, &l),
            Ok(F1Max {
                f1: 0.8,
                threshold: 0.35
            })
        );
        // All tied: one threshold, precision = prevalence.
        assert!(
            (average_precision(&[2.0; 4], &[true, false, false, false]).unwrap() - 0.25).abs()
                < 1e-15
        );
    }

    #[test]
    fn f64_scores_keep_their_precision() {
        let scores: Vec<f64> = (0..6).map(|k| 1.0 + k as f64 * 1e-10).collect();
        let labels = [false, false, false, true, true, true];
        assert_eq!(average_precision(&scores, &labels), Ok(1.0));
        let f = f1_max(&scores, &labels).unwrap();
        assert_eq!((f.f1, f.threshold), (1.0, scores[3]));
    }

    #[test]
    fn f1_ties_pick_the_lowest_threshold() {
        // t=3: tp=1 fp=0 -> 2/3; t=1: tp=2 fp=2 -> 4/6 = 2/3.
        let f = f1_max(&[3.0, 2.0, 1.0, 1.0], &[true, false, true, false]).unwrap();
        assert_eq!(f.threshold, 1.0);
        assert!((f.f1 - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert_eq!(
            average_precision(&[1.0], &[true]),
            Err(MetricError::NoNegatives)
        );
        assert_eq!(
            f1_max(&[1.0, 0.0], &[false, false]),
            Err(MetricError::NoPositives)
        );
        assert_eq!(
            f1_max(&[f32::NAN, 0.0], &[true, false]),
            Err(MetricError::NonFinite { index: 0 })
        );
    }

    proptest! {
        #[test]
        fn match_the_naive_definitions(
            v in proptest::collection::vec((0..12i32, any::<bool>()), 2..150)
                .prop_filter("both classes", |v| v.iter().any(|x| x.1) && v.iter().any(|x| !x.1))
        ) {
            let (s, l): (Vec<f32>, Vec<bool>) = v.into_iter().map(|(s, l)| (s as f32 * 0.25, l)).unzip();
            let (ap, f1, t) = naive(&s, &l);
            prop_assert!((average_precision(&s, &l).unwrap() - ap).abs() < 1e-12);
            let ours = f1_max(&s, &l).unwrap();
            prop_assert!((ours.f1 - f1).abs() < 1e-12);
            prop_assert_eq!(ours.threshold, t);
            prop_assert!((0.0..=1.0).contains(&ours.f1));
        }
    }
}
