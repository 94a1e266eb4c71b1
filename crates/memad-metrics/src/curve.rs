//! Ranking: scores split by label, sorted once, and swept over the thresholds.
//!
//! All threshold metrics (AUROC, AP, F1-max) are functions of the cumulative counts
//! `(tp, fp)` at each distinct score taken from the highest down, the points of
//! scikit-learn's `_binary_clf_curve`: tied scores form one group and give one point.
//! Building a ranking is one parallel split and two radix sorts, `O(n)`; a sweep is `O(n)`.

use rayon::prelude::*;

use crate::error::{MetricError, Result};
use crate::keys::{check_finite, check_lengths, Key, Score};
use crate::radix;

/// Below this many scores the split runs sequentially.
const PARALLEL_MIN: usize = 1 << 15;

/// Positive and negative score keys, each sorted ascending; both non-empty.
#[derive(Debug, Clone)]
pub(crate) struct Ranking<K> {
    pos: Vec<K>,
    neg: Vec<K>,
}

impl<K: Key> Ranking<K> {
    /// Sorts the keys; `Err` if a class is missing.
    pub(crate) fn new(mut pos: Vec<K>, mut neg: Vec<K>) -> Result<Self> {
        if pos.is_empty() {
            return Err(MetricError::NoPositives);
        }
        if neg.is_empty() {
            return Err(MetricError::NoNegatives);
        }
        rayon::join(|| radix::sort(&mut pos), || radix::sort(&mut neg));
        Ok(Ranking { pos, neg })
    }

    pub(crate) fn positives(&self) -> u64 {
        self.pos.len() as u64
    }

    pub(crate) fn negatives(&self) -> u64 {
        self.neg.len() as u64
    }

    /// Calls `f` once per distinct score held by a positive, highest first. These are
    /// the only thresholds the metrics need: a score held by negatives only adds a flat
    /// ROC segment (accounted for by the counts `fp`, `fp_above` of the next positive
    /// group), no AP recall step, and a lower F1 than the next higher threshold. The walk
    /// over the negatives is a tight pointer scan: `O(P + N)` time, `O(P)` calls.
    pub(crate) fn for_each_positive_threshold(&self, mut f: impl FnMut(Point<K>)) {
        let (pos, neg) = (&self.pos, &self.neg);
        let (mut i, mut j, mut tp) = (pos.len(), neg.len(), 0u64);
        while i > 0 {
            let key = pos[i - 1];
            while i > 0 && pos[i - 1] == key {
                i -= 1;
                tp += 1;
            }
            while j > 0 && neg[j - 1] > key {
                j -= 1;
            }
            let fp_above = (neg.len() - j) as u64;
            while j > 0 && neg[j - 1] == key {
                j -= 1;
            }
            let fp = (neg.len() - j) as u64;
            f(Point {
                key,
                tp,
                fp,
                fp_above,
            });
        }
    }
}

/// The counts at one threshold `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Point<K> {
    pub key: K,
    /// Positives scoring `>= key`.
    pub tp: u64,
    /// Negatives scoring `>= key`.
    pub fp: u64,
    /// Negatives scoring `> key`.
    pub fp_above: u64,
}

/// Checks scores and labels, splits them by label and ranks them (in the scores' own
/// precision).
pub(crate) fn rank<S: Score>(scores: &[S], labels: &[bool]) -> Result<Ranking<S::Key>> {
    check_lengths(scores.len(), labels.len())?;
    check_finite(scores)?;
    let (pos, neg) = split_by_label(scores, labels, S::key);
    Ranking::new(pos, neg)
}

/// Maps scores to keys, positives to the first vector, negatives to the second (order
/// kept). Large inputs: one parallel count of the labels, then a parallel fill of disjoint
/// slices of the two exactly sized outputs.
pub(crate) fn split_by_label<S, K>(
    scores: &[S],
    labels: &[bool],
    key: impl Fn(S) -> K + Sync + Send,
) -> (Vec<K>, Vec<K>)
where
    S: Copy + Sync,
    K: Copy + Default + Send + Sync,
{
    let fill = |scores: &[S], labels: &[bool], pos: &mut [K], neg: &mut [K]| {
        let (mut i, mut j) = (0, 0);
        for (&s, &l) in scores.iter().zip(labels) {
            if l {
                pos[i] = key(s);
                i += 1;
            } else {
                neg[j] = key(s);
                j += 1;
            }
        }
    };
    let per_chunk: Vec<usize> = if scores.len() < PARALLEL_MIN {
        vec![labels.iter().filter(|&&l| l).count()]
    } else {
        labels
            .par_chunks(PARALLEL_MIN)
            .map(|l| l.iter().filter(|&&l| l).count())
            .collect()
    };
    let n_pos: usize = per_chunk.iter().sum();
    let mut pos = vec![K::default(); n_pos];
    let mut neg = vec![K::default(); scores.len() - n_pos];
    if scores.len() < PARALLEL_MIN {
        fill(scores, labels, &mut pos, &mut neg);
        return (pos, neg);
    }
    let (mut pos_rest, mut neg_rest) = (&mut pos[..], &mut neg[..]);
    let mut parts = Vec::with_capacity(per_chunk.len());
    for (c, &p) in per_chunk.iter().enumerate() {
        let len = PARALLEL_MIN.min(scores.len() - c * PARALLEL_MIN);
        let (p_part, p_rest) = pos_rest.split_at_mut(p);
        let (n_part, n_rest) = neg_rest.split_at_mut(len - p);
        parts.push((p_part, n_part));
        (pos_rest, neg_rest) = (p_rest, n_rest);
    }
    scores
        .par_chunks(PARALLEL_MIN)
        .zip(labels.par_chunks(PARALLEL_MIN))
        .zip(parts)
        .for_each(|((s, l), (p, n))| fill(s, l, p, n));
    (pos, neg)
}

/// Scores ranked once, to compute several metrics of the same data (pixel AUROC, AP and
/// F1-max, say) with a single sort. Memory: 4 bytes per `f32` score, 8 per `f64` score.
#[derive(Debug, Clone)]
pub struct RankedScores<S: Score = f32>(pub(crate) Ranking<S::Key>);

impl<S: Score> RankedScores<S> {
    /// Checks and ranks `scores` (label `true` = anomalous/positive).
    ///
    /// # Errors
    /// `LengthMismatch`, `Empty`, `NonFinite`, `NoPositives`, `NoNegatives`.
    pub fn new(scores: &[S], labels: &[bool]) -> Result<Self> {
        rank(scores, labels).map(RankedScores)
    }

    /// Number of positive (anomalous) samples.
    pub fn positives(&self) -> u64 {
        self.0.positives()
    }

    /// Number of negative (normal) samples.
    pub fn negatives(&self) -> u64 {
        self.0.negatives()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::f32_key;

    #[test]
    fn visits_positive_scores_with_cumulative_counts() {
        let r = rank(
            &[0.1f32, 0.4, 0.35, 0.8, 0.4, 0.4, 0.9, 0.05],
            &[false, false, true, true, true, false, false, true],
        )
        .unwrap();
        let mut points = Vec::new();
        r.for_each_positive_threshold(|p| {
            points.push((crate::keys::f32_from_key(p.key), p.tp, p.fp, p.fp_above))
        });
        assert_eq!(
            points,
            vec![
                (0.8, 1, 1, 1),
                (0.4, 2, 3, 1),
                (0.35, 3, 3, 3),
                (0.05, 4, 4, 4)
            ]
        );
    }

    #[test]
    fn missing_class_is_an_error() {
        assert_eq!(
            rank(&[1.0, 2.0], &[false, false]).err(),
            Some(MetricError::NoPositives)
        );
        assert_eq!(
            rank(&[1.0, 2.0], &[true, true]).err(),
            Some(MetricError::NoNegatives)
        );
    }

    #[test]
    fn parallel_split_keeps_order() {
        let n = PARALLEL_MIN * 3 + 11;
        let scores: Vec<f32> = (0..n).map(|i| (i % 97) as f32).collect();
        let labels: Vec<bool> = (0..n).map(|i| i % 5 == 0 || (i / 1000) % 7 == 0).collect();
        let (p, q) = split_by_label(&scores, &labels, f32_key);
        let want = |side: bool| -> Vec<u32> {
            scores
                .iter()
                .zip(&labels)
                .filter(|(_, &l)| l == side)
                .map(|(&s, _)| f32_key(s))
                .collect()
        };
        assert_eq!((p, q), (want(true), want(false)));
    }
}
