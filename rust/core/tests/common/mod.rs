//! Helpers shared by the integration tests (each test file includes this with `mod common;`).

/// Deterministic pseudo-random numbers in [-1, 1) (a 64-bit LCG; no dependency needed).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    /// `len` values `offset + scale·u`, u uniform in [-1, 1).
    pub fn vec(&mut self, len: usize, scale: f64, offset: f64) -> Vec<f64> {
        (0..len).map(|_| offset + scale * self.next()).collect()
    }
}
