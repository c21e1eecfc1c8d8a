//! Small, self-contained, seedable random number generator.
//!
//! waitress does not depend on the `rand` crate so that a given `seed` produces the same stream
//! regardless of dependency upgrades. The generator is xoshiro256++ (Blackman & Vigna), its state
//! filled from SplitMix64. Every random consumer (a channel's noise, a `RandomWalk` wave) gets its
//! own independent stream derived from `(seed, channel index, slot)`, so adding a channel or a wave
//! never changes the numbers drawn by the others.

/// SplitMix64 step: returns the next output and advances `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ generator.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Generator whose 256-bit state is filled by SplitMix64 seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        Rng { s }
    }

    /// Independent stream for one consumer: `slot` 0 is a channel's noise, slot `j + 1` is the
    /// channel's wave `j`.
    pub fn stream(seed: u64, channel: u64, slot: u64) -> Rng {
        let mut sm = seed;
        let base = splitmix64(&mut sm);
        let key = base
            ^ channel.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ slot.wrapping_mul(0xAEF1_7502_108E_F2D9).rotate_left(17);
        Rng::new(key)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }

    /// Standard normal N(0, 1) by the Box–Muller transform (one value per call; the second value
    /// of the pair is discarded so that every call consumes exactly two `u64`).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::new(8);
        let mut a = Rng::new(7);
        assert_ne!(a.next_u64(), c.next_u64());
    }

    #[test]
    fn streams_are_distinct() {
        let mut x = Rng::stream(1, 0, 0);
        let mut y = Rng::stream(1, 0, 1);
        let mut z = Rng::stream(1, 1, 0);
        let (a, b, c) = (x.next_u64(), y.next_u64(), z.next_u64());
        assert!(a != b && b != c && a != c);
    }

    #[test]
    fn unit_range_and_moments() {
        let mut r = Rng::new(123);
        let n = 200_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let u = r.symmetric();
            assert!((-1.0..1.0).contains(&u));
            sum += u;
            sq += u * u;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0 / 3.0).abs() < 0.01, "var {var}");
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(99);
        let n = 200_000;
        let (mut sum, mut sq) = (0.0, 0.0);
        for _ in 0..n {
            let g = r.normal();
            assert!(g.is_finite());
            sum += g;
            sq += g * g;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }
}
