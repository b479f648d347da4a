//! The benchmarks' deterministic random numbers (shared by `fetch` and
//! `codec`, included with `#[path]`; a folder under benches/ is not a
//! bench target of its own).

#![allow(dead_code)]

/// SplitMix64: small, fast, reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo + 1) as u64) as usize
    }

    /// Log-uniform in `[lo, hi]`: more small ones than large ones.
    pub fn log_range(&mut self, lo: usize, hi: usize) -> usize {
        let f = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let v = (lo as f64).ln() + f * ((hi as f64).ln() - (lo as f64).ln());
        (v.exp() as usize).clamp(lo, hi)
    }
}
