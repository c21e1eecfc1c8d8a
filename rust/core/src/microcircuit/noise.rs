//! The counter-based normal generator shared with `rnnlab.microcircuit.network.counter_normals`.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[inline]
fn base(seed: u64, step: u64) -> u64 {
    let key = mix(seed
        .wrapping_mul(GOLDEN)
        .wrapping_add(0xD1B5_4A32_D192_ED03));
    mix(key ^ mix(step.wrapping_mul(GOLDEN).wrapping_add(GOLDEN)))
}

/// The Box–Muller pair `p` of a base: (√(−2 ln u1)·cos 2πu2, √(−2 ln u1)·sin 2πu2).
#[inline]
fn pair_from(base: u64, pair: u64) -> (f64, f64) {
    let first = mix(base.wrapping_add((2 * pair + 1).wrapping_mul(GOLDEN)));
    let second = mix(base.wrapping_add((2 * pair + 2).wrapping_mul(GOLDEN)));
    let u1 = ((first >> 11) as f64 + 0.5) * (-53f64).exp2();
    let u2 = (second >> 11) as f64 * (-53f64).exp2();
    let radius = (-2.0 * u1.ln()).sqrt();
    let angle = 2.0 * std::f64::consts::PI * u2;
    (radius * angle.cos(), radius * angle.sin())
}

/// The standard normal number `index` of (seed, step).
pub fn counter_normal(seed: u64, step: u64, index: u64) -> f64 {
    let (even, odd) = pair_from(base(seed, step), index / 2);
    if index.is_multiple_of(2) {
        even
    } else {
        odd
    }
}

/// Fill `out` with the normals 0..out.len() of (seed, step).
pub fn counter_normals(seed: u64, step: u64, out: &mut [f64]) {
    let b = base(seed, step);
    for (p, chunk) in out.chunks_mut(2).enumerate() {
        let (even, odd) = pair_from(b, p as u64);
        chunk[0] = even;
        if chunk.len() > 1 {
            chunk[1] = odd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_have_unit_moments() {
        let mut values = vec![0.0; 200_000];
        counter_normals(7, 3, &mut values);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "var {var}");
        assert_eq!(counter_normal(7, 3, 5), values[5]);
        assert_ne!(counter_normal(8, 3, 5), values[5]);
    }
}
