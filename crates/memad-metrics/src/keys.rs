//! Order-preserving integer keys for finite floats, the [`Score`] types, and the input
//! checks every metric shares.
//!
//! `f32_key(a) < f32_key(b)` exactly when `a < b` (for finite values), and `-0.0` and `0.0`
//! get the same key, so sorting keys sorts scores and equal keys are exactly tied scores;
//! likewise `f64_key` for `f64`, so `f64` scores are ranked without rounding them to `f32`.

use std::fmt;

use rayon::prelude::*;

use crate::error::{MetricError, Result};
use crate::radix::RadixKey;

/// An order-preserving score key: `u32` for `f32` scores, `u64` for `f64`.
pub trait Key: RadixKey + Ord + fmt::Debug {}
impl Key for u32 {}
impl Key for u64 {}

/// A score type the metrics take: `f32` or `f64`. Each is ranked through an
/// order-preserving integer key of its own width, so `f64` scores are compared as `f64`
/// (scores `1 + k * 1e-10` stay distinct; in `f32` they all round to `1.0` and tie).
/// Implemented for these two types only.
pub trait Score: ScoreKey + Copy + PartialOrd + Send + Sync + fmt::Debug + fmt::Display {}
impl Score for f32 {}
impl Score for f64 {}

/// What the metrics need of a [`Score`]: its key, the score of a key, and finiteness.
/// Public in a private module, so no other crate can implement [`Score`].
pub trait ScoreKey: Sized {
    /// `u32` or `u64`.
    type Key: Key;
    /// The order-preserving key of a finite score.
    fn key(self) -> Self::Key;
    /// The score of a key (inverse of [`ScoreKey::key`]).
    fn from_key(key: Self::Key) -> Self;
    /// Neither NaN nor infinite.
    fn finite(self) -> bool;
    /// The score as `f64` (exact for both types).
    fn to_f64(self) -> f64;
}

impl ScoreKey for f32 {
    type Key = u32;
    #[inline]
    fn key(self) -> u32 {
        f32_key(self)
    }
    #[inline]
    fn from_key(key: u32) -> f32 {
        f32_from_key(key)
    }
    #[inline]
    fn finite(self) -> bool {
        self.is_finite()
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl ScoreKey for f64 {
    type Key = u64;
    #[inline]
    fn key(self) -> u64 {
        f64_key(self)
    }
    #[inline]
    fn from_key(key: u64) -> f64 {
        f64_from_key(key)
    }
    #[inline]
    fn finite(self) -> bool {
        self.is_finite()
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

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

/// Inverse of [`f64_key`].
#[inline]
pub(crate) fn f64_from_key(key: u64) -> f64 {
    let bits = if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    };
    f64::from_bits(bits)
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
pub(crate) fn check_finite<S: Score>(scores: &[S]) -> Result<()> {
    let all_finite = |chunk: &[S]| chunk.iter().fold(true, |ok, s| ok & s.finite());
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
                .position(|s| !s.finite())
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
        for x in xs {
            assert_eq!(f64_from_key(f64_key(x)), x);
        }
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
