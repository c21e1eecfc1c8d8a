//! Large scratch buffers kept between kernel calls.
//!
//! A kernel call allocates megabytes of scratch (the backward pass's stored substeps, the
//! transposed weights). Allocations that large are mapped fresh by the allocator and unmapped
//! when freed, so every call pays one page fault per 4 KiB page on first touch, on every thread
//! at once. On the 2-core development machine that made a 2-thread BPTT call at N = 200 only
//! 1.25× faster than one thread, against 1.8× with the memory kept (`docs/ctrnn.md`).
//!
//! [`ScratchBuffer`] takes a released buffer of at least the size it needs from a process-wide
//! pool and zero-fills it (a pass over memory that is already mapped), or allocates a new one;
//! dropping it gives the memory back to the pool. The pool holds at most
//! `RNNLAB_SCRATCH_POOL_MB` megabytes (default 256; 0 turns it off), dropping the oldest
//! buffers first, and only buffers of 1 MiB or more go through it.
//!
//! Fork safety: the pool's lock is only ever taken with `try_lock`. In a child forked while
//! another thread held it, every attempt fails and buffers are simply allocated and freed as
//! without the pool.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, OnceLock};

use crate::real::Real;

/// Buffers smaller than this are allocated and freed as usual.
const MIN_POOLED_BYTES: usize = 1 << 20;

/// Released buffers, oldest first (as 8-byte words, the alignment of f64).
static POOL: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

fn pool_limit_bytes() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::env::var("RNNLAB_SCRATCH_POOL_MB")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|mb| mb.is_finite() && *mb >= 0.0)
            .map_or(256 << 20, |mb| (mb * 1024.0 * 1024.0) as usize)
    })
}

/// The smallest pooled buffer with room for `words` words, if the pool is free to look.
fn take(words: usize) -> Option<Vec<u64>> {
    let mut pool = POOL.try_lock().ok()?;
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, buffer)| buffer.capacity() >= words)
        .min_by_key(|(_, buffer)| buffer.capacity())
        .map(|(index, _)| index)?;
    Some(pool.remove(best))
}

fn give_back(buffer: Vec<u64>) {
    let bytes = buffer.capacity() * 8;
    let limit = pool_limit_bytes();
    if bytes < MIN_POOLED_BYTES || bytes > limit {
        return;
    }
    let Ok(mut pool) = POOL.try_lock() else {
        return;
    };
    let mut held: usize = pool.iter().map(|b| b.capacity() * 8).sum();
    while held + bytes > limit && !pool.is_empty() {
        held -= pool.remove(0).capacity() * 8;
    }
    pool.push(buffer);
}

/// A zero-initialised `[T]` of fixed length whose memory comes from, and returns to, the pool.
pub struct ScratchBuffer<T: Real> {
    words: Vec<u64>,
    len: usize,
    _values: PhantomData<T>,
}

impl<T: Real> ScratchBuffer<T> {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Self {
        // `Real` is sealed and implemented for f32 and f64 only: both are at most 8 bytes with
        // an alignment of at most 8, and every bit pattern (all zeros included) is a valid value.
        const { assert!(std::mem::size_of::<T>() <= 8 && std::mem::align_of::<T>() <= 8) };
        let words = (len * std::mem::size_of::<T>()).div_ceil(8);
        let storage = if words * 8 >= MIN_POOLED_BYTES {
            take(words)
        } else {
            None
        };
        let words = match storage {
            Some(mut buffer) => {
                buffer.clear();
                buffer.resize(words, 0);
                buffer
            }
            None => vec![0u64; words],
        };
        ScratchBuffer {
            words,
            len,
            _values: PhantomData,
        }
    }
}

impl<T: Real> Deref for ScratchBuffer<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `words` holds at least len·size_of::<T>() bytes, aligned to 8 ≥ align_of::<T>(),
        // initialised (zeros or values written through `deref_mut`), and any bit pattern is a
        // valid f32/f64 (see `zeroed`).
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Real> DerefMut for ScratchBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; the borrow of `self` makes it unique.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<T>(), self.len) }
    }
}

impl<T: Real> Drop for ScratchBuffer<T> {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.words));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_come_back_zeroed_and_sized() {
        let len = (3 << 20) / 8;
        let mut first = ScratchBuffer::<f64>::zeroed(len);
        first.iter_mut().for_each(|v| *v = 7.5);
        drop(first);
        let second = ScratchBuffer::<f32>::zeroed(len + 3);
        assert_eq!(second.len(), len + 3);
        assert!(second.iter().all(|v| *v == 0.0));
        let small = ScratchBuffer::<f64>::zeroed(5);
        assert_eq!(&small[..], &[0.0; 5]);
    }
}
