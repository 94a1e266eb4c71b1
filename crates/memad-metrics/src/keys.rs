//! Order-preserving integer keys for finite floats, and the input checks every metric shares.
//!
//! `f32_key(a) < f32_key(b)` exactly when `a < b` (for finite values), and `-0.0` and `0.0`
//! get the same key, so sorting keys sorts scores and equal keys are exactly tied scores.

use rayon::prelude::*;

use crate::error::{MetricError, Result};

/// Below this many values the checks run sequentially (rayon's overhead would dominate).
const PARALLEL_MIN: usize = 1 << 15;

/// The order-preserving key of a finite `f32`.
#[inline]
pub(crate) fn f32_key(x: f32) -> u32 {
    let bits = if x == 0.0 { 0 } else { x.to_bits() };
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | (1 << 31)
    }
}

/// Inverse of [`f32_key`].
#[inline]
pub(crate) fn f32_from_key(key: u32) -> f32 {
    let bits = if key >> 31 == 1 {
        key & !(1 << 31)
    } else {
        !key
    };
    f32::from_bits(bits)
}

/// The order-preserving key of a finite `f64`.
#[inline]
pub(crate) fn f64_key(x: f64) -> u64 {
    let bits = if x == 0.0 { 0 } else { x.to_bits() };
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// `Err(LengthMismatch)` unless both lengths agree, `Err(Empty)` if they are zero.
pub(crate) fn check_lengths(scores: usize, labels: usize) -> Result<()> {
    if scores != labels {
        return Err(MetricError::LengthMismatch { scores, labels });
    }
    if scores == 0 {
        return Err(MetricError::Empty);
    }
    Ok(())
}

/// `Err(NonFinite)` naming the first NaN or infinite score.
pub(crate) fn check_finite(scores: &[f32]) -> Result<()> {
    let all_finite = |chunk: &[f32]| chunk.iter().fold(true, |ok, s| ok & s.is_finite());
    let bad_chunk = if scores.len() < PARALLEL_MIN {
        (!all_finite(scores)).then_some(0)
    } else {
        scores
            .par_chunks(PARALLEL_MIN)
            .position_first(|chunk| !all_finite(chunk))
    };
    match bad_chunk {
        None => Ok(()),
        Some(c) => {
            let start = if scores.len() < PARALLEL_MIN {
                0
            } else {
                c * PARALLEL_MIN
            };
            let offset = scores[start..]
                .iter()
                .position(|s| !s.is_finite())
                .unwrap_or(0);
            Err(MetricError::NonFinite {
                index: start + offset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_keys_preserve_order_and_tie_signed_zeros() {
        let xs = [
            f32::MIN,
            -1e30,
            -1.0,
            -f32::MIN_POSITIVE,
            -1e-45,
            0.0,
            1e-45,
            f32::MIN_POSITIVE,
            0.5,
            1.0,
            3e38,
            f32::MAX,
        ];
        for pair in xs.windows(2) {
            assert!(f32_key(pair[0]) < f32_key(pair[1]), "{pair:?}");
        }
        assert_eq!(f32_key(-0.0), f32_key(0.0));
        for x in xs {
            assert_eq!(f32_from_key(f32_key(x)), x);
        }
    }

    #[test]
    fn f64_keys_preserve_order() {
        let xs = [f64::MIN, -2.0, -1e-300, 0.0, 1e-300, 0.25, f64::MAX];
        for pair in xs.windows(2) {
            assert!(f64_key(pair[0]) < f64_key(pair[1]), "{pair:?}");
        }
        assert_eq!(f64_key(-0.0), f64_key(0.0));
    }

    #[test]
    fn checks_name_the_problem() {
        assert_eq!(
            check_lengths(3, 2),
            Err(MetricError::LengthMismatch {
                scores: 3,
                labels: 2
            })
        );
        assert_eq!(check_lengths(0, 0), Err(MetricError::Empty));
        assert_eq!(
            check_finite(&[0.0, 1.0, f32::NAN]),
            Err(MetricError::NonFinite { index: 2 })
        );
        let mut big = vec![0.5f32; PARALLEL_MIN * 3];
        big[PARALLEL_MIN + 7] = f32::INFINITY;
        big[PARALLEL_MIN * 2] = f32::NAN;
        assert_eq!(
            check_finite(&big),
            Err(MetricError::NonFinite {
                index: PARALLEL_MIN + 7
            })
        );
    }
}
