//! Memory regions that a ring can live in.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;

/// Alignment every [`SharedRegion`] must provide (two cache lines).
pub const REGION_ALIGN: usize = 128;

/// A fixed, initialized byte range that can be shared between one producer and one consumer, in
/// the same process or in different processes.
///
/// # Safety
///
/// Implementors guarantee that, for as long as the value is alive:
///
/// * [`as_ptr`](Self::as_ptr) always returns the same pointer, which is non-null,
///   [`REGION_ALIGN`]-aligned and valid for reads and writes of [`len`](Self::len) bytes;
/// * the bytes are initialized (any content, e.g. zero-filled by `ftruncate` or `alloc_zeroed`);
/// * the memory is not accessed through Rust references (`&[u8]`/`&mut [u8]`) by anybody, only
///   through raw pointers by the code of this crate and by peers running the same protocol.
pub unsafe trait SharedRegion {
    /// Base address of the region.
    fn as_ptr(&self) -> *mut u8;

    /// Length of the region in bytes.
    fn len(&self) -> usize;

    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loom access trackers, one per 8-byte word of the region (loom builds only).
    #[cfg(loom)]
    #[doc(hidden)]
    fn loom_trackers(&self) -> &[crate::sync::Tracker] {
        &[]
    }
}

// SAFETY: `Arc` derefs to the same `T` for its whole lifetime, so every guarantee of `T` carries
// over unchanged.
unsafe impl<T: SharedRegion + ?Sized> SharedRegion for Arc<T> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }

    fn len(&self) -> usize {
        (**self).len()
    }

    #[cfg(loom)]
    fn loom_trackers(&self) -> &[crate::sync::Tracker] {
        (**self).loom_trackers()
    }
}

/// A zero-filled, [`REGION_ALIGN`]-aligned heap allocation usable as a [`SharedRegion`].
///
/// Used for rings between threads of one process and for tests; share it between the producer
/// and the consumer with an [`Arc`].
pub struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
    #[cfg(loom)]
    trackers: Box<[crate::sync::Tracker]>,
}

impl HeapRegion {
    /// Allocates `len` zeroed bytes.
    ///
    /// # Panics
    ///
    /// Panics if `len` is zero or too large for a [`Layout`]; aborts on allocation failure.
    pub fn new(len: usize) -> Self {
        assert!(len > 0, "HeapRegion must not be empty");
        let layout = Layout::from_size_align(len, REGION_ALIGN).expect("HeapRegion length too large");
        // SAFETY: `layout` has a non-zero size (checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        HeapRegion {
            ptr,
            layout,
            #[cfg(loom)]
            trackers: (0..len.div_ceil(8)).map(|_| crate::sync::Tracker::new(())).collect(),
        }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed(self.layout)` and is freed exactly once.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for HeapRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapRegion").field("ptr", &self.ptr).field("len", &self.layout.size()).finish()
    }
}

// SAFETY: the allocation is owned by the `HeapRegion` and only ever accessed through raw pointers
// following the ring protocol, which synchronizes all cross-thread accesses with atomics.
unsafe impl Send for HeapRegion {}
// SAFETY: see `Send`; `&HeapRegion` exposes nothing but the raw pointer and length.
unsafe impl Sync for HeapRegion {}

// SAFETY: the allocation lives (unmoved) as long as `self`, is `REGION_ALIGN`-aligned, zero-filled
// at creation, and `HeapRegion` never creates references to its contents.
unsafe impl SharedRegion for HeapRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn len(&self) -> usize {
        self.layout.size()
    }

    #[cfg(loom)]
    fn loom_trackers(&self) -> &[crate::sync::Tracker] {
        &self.trackers
    }
}
