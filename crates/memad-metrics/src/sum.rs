//! Compensated (Kahan–Babuška–Neumaier) summation: long f64 running sums stay exact to
//! about one rounding, whatever the number of terms.

/// A running sum with an error-compensation term.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Neumaier {
    sum: f64,
    compensation: f64,
}

impl Neumaier {
    #[inline]
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    #[inline]
    pub(crate) fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_what_naive_summation_loses() {
        let mut s = Neumaier::default();
        let mut naive = 0.0;
        for x in [1.0, 1e100, 1.0, -1e100] {
            s.add(x);
            naive += x;
        }
        assert_eq!(s.value(), 2.0);
        assert_eq!(naive, 0.0);
        let mut s = Neumaier::default();
        (0..1_000_000).for_each(|_| s.add(0.1));
        assert!((s.value() - 100_000.0).abs() < 1e-9);
    }
}
