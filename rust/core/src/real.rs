//! The floating-point types the kernels run on (`f32`, `f64`), and the few operations they need.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

mod sealed {
    /// Keeps [`super::Real`] to the two float types (code such as `scratch_pool` relies on it).
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float the kernels are generic over. Implemented for `f32` and `f64` only (sealed).
pub trait Real:
    sealed::Sealed
    + Copy
    + Debug
    + Default
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp(self) -> Self;
    /// self·a + b with one rounding (compiles to an FMA instruction only where FMA is enabled:
    /// use it through [`Isa`], never in baseline code).
    fn mul_add(self, a: Self, b: Self) -> Self;
    fn ln_1p(self) -> Self;
    fn tanh(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn is_finite(self) -> bool;
    fn max(self, other: Self) -> Self;
    /// The logistic function 1/(1 + e^{−x}) as the kernels evaluate it (see [`fast_f32`]).
    fn logistic(self) -> Self;
    /// tanh as the kernels evaluate it (see [`fast_f32`]).
    fn tanh_activation(self) -> Self;

    /// C = alpha·A·B + beta·C with explicit row and column strides (matrixmultiply's sgemm/dgemm).
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping (for C) matrices of the given
    /// sizes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

/// The instruction set a kernel copy is compiled for, as a type parameter: the time loops are
/// monomorphised once with [`Fused`] (inside `#[target_feature(enable = "avx2,fma")]`
/// functions, so `mul_add` becomes one `vfmadd`) and once with [`Plain`] (baseline x86-64 or any
/// other target, where `mul_add` would be a slow library call).
pub trait Isa: Copy + Send + Sync + 'static {
    /// a·b + c.
    fn mul_add<T: Real>(a: T, b: T, c: T) -> T;
}

/// Separate multiply and add (any CPU).
#[derive(Clone, Copy, Debug)]
pub struct Plain;

/// Fused multiply-add (only inside code compiled with the `fma` target feature).
#[derive(Clone, Copy, Debug)]
pub struct Fused;

impl Isa for Plain {
    #[inline(always)]
    fn mul_add<T: Real>(a: T, b: T, c: T) -> T {
        a * b + c
    }
}

impl Isa for Fused {
    #[inline(always)]
    fn mul_add<T: Real>(a: T, b: T, c: T) -> T {
        a.mul_add(b, c)
    }
}

macro_rules! impl_real {
    ($t:ty, $gemm:path, $logistic:expr, $tanh:expr) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                <$t>::max(self, other)
            }
            #[inline(always)]
            fn logistic(self) -> Self {
                $logistic(self)
            }
            #[inline(always)]
            fn tanh_activation(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }
        }
    };
}

impl_real!(
    f32,
    matrixmultiply::sgemm,
    fast_f32::logistic,
    fast_f32::tanh
);
impl_real!(
    f64,
    matrixmultiply::dgemm,
    |x: f64| 1.0 / (1.0 + (-x).exp()),
    f64::tanh
);

/// Branch-free single-precision exp, logistic and tanh that the compiler vectorises.
///
/// glibc's scalar `expf`/`tanhf` dominated the f32 time loop (two thirds of the time at N = 64),
/// and they cannot be vectorised. These use the usual range reduction x = n·ln2 + r with
/// |r| ≤ ln2/2, a degree-6 polynomial for e^r and an exponent-bit scale, so every lane runs the
/// same instructions. Relative error is below 4e-7 (tested against f64 over the whole range);
/// float64 keeps libm, so the float64 kernels agree with numpy to round-off.
pub mod fast_f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding and subtracting it rounds to an integer

    /// e^x for x in about [−87.3, 88.3] (clamped outside), relative error < 2e-7.
    #[inline(always)]
    pub fn exp(x: f32) -> f32 {
        let x = x.clamp(-87.3, 88.3);
        let n = (x * LOG2E + ROUND) - ROUND;
        let r = (x - n * LN2_HI) - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        let scale = f32::from_bits((((n as i32) + 127) as u32) << 23);
        p * scale
    }

    /// 1/(1 + e^{−x}).
    #[inline(always)]
    pub fn logistic(x: f32) -> f32 {
        1.0 / (1.0 + exp(-x))
    }

    /// tanh(x): an odd Taylor polynomial below |x| = 0.3, 1 − 2/(e^{2|x|} + 1) above.
    #[inline(always)]
    pub fn tanh(x: f32) -> f32 {
        let a = x.abs();
        let x2 = x * x;
        let small = x
            * (1.0
                + x2 * (-1.0 / 3.0
                    + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0 + x2 * (62.0 / 2835.0)))));
        let large = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
        if a < 0.3 {
            small
        } else {
            large.copysign(x)
        }
    }

    #[cfg(test)]
    mod tests {
        fn check(name: &str, fast: fn(f32) -> f32, exact: fn(f64) -> f64, lo: f32, hi: f32) {
            let steps = 200_000;
            let mut worst = 0.0f64;
            for k in 0..=steps {
                let x = lo + (hi - lo) * (k as f32 / steps as f32);
                let want = exact(x as f64);
                let got = fast(x) as f64;
                let err = (got - want).abs() / want.abs().max(1e-30);
                worst = worst.max(err);
            }
            assert!(worst < 4e-7, "{name}: worst relative error {worst:e}");
        }

        #[test]
        fn fast_functions_are_accurate_to_float32_precision() {
            check("exp", super::exp, f64::exp, -80.0, 80.0);
            check("tanh", super::tanh, f64::tanh, -12.0, 12.0);
            check("tanh near 0", super::tanh, f64::tanh, -0.5, 0.5);
            check(
                "logistic",
                super::logistic,
                |x| 1.0 / (1.0 + (-x).exp()),
                -30.0,
                30.0,
            );
            assert_eq!(super::tanh(0.0), 0.0);
            assert_eq!(super::tanh(50.0), 1.0);
            assert!(super::logistic(-200.0) < 1e-37);
            assert_eq!(super::logistic(200.0), 1.0);
        }
    }
}
