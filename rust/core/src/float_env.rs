//! Flush-to-zero / denormals-are-zero for the duration of a kernel call.
//!
//! A CTRNN whose state decays towards zero produces subnormal floats, and arithmetic on them is
//! 10–100× slower on x86. Every kernel entry point holds a [`FlushDenormals`] guard, which sets
//! the FTZ and DAZ bits of this thread's MXCSR and restores the previous value when dropped. On
//! other architectures it does nothing.

/// Guard that enables FTZ/DAZ on the current thread until dropped.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushDenormals {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            write_mxcsr(saved | FTZ_DAZ);
            FlushDenormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FlushDenormals {}
        }
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.saved);
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut value: u32 = 0;
    // SAFETY: stmxcsr stores the 32-bit MXCSR register to the given, valid address.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags));
    }
    value
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(value: u32) {
    // SAFETY: ldmxcsr loads MXCSR from a valid address; we only toggle the FTZ/DAZ bits or
    // restore a value previously read from the register.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, preserves_flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn subnormals_flush_inside_the_guard_only() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        assert!(
            tiny * half > 0.0,
            "without the guard the product is subnormal"
        );
        {
            let _guard = FlushDenormals::new();
            assert_eq!(std::hint::black_box(tiny) * half, 0.0);
        }
        assert!(tiny * half > 0.0, "the guard restores MXCSR");
    }
}
