//! Scalar math the kernels inline into their loops: branch-free polynomial `exp` and `erf`
//! (libm's are scalar calls per element that stop vectorization), Φ, and a reduction in
//! interleaved partial sums.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

/// e^x within 2 ulp (Cephes' expf: x = n ln 2 + r, e^r by a degree-6 polynomial, 2^n by the
/// exponent bits); 0 below -87.3, where e^x leaves the normal f32 range.
#[inline(always)]
#[allow(clippy::manual_clamp)] // `clamp` keeps NaN; `max` and `min` take it to a bound
pub fn exp(x: f32) -> f32 {
    // `max` and `min` take NaN to a bound, so that the cast below is always defined; NaN comes
    // back out at the end.
    let clamped = x.max(-87.3).min(88.3);
    let nf = (clamped * LOG2_E + 0.5).floor();
    // SAFETY: |nf| < 128 after the clamp, in i32's range.
    let n = unsafe { nf.to_int_unchecked::<i32>() };
    // ln 2 in two parts, so that r keeps its low bits.
    let r = clamped - nf * 0.693_359_4 + nf * 2.121_944_4e-4;
    let p = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * r + c);
    let y = p * r * r + r + 1.0;
    // Wrapping: the tests' build checks overflow, and a check would stop vectorizing.
    let scale = f32::from_bits((n.wrapping_add(127) << 23) as u32);
    if x < -87.3 {
        0.0
    } else if x.is_nan() {
        x
    } else {
        y * scale
    }
}

/// Σ f(a_i, b_i) in 16 interleaved partial sums (one running sum would serialize on the adder).
#[inline(always)]
pub(super) fn sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0f32; LANES];
    let (a_lanes, b_lanes) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_lanes
        .remainder()
        .iter()
        .zip(b_lanes.remainder())
        .map(|(&a, &b)| f(a, b))
        .sum();
    for (a, b) in a_lanes.zip(b_lanes) {
        for i in 0..LANES {
            acc[i] += f(a[i], b[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// erf(x): odd rational function of x on [-4, 4] (Eigen's, error about 1e-7; erf is ±1 in f32
/// beyond).
#[allow(clippy::excessive_precision)] // Eigen's coefficients as published
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = [
        -2.726_142_2e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_599_8e-3,
        -1.609_603_3e-2,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * x2 + c);
    let q = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329e-3,
        -1.426_474e-2,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * x2 + c);
    x * p / q
}

/// Φ(x), the standard normal CDF.
#[inline(always)]
pub(super) fn cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm() {
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let (ours, want) = (exp(x), x.exp());
            assert!(
                (ours - want).abs() <= 2.0 * f32::EPSILON * want,
                "exp({x}): {ours} vs {want}"
            );
        }
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::MIN), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::INFINITY), exp(88.3));
    }
}
