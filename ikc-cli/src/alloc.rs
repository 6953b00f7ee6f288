//! [`Mimalloc`]: mimalloc as the global allocator, taking its plain
//! `mi_malloc` path for every allocation whose alignment that path gives.
//!
//! The `mimalloc` crate's `GlobalAlloc` passes every allocation to
//! `mi_malloc_aligned`, which decides again per call what `mi_malloc`
//! would have done (about 30 instructions more per allocation on an ikc
//! call's path; upstream: purpleprotocol/mimalloc_rust#170). Rust states
//! each allocation's alignment, so the decision is made here, inlined,
//! with mimalloc's own rule (`mi_malloc_is_naturally_aligned`): a block of
//! at least `align` bytes with `align` at most 16 is aligned to it. Any
//! other layout goes to the crate's allocator, as does every free.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use mimalloc::MiMalloc;

/// The largest alignment `mi_malloc` gives every block of at least that
/// size (mimalloc's `MI_MAX_ALIGN_SIZE`).
const NATURAL_ALIGN: usize = 16;

/// mimalloc, with the plain path taken where it suffices; see the
/// [module docs](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct Mimalloc;

/// Whether `mi_malloc(size)` is aligned to `align` (a power of two).
#[inline]
fn natural(size: usize, align: usize) -> bool {
    align <= NATURAL_ALIGN && align <= size
}

// SAFETY: each method hands its layout's request to mimalloc, either to
// the plain functions where they return a block aligned as the layout asks
// (see `natural`) or to `MiMalloc`; every block is freed by `mi_free`,
// which takes blocks of either path.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if natural(layout.size(), layout.align()) {
            // SAFETY: any size may be asked of `mi_malloc`.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if natural(layout.size(), layout.align()) {
            // SAFETY: any size may be asked of `mi_zalloc`.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if natural(new_size, layout.align()) {
            // SAFETY: `ptr` came from mimalloc; a block that moves is
            // allocated as `mi_malloc(new_size)` is, aligned (`natural`).
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast::<c_void>(), new_size).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment up to a page's worth, each path: blocks
    /// aligned as asked, writable, reallocated with their contents.
    #[test]
    fn blocks_are_aligned_as_their_layout_asks() {
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in (1..=256).chain([1000, 4096, 70_000]) {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a layout of non-zero size; each block is written
                // within its size and freed once, with its layout.
                unsafe {
                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size} align {align}");
                    block.write_bytes(0xA5, size);
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(
                        zeroed as usize % align,
                        0,
                        "zeroed size {size} align {align}"
                    );
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    Mimalloc.dealloc(zeroed, layout);
                    let grown = Mimalloc.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0, "grown size {size} align {align}");
                    assert!((0..size).all(|i| *grown.add(i) == 0xA5));
                    Mimalloc.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
