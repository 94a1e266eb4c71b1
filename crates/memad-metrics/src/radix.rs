//! LSD radix sort of integer keys (11-bit digits), the sort behind every metric.
//!
//! `O(passes * n)` with `passes = ceil(key bits / 11)` (3 for `f32` keys); passes whose digit
//! is the same for every element are skipped. Each pass counts and scatters in parallel over
//! chunks (rayon): chunk `c` owns a precomputed, disjoint output range per digit, written
//! through the crate's one `unsafe` block. Small inputs use `sort_unstable`.

use rayon::prelude::*;

const DIGIT_BITS: u32 = 11;
const BUCKETS: usize = 1 << DIGIT_BITS;
const MASK: u64 = BUCKETS as u64 - 1;
/// Below this length a comparison sort is faster.
const SMALL: usize = 1 << 12;
/// Minimum elements per parallel task.
const CHUNK: usize = 1 << 16;

/// Something with an unsigned integer sort key of `KEY_BITS` bits.
pub trait RadixKey: Copy + Default + Send + Sync {
    const KEY_BITS: u32;
    fn radix_key(&self) -> u64;
}

impl RadixKey for u32 {
    const KEY_BITS: u32 = 32;
    #[inline]
    fn radix_key(&self) -> u64 {
        u64::from(*self)
    }
}

impl RadixKey for u64 {
    const KEY_BITS: u32 = 64;
    #[inline]
    fn radix_key(&self) -> u64 {
        *self
    }
}

/// A key with a payload that takes no part in the order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tagged<K> {
    pub key: K,
    pub tag: u32,
}

impl<K: RadixKey> RadixKey for Tagged<K> {
    const KEY_BITS: u32 = K::KEY_BITS;
    #[inline]
    fn radix_key(&self) -> u64 {
        self.key.radix_key()
    }
}

/// Sorts `v` ascending by `radix_key` (stable for large inputs, unstable below `SMALL`).
pub(crate) fn sort<T: RadixKey>(v: &mut [T]) {
    if v.len() <= SMALL {
        v.sort_unstable_by_key(RadixKey::radix_key);
        return;
    }
    let mut buf = vec![T::default(); v.len()];
    let mut data_in_buf = false;
    for pass in 0..T::KEY_BITS.div_ceil(DIGIT_BITS) {
        let shift = pass * DIGIT_BITS;
        let moved = if data_in_buf {
            scatter(&buf, v, shift)
        } else {
            scatter(v, &mut buf, shift)
        };
        data_in_buf ^= moved;
    }
    if data_in_buf {
        v.par_chunks_mut(CHUNK)
            .zip(buf.par_chunks(CHUNK))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
}

#[inline]
fn digit<T: RadixKey>(x: &T, shift: u32) -> usize {
    ((x.radix_key() >> shift) & MASK) as usize
}

/// One stable counting-sort pass of `src` into `dst` on the digit at `shift`, in parallel
/// over chunks of `src`. Returns `false`, writing nothing, when all digits are equal.
fn scatter<T: RadixKey>(src: &[T], dst: &mut [T], shift: u32) -> bool {
    assert_eq!(src.len(), dst.len());
    let chunk = src
        .len()
        .div_ceil(4 * rayon::current_num_threads())
        .max(CHUNK);
    let mut next: Vec<Vec<usize>> = src
        .par_chunks(chunk)
        .map(|c| {
            let mut counts = vec![0usize; BUCKETS];
            c.iter().for_each(|x| counts[digit(x, shift)] += 1);
            counts
        })
        .collect();
    // Exclusive prefix sums, digit-major then chunk: chunk `c` writes its elements with
    // digit `d` to `[next[c][d], next[c][d] + count[c][d])`.
    let mut sum = 0;
    for d in 0..BUCKETS {
        let bucket_start = sum;
        for counts in next.iter_mut() {
            let n = counts[d];
            counts[d] = sum;
            sum += n;
        }
        if sum - bucket_start == src.len() {
            return false; // one digit for all: the pass would move nothing
        }
    }
    let out = SyncPtr(dst.as_mut_ptr());
    src.par_chunks(chunk)
        .zip(next.par_iter_mut())
        .for_each(|(c, next)| {
            let out = out.get();
            for &x in c {
                let d = digit(&x, shift);
                // SAFETY: the ranges of all (chunk, digit) pairs are disjoint and tile
                // `0..dst.len()` (prefix sums above), and this chunk writes exactly
                // `count[c][d]` elements into its range for `d`: every index is in bounds
                // and written by one task only. `T: Copy`, so nothing is dropped.
                unsafe { out.add(next[d]).write(x) };
                next[d] += 1;
            }
        });
    true
}

/// The output pointer shared by the scatter tasks, which write disjoint indices.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);

// SAFETY: the tasks sharing it write disjoint elements of a `T: Send` (see `scatter`).
unsafe impl<T: Send> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer; a method, so closures capture the wrapper rather than the raw field.
    fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 11
    }

    #[test]
    fn sorts_u32_u64_and_tagged_like_std() {
        let mut s = 7;
        for n in [0, 1, 5, SMALL, SMALL + 1, 100_003, 600_001] {
            let v32: Vec<u32> = (0..n).map(|_| lcg(&mut s) as u32).collect();
            let mut ours = v32.clone();
            sort(&mut ours);
            let mut expect = v32;
            expect.sort_unstable();
            assert_eq!(ours, expect);

            let v64: Vec<u64> = (0..n).map(|_| lcg(&mut s).wrapping_mul(977)).collect();
            let mut ours = v64.clone();
            sort(&mut ours);
            let mut expect = v64;
            expect.sort_unstable();
            assert_eq!(ours, expect);
        }
        // Few distinct keys (skipped passes) and a payload that must travel with its key.
        let tagged: Vec<Tagged<u32>> = (0..50_000u32)
            .map(|i| Tagged {
                key: (lcg(&mut s) % 3) as u32 * 0x0100_0000,
                tag: i,
            })
            .collect();
        let mut ours = tagged.clone();
        sort(&mut ours);
        let mut expect = tagged;
        expect.sort_by_key(|t| t.key); // stable, as LSD radix is above SMALL
        assert_eq!(ours, expect);
    }
}
