//! ROC AUC, as scikit-learn's `roc_auc_score`.
//!
//! Area under the ROC curve through `(0, 0)` and the points `(fp/N, tp/P)` of every distinct
//! threshold, joined by straight lines: a group of tied scores contributes a trapezoid, i.e.
//! a tied (positive, negative) pair counts one half. That is the Mann–Whitney statistic
//! `P(s+ > s-) + P(s+ = s-)/2`, accumulated exactly in integers per group of tied positives
//! and divided once: `O(n)` after the `O(n)` radix sort.

use crate::curve::{rank, RankedScores, Ranking};
use crate::error::Result;
use crate::keys::{Key, Score};

impl<K: Key> Ranking<K> {
    /// Exact ROC AUC of the ranking.
    pub(crate) fn auroc(&self) -> f64 {
        // Each group of k tied positives beats the negatives below it and ties those equal:
        // 2 * k * (N - fp) + k * (fp - fp_above) = k * (2N - fp - fp_above).
        let n2 = 2 * self.negatives();
        let (mut area2, mut tp_prev) = (0u128, 0u64);
        self.for_each_positive_threshold(|p| {
            area2 += u128::from(p.tp - tp_prev) * u128::from(n2 - p.fp - p.fp_above);
            tp_prev = p.tp;
        });
        area2 as f64 / (2.0 * self.positives() as f64 * self.negatives() as f64)
    }
}

impl<S: Score> RankedScores<S> {
    /// ROC AUC; see [`auroc`].
    pub fn auroc(&self) -> f64 {
        self.0.auroc()
    }
}

/// ROC AUC exactly as scikit-learn's `roc_auc_score` (ties: trapezoid over tied groups).
///
/// `labels[i] == true` marks an anomalous (positive) sample; higher scores mean more
/// anomalous. Constant scores give 0.5, as in scikit-learn. `f32` or `f64` scores, each
/// compared in its own precision.
///
/// # Errors
/// `LengthMismatch`, `Empty`, `NonFinite` (NaN or ±inf), `NoPositives`, `NoNegatives`.
pub fn auroc<S: Score>(scores: &[S], labels: &[bool]) -> Result<f64> {
    Ok(rank(scores, labels)?.auroc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MetricError;
    use proptest::prelude::*;

    /// Mann–Whitney by brute force over all pairs: the independent oracle.
    fn pairwise(scores: &[f32], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    wins += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn hand_computed() {
        assert_eq!(
            auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Ok(0.75)
        );
        assert_eq!(auroc(&[1.0, 2.0], &[false, true]), Ok(1.0));
        assert_eq!(auroc(&[1.0, 2.0], &[true, false]), Ok(0.0));
        // One tied positive/negative pair counts one half.
        assert_eq!(auroc(&[1.0, 1.0, 0.0], &[true, false, false]), Ok(0.75));
    }

    #[test]
    fn f64_scores_are_ranked_in_f64() {
        // 1 + k * 1e-10 are distinct in f64 but all round to 1.0 in f32 (one tie: 0.5).
        let scores: Vec<f64> = (0..10).map(|k| 1.0 + k as f64 * 1e-10).collect();
        let labels: Vec<bool> = (0..10).map(|k| k >= 5).collect();
        assert_eq!(auroc(&scores, &labels), Ok(1.0));
        let rounded: Vec<f32> = scores.iter().map(|&s| s as f32).collect();
        assert_eq!(auroc(&rounded, &labels), Ok(0.5));
        // Values exact in both types give the same AUROC.
        let (s32, l) = ([0.1f32, 0.4, 0.35, 0.8], [false, false, true, true]);
        let s64: Vec<f64> = s32.iter().map(|&s| f64::from(s)).collect();
        assert_eq!(auroc(&s64, &l), auroc(&s32, &l));
    }

    #[test]
    fn constant_scores_give_one_half() {
        assert_eq!(
            auroc(&[3.0; 7], &[true, false, true, false, false, false, true]),
            Ok(0.5)
        );
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert_eq!(
            auroc(&[1.0, 2.0], &[true, true]),
            Err(MetricError::NoNegatives)
        );
        assert_eq!(
            auroc(&[1.0, 2.0], &[false, false]),
            Err(MetricError::NoPositives)
        );
        assert_eq!(auroc::<f32>(&[], &[]), Err(MetricError::Empty));
        assert_eq!(
            auroc(&[1.0], &[true, false]),
            Err(MetricError::LengthMismatch {
                scores: 1,
                labels: 2
            })
        );
        assert_eq!(
            auroc(&[1.0, f32::NEG_INFINITY], &[true, false]),
            Err(MetricError::NonFinite { index: 1 })
        );
    }

    #[test]
    fn large_input_matches_pairwise_oracle() {
        // Above the parallel and radix thresholds, with heavy ties.
        let n = 70_000;
        let scores: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 / 64.0).collect();
        let labels: Vec<bool> = (0..n)
            .map(|i| (i * 31) % 11 < 3 + (i % 1013) / 300)
            .collect();
        // Pairwise over the 1013 distinct values via counts (the O(n^2) loop is too slow).
        let mut pos = vec![0u64; 1013];
        let mut neg = vec![0u64; 1013];
        for (i, &l) in labels.iter().enumerate() {
            let v = (i * 7919) % 1013;
            if l {
                pos[v] += 1
            } else {
                neg[v] += 1
            }
        }
        let (mut wins2, mut neg_below) = (0u128, 0u64);
        for (&p, &q) in pos.iter().zip(&neg) {
            wins2 += u128::from(p) * u128::from(2 * neg_below + q);
            neg_below += q;
        }
        let p: u64 = pos.iter().sum();
        let expect = wins2 as f64 / (2.0 * p as f64 * neg_below as f64);
        assert!((auroc(&scores, &labels).unwrap() - expect).abs() < 1e-12);
    }

    fn scores_and_labels(max_score: i32) -> impl Strategy<Value = (Vec<f32>, Vec<bool>)> {
        proptest::collection::vec((-max_score..=max_score, any::<bool>()), 2..200)
            .prop_filter("both classes", |v| {
                v.iter().any(|x| x.1) && v.iter().any(|x| !x.1)
            })
            .prop_map(|v| v.into_iter().map(|(s, l)| (s as f32, l)).unzip())
    }

    proptest! {
        #[test]
        fn equals_pairwise_and_is_bounded((s, l) in scores_and_labels(20)) {
            let a = auroc(&s, &l).unwrap();
            prop_assert!((0.0..=1.0).contains(&a));
            prop_assert!((a - pairwise(&s, &l)).abs() < 1e-12);
        }

        #[test]
        fn negating_scores_complements((s, l) in scores_and_labels(1_000_000)) {
            let mut distinct = s.clone();
            distinct.sort_by(f32::total_cmp);
            distinct.dedup();
            prop_assume!(distinct.len() == s.len());
            let neg: Vec<f32> = s.iter().map(|x| -x).collect();
            let (a, b) = (auroc(&s, &l).unwrap(), auroc(&neg, &l).unwrap());
            prop_assert!((a - (1.0 - b)).abs() < 1e-12);
        }

        #[test]
        fn invariant_to_strictly_monotone_transforms((s, l) in scores_and_labels(1000)) {
            // Integer scores in [-1000, 1000]: each transform stays strictly increasing in f32.
            let a = auroc(&s, &l).unwrap();
            let transforms: [fn(f32) -> f32; 4] = [
                |x| (x / 100.0).exp(),
                |x| x * x * x + x,
                |x| 3.5 * x - 7.0,
                |x| (x + 1001.0).ln(),
            ];
            for t in transforms {
                let ts: Vec<f32> = s.iter().map(|&x| t(x)).collect();
                prop_assert_eq!(auroc(&ts, &l).unwrap(), a);
            }
        }
    }
}
