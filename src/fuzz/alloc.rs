//! The binary's global allocator: the system one, plus (only while `dinov2 bench fuzz`'s
//! worker has switched it on; one relaxed load otherwise) a count of live bytes, their peak
//! and a hard cap. An allocation that would take the live bytes more than the cap above where
//! the current input started fails, and Rust aborts with "memory allocation of N bytes
//! failed": the supervising parent records the input as an over-allocation. Allocations of C
//! code (libjpeg-turbo, LMDB's pages, mmap) are not seen here; peak RSS covers them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static CAP: AtomicUsize = AtomicUsize::new(usize::MAX);

impl Counting {
    #[inline]
    fn grow(&self, n: usize) -> bool {
        let live = LIVE.fetch_add(n, Relaxed) + n;
        if live > CAP.load(Relaxed) {
            LIVE.fetch_sub(n, Relaxed);
            return false;
        }
        PEAK.fetch_max(live, Relaxed);
        true
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.load(Relaxed) && !self.grow(l.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(l) }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if ON.load(Relaxed) && !self.grow(l.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(l) }
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if ON.load(Relaxed) {
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        unsafe { System.dealloc(p, l) }
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if ON.load(Relaxed) {
            if new > l.size() {
                if !self.grow(new - l.size()) {
                    return std::ptr::null_mut();
                }
            } else {
                LIVE.fetch_sub(l.size() - new, Relaxed);
            }
        }
        unsafe { System.realloc(p, l, new) }
    }
}

/// Starts counting (once, in a fuzz worker). Bytes freed that were allocated before are
/// subtracted too, so the count starts from 2^62 rather than 0; only differences are used.
pub fn enable() {
    LIVE.store(1 << 62, Relaxed);
    ON.store(true, Relaxed);
}

/// Marks the start of an input: the peak is reset and allocations are capped at `cap` bytes
/// live above the current level. Returns the level.
pub fn begin(cap: usize) -> usize {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    CAP.store(base.saturating_add(cap), Relaxed);
    base
}

/// Ends an input: the cap is lifted; returns the peak live bytes above `base`.
pub fn end(base: usize) -> usize {
    CAP.store(usize::MAX, Relaxed);
    PEAK.load(Relaxed).saturating_sub(base)
}
