//! The library's heap is wiped on free (feature `wipe-heap`, on by default).
//!
//! The client secret and bearer tokens are held as [`crate::redact::Secret`]s, wiped when
//! dropped, but the HTTP stack copies them on the way out (the token request's URL, the
//! `Authorization` header, connection buffers) into memory it frees without wiping, and a
//! freed block keeps its bytes until reused: a core dump or another process reading this
//! one's memory would find them long after `fo_client_close`. So every block the library's
//! Rust code frees is zeroed first. The cost is one `memset` per free, small next to the
//! JSON parsing and SQLite work each call already does (the benchmarks run with it on).
//!
//! In the shared and static libraries this covers the library's own allocations only (the
//! POS's allocator is untouched). A Rust program using the crate gets it process-wide; one
//! that needs its own global allocator turns the feature off (`default-features = false`)
//! and loses this guarantee.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct WipeOnFree;

/// Zeroes `len` bytes at `ptr` in a way the optimiser cannot drop as a dead store before
/// the free that follows.
#[inline]
unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller owns `len` bytes at `ptr`.
    unsafe { std::ptr::write_bytes(ptr, 0, len) };
    std::hint::black_box(ptr);
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

// SAFETY: every method forwards to `System` with the same layout; `dealloc` and `realloc`
// only write to memory the caller still owns before handing it back.
unsafe impl GlobalAlloc for WipeOnFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the block is the caller's until it is freed below.
        unsafe {
            wipe(ptr, layout.size());
            System.dealloc(ptr, layout);
        }
    }

    /// Never `realloc` in place: the C allocator would move a block without wiping the old
    /// one (or keep the cut tail of a shrunk one). A new block, a copy, the old one wiped.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` is valid for `layout.align()` per GlobalAlloc's contract.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block of the new layout.
        let new = unsafe { System.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_block_is_zeroed_before_it_goes_back() {
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: blocks from the allocator under test, used within their sizes, freed
        // with their layouts.
        unsafe {
            let p = WipeOnFree.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xAB, 64);
            // Growing keeps the contents (in a new block).
            let q = WipeOnFree.realloc(p, layout, 256);
            assert!(!q.is_null());
            assert!(std::slice::from_raw_parts(q, 64).iter().all(|&b| b == 0xAB));
            wipe(q, 256);
            assert!(std::slice::from_raw_parts(q, 256).iter().all(|&b| b == 0));
            WipeOnFree.dealloc(q, Layout::from_size_align(256, 8).unwrap());
        }
    }
}
