//! Lock-free single-producer single-consumer ring of variable-length byte records.
//!
//! The ring lives entirely inside a [`SharedRegion`] (usually a [`Segment`](crate::segment::Segment)
//! in `/dev/shm`), so the [`Producer`] and the [`Consumer`] may be in different processes. The
//! protocol, the memory layout and a proof sketch are in the [README](#protocol) reproduced below.
//!
//! ```
//! use std::sync::Arc;
//! use charmrs_shm::region::HeapRegion;
//! use charmrs_shm::ring::{self, Consumer, Producer};
//!
//! let region = Arc::new(HeapRegion::new(ring::region_len(4096)));
//! ring::initialize(&*region).unwrap();
//! let mut tx = Producer::attach(region.clone()).unwrap();
//! let mut rx = Consumer::attach(region).unwrap();
//!
//! assert!(tx.try_push(7, &[b"hello ", b"world"]).unwrap());
//! if tx.needs_doorbell() { /* write a byte to the consumer's eventfd/socket */ }
//! assert!(rx.try_pop(|kind, bytes| assert_eq!((kind, bytes), (7, &b"hello world"[..]))));
//! assert!(rx.is_empty());
//! ```
//!
#![doc = include_str!("README.md")]

use std::fmt;
use std::mem::size_of;
use std::ptr::NonNull;

use crate::region::{SharedRegion, REGION_ALIGN};
use crate::sync::{seqcst_fence, AtomicU32, AtomicU64, Ordering};

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;

/// `"chrmring"`: the ring is initialized.
const MAGIC: u64 = u64::from_le_bytes(*b"chrmring");
/// `"chrminit"`: [`initialize`] is in progress.
const MAGIC_INIT: u64 = u64::from_le_bytes(*b"chrminit");
/// Layout version; bump on any incompatible change of the header or record format.
pub const VERSION: u32 = 1;

/// Size of the record header (`u32` length + `u32` kind).
pub const RECORD_HEADER: usize = 8;
/// Records (header + payload) are padded to a multiple of this.
pub const RECORD_ALIGN: usize = 8;
/// Kind value reserved for PAD markers; [`Producer::try_push`] rejects it.
pub const PAD_KIND: u32 = u32::MAX;
/// Smallest data-area capacity accepted.
pub const MIN_CAPACITY: usize = 16;
/// Largest data-area capacity used (larger regions are only partially used).
pub const MAX_CAPACITY: usize = 1 << 40;

/// Pads (and aligns) a header field to its own pair of cache lines, so that the producer-written
/// and the consumer-written counters never share a line, not even with the adjacent-line
/// prefetcher of x86 (hence 128 bytes rather than 64).
#[repr(C, align(128))]
struct Line<T>(T);

/// Read-mostly metadata, written once by [`initialize`].
#[repr(C)]
struct Meta {
    /// [`MAGIC`] once initialized; written last with `Release`.
    magic: AtomicU64,
    version: AtomicU32,
    /// Offset of the data area from the region base, i.e. `size_of::<Header>()`.
    data_offset: AtomicU32,
    /// Data-area capacity in bytes, a power of two.
    capacity: AtomicU64,
    /// 1 while a [`Producer`] is attached.
    producer_attached: AtomicU32,
    /// 1 while a [`Consumer`] is attached.
    consumer_attached: AtomicU32,
}

/// The shared header at offset 0 of the region. Every field is atomic, so any bit pattern is a
/// valid `Header` and no access to it is ever a data race.
#[repr(C)]
struct Header {
    meta: Line<Meta>,
    /// Bytes ever published by the producer (monotonic, only the producer writes it).
    tail: Line<AtomicU64>,
    /// Bytes ever released by the consumer (monotonic, only the consumer writes it).
    head: Line<AtomicU64>,
    /// `episode << 1 | sleeping`: bit 0 is set while the consumer is (about to be) asleep and
    /// wants a doorbell; the upper bits count sleep announcements so that the producer can ring
    /// once per announcement without writing to this line. Written only by the consumer.
    consumer_sleeping: Line<AtomicU64>,
}

/// Offset of the data area from the start of the region.
const DATA_OFFSET: usize = size_of::<Header>();

#[cfg(not(loom))]
const _: () = assert!(DATA_OFFSET == 512 && std::mem::align_of::<Header>() == REGION_ALIGN);

/// Region length needed for a ring whose data area holds `capacity` bytes.
///
/// # Panics
///
/// Panics if `capacity` is not a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
pub fn region_len(capacity: usize) -> usize {
    assert!(
        capacity.is_power_of_two() && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity),
        "ring capacity must be a power of two in {MIN_CAPACITY}..={MAX_CAPACITY}, got {capacity}"
    );
    DATA_OFFSET + capacity
}

/// Total size of a record with a `len`-byte payload.
#[inline]
fn record_size(len: u64) -> u64 {
    (RECORD_HEADER as u64 + len + (RECORD_ALIGN as u64 - 1)) & !(RECORD_ALIGN as u64 - 1)
}

/// Which side of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The [`Producer`].
    Producer,
    /// The [`Consumer`].
    Consumer,
}

/// Errors from [`initialize`], [`Producer::attach`] and [`Consumer::attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RingError {
    /// The region base is not aligned to [`REGION_ALIGN`].
    Misaligned {
        /// The region's base address.
        addr: usize,
    },
    /// The region cannot hold a header plus [`MIN_CAPACITY`] bytes.
    RegionTooSmall {
        /// Region length.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// [`initialize`] found a region that is not zero-filled (already initialized or in use).
    AlreadyInitialized,
    /// Attach found no initialized ring (yet).
    NotInitialized,
    /// The header was written by an incompatible version of this crate.
    Incompatible {
        /// Which field mismatched.
        field: &'static str,
        /// Value found.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// The header holds impossible values.
    Corrupt(&'static str),
    /// The given side of this ring is already attached somewhere.
    AlreadyAttached(Role),
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::Misaligned { addr } => {
                write!(f, "ring region at {addr:#x} is not {REGION_ALIGN}-byte aligned")
            }
            RingError::RegionTooSmall { len, min } => {
                write!(f, "ring region of {len} bytes is too small (need at least {min})")
            }
            RingError::AlreadyInitialized => write!(f, "ring region is already initialized or not zeroed"),
            RingError::NotInitialized => write!(f, "ring region is not initialized"),
            RingError::Incompatible { field, found, expected } => {
                write!(f, "incompatible ring header: {field} is {found:#x}, expected {expected:#x}")
            }
            RingError::Corrupt(what) => write!(f, "corrupt ring header: {what}"),
            RingError::AlreadyAttached(role) => write!(f, "ring {role:?} is already attached"),
        }
    }
}

impl std::error::Error for RingError {}

/// Errors from [`Producer::try_push`]. A full ring is not an error (`Ok(false)`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// The payload can never fit in this ring; send it through the rendezvous path instead.
    TooLarge {
        /// Payload length requested.
        len: usize,
        /// [`Producer::max_record`].
        max: usize,
    },
    /// `kind` was [`PAD_KIND`], which is reserved.
    ReservedKind,
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::TooLarge { len, max } => write!(
                f,
                "record payload of {len} bytes exceeds the ring's maximum of {max} bytes; use the rendezvous path"
            ),
            PushError::ReservedKind => write!(f, "record kind {PAD_KIND:#x} is reserved for PAD markers"),
        }
    }
}

impl std::error::Error for PushError {}

fn check_region<R: SharedRegion + ?Sized>(region: &R) -> Result<(), RingError> {
    let addr = region.as_ptr() as usize;
    if addr % REGION_ALIGN != 0 {
        return Err(RingError::Misaligned { addr });
    }
    let min = DATA_OFFSET + MIN_CAPACITY;
    if region.len() < min {
        return Err(RingError::RegionTooSmall { len: region.len(), min });
    }
    Ok(())
}

/// Reborrows the header at the base of `region`.
///
/// # Safety
///
/// `check_region(region)` must have succeeded, and under `cfg(loom)` the header must have been
/// constructed by [`initialize`].
unsafe fn header<R: SharedRegion + ?Sized>(region: &R) -> &Header {
    // SAFETY: the region is valid, initialized and aligned for `Header` (checked by the caller,
    // `SharedRegion` contract) and at least `DATA_OFFSET` long. Every field of `Header` is an
    // atomic for which any initialized bit pattern is valid, and atomics may be shared between
    // threads/processes through `&`. The lifetime is tied to `region`, which keeps it mapped.
    unsafe { &*region.as_ptr().cast::<Header>() }
}

/// Initializes a ring in a zero-filled region and returns the data-area capacity, which is the
/// largest power of two (at most [`MAX_CAPACITY`]) fitting after the header.
///
/// Call it once, from one process (typically the creator of the segment), before either side
/// attaches.
///
/// # Errors
///
/// [`RingError::Misaligned`], [`RingError::RegionTooSmall`], or
/// [`RingError::AlreadyInitialized`] if the region was not zero-filled.
pub fn initialize<R: SharedRegion + ?Sized>(region: &R) -> Result<usize, RingError> {
    check_region(region)?;
    let capacity = prev_power_of_two(region.len() - DATA_OFFSET).min(MAX_CAPACITY);
    #[cfg(loom)]
    // SAFETY: loom atomics are objects registered with the model and cannot be conjured from
    // zeroed bytes, so under loom (only) the header is constructed in place. The region is
    // valid and aligned for `Header` (checked above) and nobody has attached yet.
    unsafe {
        region.as_ptr().cast::<Header>().write(Header::new_zeroed());
    }
    // SAFETY: `check_region` succeeded just above.
    let hdr = unsafe { header(region) };
    // Claim initialization so that two racing initializers cannot both succeed. `Acquire` is not
    // needed for data, but harmless; the fields below are published by the `Release` on `magic`.
    if hdr.meta.0.magic.compare_exchange(0, MAGIC_INIT, Ordering::Acquire, Ordering::Relaxed).is_err() {
        return Err(RingError::AlreadyInitialized);
    }
    let m = &hdr.meta.0;
    m.version.store(VERSION, Ordering::Relaxed);
    m.data_offset.store(DATA_OFFSET as u32, Ordering::Relaxed);
    m.capacity.store(capacity as u64, Ordering::Relaxed);
    m.producer_attached.store(0, Ordering::Relaxed);
    m.consumer_attached.store(0, Ordering::Relaxed);
    hdr.tail.0.store(0, Ordering::Relaxed);
    hdr.head.0.store(0, Ordering::Relaxed);
    hdr.consumer_sleeping.0.store(0, Ordering::Relaxed);
    // Release: an attacher that Acquire-loads MAGIC sees all the stores above.
    m.magic.store(MAGIC, Ordering::Release);
    Ok(capacity)
}

fn prev_power_of_two(n: usize) -> usize {
    debug_assert!(n > 0);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

#[cfg(loom)]
impl Header {
    fn new_zeroed() -> Self {
        Header {
            meta: Line(Meta {
                magic: AtomicU64::new(0),
                version: AtomicU32::new(0),
                data_offset: AtomicU32::new(0),
                capacity: AtomicU64::new(0),
                producer_attached: AtomicU32::new(0),
                consumer_attached: AtomicU32::new(0),
            }),
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            consumer_sleeping: Line(AtomicU64::new(0)),
        }
    }
}

/// Validated raw view of an initialized ring.
struct View {
    hdr: NonNull<Header>,
    data: NonNull<u8>,
    capacity: u64,
    mask: u64,
    #[cfg(loom)]
    trackers: NonNull<[crate::sync::Tracker]>,
}

impl View {
    /// Validates the header of `region` and claims `role`.
    fn attach<R: SharedRegion>(region: &R, role: Role) -> Result<View, RingError> {
        check_region(region)?;
        // SAFETY: `check_region` succeeded; under loom, `Acquire`-loading MAGIC below proves that
        // `initialize` constructed the header (a loom build never attaches to a foreign region).
        let hdr = unsafe { header(region) };
        let m = &hdr.meta.0;
        // Acquire: pairs with the Release store of MAGIC in `initialize`, so the other metadata
        // read below is the initialized one.
        match m.magic.load(Ordering::Acquire) {
            MAGIC => {}
            0 | MAGIC_INIT => return Err(RingError::NotInitialized),
            found => return Err(RingError::Incompatible { field: "magic", found, expected: MAGIC }),
        }
        let version = m.version.load(Ordering::Relaxed);
        if version != VERSION {
            return Err(RingError::Incompatible {
                field: "version",
                found: version.into(),
                expected: VERSION.into(),
            });
        }
        let offset = m.data_offset.load(Ordering::Relaxed);
        if offset as usize != DATA_OFFSET {
            return Err(RingError::Incompatible {
                field: "data_offset",
                found: offset.into(),
                expected: DATA_OFFSET as u64,
            });
        }
        let capacity = m.capacity.load(Ordering::Relaxed);
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY as u64..=MAX_CAPACITY as u64).contains(&capacity)
            || capacity > (region.len() - DATA_OFFSET) as u64
        {
            return Err(RingError::Corrupt("capacity"));
        }
        // Claim the role. Acquire pairs with the Release in `Drop` of a previous holder, so we see
        // its final counter values.
        let flag = match role {
            Role::Producer => &m.producer_attached,
            Role::Consumer => &m.consumer_attached,
        };
        if flag.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(RingError::AlreadyAttached(role));
        }
        let base = region.as_ptr();
        Ok(View {
            hdr: NonNull::from(hdr),
            // SAFETY: `DATA_OFFSET + capacity <= region.len()` was checked, so the data area is
            // in bounds; `base` is non-null, so is `base + DATA_OFFSET`.
            data: unsafe { NonNull::new_unchecked(base.add(DATA_OFFSET)) },
            capacity,
            mask: capacity - 1,
            #[cfg(loom)]
            trackers: NonNull::from(region.loom_trackers()),
        })
    }

    #[inline]
    fn hdr(&self) -> &Header {
        // SAFETY: `hdr` points into the region that the owning `Producer`/`Consumer` keeps alive
        // for at least as long as `self`; see `header()` for why sharing it is sound.
        unsafe { self.hdr.as_ref() }
    }

    /// Tells loom about an access to data bytes `pos..pos + len`.
    #[cfg(loom)]
    fn track(&self, pos: u64, len: u64, write: bool) {
        // SAFETY: the trackers belong to the region that outlives `self`.
        let trackers = unsafe { self.trackers.as_ref() };
        if trackers.is_empty() || len == 0 {
            return;
        }
        let first = (DATA_OFFSET as u64 + pos) / 8;
        let last = (DATA_OFFSET as u64 + pos + len - 1) / 8;
        for t in &trackers[first as usize..=last as usize] {
            if write {
                t.with_mut(|_| ());
            } else {
                t.with(|_| ());
            }
        }
    }

    #[cfg(not(loom))]
    #[inline(always)]
    fn track(&self, _pos: u64, _len: u64, _write: bool) {}

    /// Pointer to data byte `pos` (`pos < capacity`).
    #[inline]
    fn at(&self, pos: u64) -> *mut u8 {
        debug_assert!(pos < self.capacity);
        // SAFETY: `pos < capacity` and the data area is `capacity` bytes long.
        unsafe { self.data.as_ptr().add(pos as usize) }
    }

    fn release(&self, role: Role) {
        let m = &self.hdr().meta.0;
        let flag = match role {
            Role::Producer => &m.producer_attached,
            Role::Consumer => &m.consumer_attached,
        };
        // Release: a later attacher of the same role (Acquire CAS) sees our final counters.
        flag.store(0, Ordering::Release);
    }
}

#[cold]
#[inline(never)]
fn corrupt(what: &str, a: u64, b: u64) -> ! {
    panic!("charmrs-shm: ring protocol violated or memory corrupted: {what} ({a} vs {b})")
}

/// The sending side of a ring. At most one exists per ring at a time (enforced at attach).
pub struct Producer<R: SharedRegion> {
    view: View,
    /// Private copy of the shared `tail`: we are its only writer.
    tail: u64,
    /// Private, possibly stale copy of the shared `head` (a lower bound of the real one).
    cached_head: u64,
    /// Something was published since the last [`Producer::needs_doorbell`].
    unsignaled: bool,
    /// The `consumer_sleeping` word of the last announcement we rang for.
    last_rung: u64,
    region: R,
}

// SAFETY: the producer's raw pointers point into `region`, which it owns; moving it to another
// thread moves the whole side of the protocol (nothing is thread-local).
unsafe impl<R: SharedRegion + Send> Send for Producer<R> {}

impl<R: SharedRegion> Producer<R> {
    /// Attaches the producer side of the ring initialized in `region`.
    ///
    /// # Errors
    ///
    /// See [`RingError`]; notably [`RingError::NotInitialized`] and
    /// [`RingError::AlreadyAttached`].
    pub fn attach(region: R) -> Result<Self, RingError> {
        let view = View::attach(&region, Role::Producer)?;
        let hdr = view.hdr();
        let tail = hdr.tail.0.load(Ordering::Relaxed);
        let cached_head = hdr.head.0.load(Ordering::Acquire);
        if cached_head > tail || tail - cached_head > view.capacity {
            view.release(Role::Producer);
            return Err(RingError::Corrupt("head/tail"));
        }
        Ok(Producer { view, tail, cached_head, unsignaled: false, last_rung: 0, region })
    }

    /// [`initialize`]s a zero-filled `region`, then [`attach`](Self::attach)es to it.
    ///
    /// # Errors
    ///
    /// As [`initialize`] and [`attach`](Self::attach).
    pub fn create(region: R) -> Result<Self, RingError> {
        initialize(&region)?;
        Self::attach(region)
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.view.capacity as usize
    }

    /// Largest payload (in bytes) that [`try_push`](Self::try_push) will ever accept:
    /// `capacity - 8`. Larger payloads must take the rendezvous path.
    pub fn max_record(&self) -> usize {
        (self.view.capacity - RECORD_HEADER as u64).min(u32::MAX as u64) as usize
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Whether `need` more bytes fit, refreshing the cached head if necessary.
    #[inline]
    fn has_space(&mut self, need: u64) -> bool {
        if self.view.capacity - (self.tail - self.cached_head) >= need {
            return true;
        }
        // Acquire: pairs with the consumer's Release store of `head` after it finished reading the
        // released bytes, so those reads happen-before our upcoming writes to the same bytes.
        let head = self.view.hdr().head.0.load(Ordering::Acquire);
        if head < self.cached_head || head > self.tail {
            corrupt("head moved backwards or past tail", head, self.tail);
        }
        self.cached_head = head;
        self.view.capacity - (self.tail - head) >= need
    }

    /// Writes a record header at the current tail.
    #[inline]
    fn write_header(&self, pos: u64, len: u32, kind: u32) {
        self.view.track(pos, RECORD_HEADER as u64, true);
        let word = u64::from(len) | (u64::from(kind) << 32);
        // SAFETY: `pos` is 8-aligned (all record sizes are multiples of 8 and the data area is
        // 128-aligned) and `pos + 8 <= capacity` (every free gap is a multiple of 8 and non-empty).
        // The bytes are free: `has_space` proved the consumer released them (Acquire on `head`),
        // and the consumer will not read them before our Release store of `tail`.
        unsafe { self.view.at(pos).cast::<u64>().write(word) }
    }

    /// Publishes everything written so far.
    #[inline]
    fn publish(&mut self) {
        self.unsignaled = true;
        // Release: all record bytes written before this store happen-before any consumer read
        // that observes the new tail through its Acquire load.
        self.view.hdr().tail.0.store(self.tail, Ordering::Release);
    }

    /// Appends one record of kind `kind` whose payload is the concatenation of `parts`.
    ///
    /// Never blocks. Returns `Ok(true)` if the record was published, `Ok(false)` if the ring is
    /// currently too full (retry later; the call may still have published a PAD marker so that
    /// the record can be placed at offset 0 once the consumer catches up).
    ///
    /// After each call or batch of calls, whatever they returned, call
    /// [`needs_doorbell`](Self::needs_doorbell): a `false` return may still have published a PAD
    /// that a sleeping consumer must skip before the record can fit.
    ///
    /// # Errors
    ///
    /// [`PushError::TooLarge`] if the payload exceeds [`max_record`](Self::max_record) (it could
    /// never fit), [`PushError::ReservedKind`] if `kind == PAD_KIND`. Nothing is written then.
    pub fn try_push(&mut self, kind: u32, parts: &[&[u8]]) -> Result<bool, PushError> {
        if kind == PAD_KIND {
            return Err(PushError::ReservedKind);
        }
        let max = self.max_record();
        let len = parts.iter().try_fold(0usize, |acc, p| acc.checked_add(p.len()));
        let len = match len {
            Some(len) if len <= max => len,
            _ => {
                return Err(PushError::TooLarge {
                    len: parts.iter().fold(0usize, |a, p| a.saturating_add(p.len())),
                    max,
                })
            }
        };
        let rec = record_size(len as u64);
        let mut pos = self.tail & self.view.mask;
        let to_end = self.view.capacity - pos;
        if rec > to_end {
            // The record would straddle the end of the data area: fill the rest with a PAD and
            // put the record at offset 0.
            let fits = self.has_space(to_end + rec);
            if !fits && !self.has_space(to_end) {
                return Ok(false);
            }
            // The PAD's payload length makes its total size exactly `to_end`.
            self.write_header(pos, (to_end - RECORD_HEADER as u64) as u32, PAD_KIND);
            self.tail += to_end;
            pos = 0;
            if !fits {
                // Publish the PAD anyway: once the consumer skips it, the whole ring is free,
                // which guarantees progress for any record up to `max_record` (without this an
                // empty ring could be unable to take a record longer than `pos`).
                self.publish();
                return Ok(false);
            }
        } else if !self.has_space(rec) {
            return Ok(false);
        }
        self.write_header(pos, len as u32, kind);
        self.view.track(pos + RECORD_HEADER as u64, len as u64, true);
        let mut dst = self.view.at(pos).wrapping_add(RECORD_HEADER);
        for part in parts {
            // SAFETY: the payload area `pos + 8 .. pos + 8 + len` lies within the record, which
            // fits before the end of the data area (`rec <= capacity - pos`) and in free space
            // (see `write_header`). `part` is a live slice that cannot overlap the ring's free
            // space (nobody holds references into it).
            unsafe {
                std::ptr::copy_nonoverlapping(part.as_ptr(), dst, part.len());
                dst = dst.add(part.len());
            }
        }
        self.tail += rec;
        self.publish();
        Ok(true)
    }

    /// Reports whether the consumer announced that it is going to sleep and must be woken; if it
    /// returns `true` the caller must ring the consumer's doorbell (e.g. write a byte to its
    /// eventfd or socket).
    ///
    /// Call it after every [`try_push`](Self::try_push) or batch of them, **including pushes that
    /// returned `Ok(false)`** (they may have published a PAD), and in any case before the producer
    /// stops pushing or waits for space. It issues a `SeqCst` fence (the producer half of the
    /// Dekker handshake described in the README), so batching amortizes its cost; if nothing was
    /// published since the previous call it returns `false` without any shared-memory access. At
    /// most one `true` is returned per sleep announcement.
    pub fn needs_doorbell(&mut self) -> bool {
        if !std::mem::take(&mut self.unsignaled) {
            // Every publication so far was followed by a call that executed the fence below.
            return false;
        }
        let flag = &self.view.hdr().consumer_sleeping.0;
        // SeqCst fence between our Release store of `tail` (in `try_push`) and the load of the
        // flag below; paired with the consumer's fence between its store of the flag and its
        // re-check of `tail`. In the single total order of SeqCst fences one of the two comes
        // first, so either we see the flag or the consumer sees the new tail (no lost wakeup).
        seqcst_fence();
        // Relaxed suffices: the ordering comes from the fences, and the doorbell itself (a
        // syscall) synchronizes the consumer with everything we did before ringing it. We never
        // write the flag: remembering the announcement we rang for (its episode number is in the
        // word) dedups doorbells without an RMW on the consumer's line.
        let word = flag.load(Ordering::Relaxed);
        if word & 1 == 1 && word != self.last_rung {
            self.last_rung = word;
            true
        } else {
            false
        }
    }
}

impl<R: SharedRegion> Drop for Producer<R> {
    fn drop(&mut self) {
        self.view.release(Role::Producer);
    }
}

impl<R: SharedRegion> fmt::Debug for Producer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.view.capacity)
            .field("tail", &self.tail)
            .field("cached_head", &self.cached_head)
            .finish_non_exhaustive()
    }
}

/// The receiving side of a ring. At most one exists per ring at a time (enforced at attach).
pub struct Consumer<R: SharedRegion> {
    view: View,
    /// Private copy of the shared `head`: we are its only writer.
    head: u64,
    /// Private, possibly stale copy of the shared `tail` (a lower bound of the real one).
    cached_tail: u64,
    /// Number of sleep announcements so far (the upper bits of `consumer_sleeping`).
    episode: u64,
    region: R,
}

// SAFETY: as for `Producer`.
unsafe impl<R: SharedRegion + Send> Send for Consumer<R> {}

impl<R: SharedRegion> Consumer<R> {
    /// Attaches the consumer side of the ring initialized in `region`.
    ///
    /// # Errors
    ///
    /// See [`RingError`]; notably [`RingError::NotInitialized`] and
    /// [`RingError::AlreadyAttached`].
    pub fn attach(region: R) -> Result<Self, RingError> {
        let view = View::attach(&region, Role::Consumer)?;
        let head = view.hdr().head.0.load(Ordering::Relaxed);
        let episode = view.hdr().consumer_sleeping.0.load(Ordering::Relaxed) >> 1;
        // Clear a sleeping bit a previous consumer may have left behind.
        view.hdr().consumer_sleeping.0.store(episode << 1, Ordering::Relaxed);
        Ok(Consumer { view, head, cached_tail: head, episode, region })
    }

    /// [`initialize`]s a zero-filled `region`, then [`attach`](Self::attach)es to it.
    ///
    /// # Errors
    ///
    /// As [`initialize`] and [`attach`](Self::attach).
    pub fn create(region: R) -> Result<Self, RingError> {
        initialize(&region)?;
        Self::attach(region)
    }

    /// Data-area capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.view.capacity as usize
    }

    /// The region the ring lives in.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Removes the oldest record, if any, and passes its kind and payload to `f`.
    ///
    /// The payload slice points directly into the ring; the space is released to the producer
    /// only after `f` returns. Returns `false` (without calling `f`) if no record is available.
    /// PAD markers are skipped internally.
    ///
    /// If `f` panics, the record is not consumed.
    ///
    /// # Panics
    ///
    /// Panics if the shared header or a record header is inconsistent, which can only happen if
    /// a peer violated the protocol or the memory was corrupted.
    pub fn try_pop<F: FnOnce(u32, &[u8])>(&mut self, f: F) -> bool {
        loop {
            if self.head == self.cached_tail {
                // Acquire: pairs with the producer's Release store of `tail`, so every record byte
                // below the loaded tail is visible before we read it.
                let tail = self.view.hdr().tail.0.load(Ordering::Acquire);
                if tail < self.cached_tail || tail - self.head > self.view.capacity {
                    corrupt("tail moved backwards or past head + capacity", tail, self.head);
                }
                self.cached_tail = tail;
                if tail == self.head {
                    return false;
                }
            }
            let pos = self.head & self.view.mask;
            let to_end = self.view.capacity - pos;
            let avail = self.cached_tail - self.head;
            self.view.track(pos, RECORD_HEADER as u64, false);
            // SAFETY: `pos` is 8-aligned with `pos + 8 <= capacity` (see `write_header`); the
            // bytes were published by the producer (head < tail, Acquire above) and the producer
            // does not touch them until we release them by advancing `head`.
            let word = unsafe { self.view.at(pos).cast::<u64>().read() };
            let (len, kind) = (word as u32, (word >> 32) as u32);
            let rec = record_size(u64::from(len));
            if rec > to_end || rec > avail {
                corrupt("record overruns the ring or the published data", rec, avail.min(to_end));
            }
            if kind == PAD_KIND {
                if rec != to_end {
                    corrupt("PAD does not end at the end of the data area", rec, to_end);
                }
                self.head += rec;
                // Release: hand the skipped bytes back (nothing was read from them but the header,
                // which the Release still orders before the producer's reuse).
                self.view.hdr().head.0.store(self.head, Ordering::Release);
                continue;
            }
            self.view.track(pos + RECORD_HEADER as u64, u64::from(len), false);
            // SAFETY: the payload `pos + 8 .. pos + 8 + len` is inside the published record
            // (checked against `avail` and `to_end` above). It is not written by anybody until we
            // advance `head` below, after `f` has returned and the borrow has ended.
            let payload =
                unsafe { std::slice::from_raw_parts(self.view.at(pos).add(RECORD_HEADER), len as usize) };
            f(kind, payload);
            self.head += rec;
            // Release: our reads of the record (in `f`) happen-before the producer's Acquire load
            // that observes this head and lets it overwrite the bytes.
            self.view.hdr().head.0.store(self.head, Ordering::Release);
            return true;
        }
    }

    /// Cheap emptiness check: no read-modify-write and no fence, at most one relaxed load of the
    /// shared tail.
    ///
    /// `false` may be returned when only a PAD marker is left (then `try_pop` returns `false`
    /// and skips it). Since the producer runs concurrently, `true` is only a snapshot.
    pub fn is_empty(&self) -> bool {
        // Relaxed is enough: this is a hint; `try_pop` does the Acquire load before reading
        // records, and in `prepare_sleep` the SeqCst fence orders this load.
        self.head == self.cached_tail && self.head == self.view.hdr().tail.0.load(Ordering::Relaxed)
    }

    /// Announces that the consumer wants to sleep until a doorbell arrives, then re-checks the
    /// ring.
    ///
    /// Returns `true` if the ring is still empty: the caller may now block on its doorbell (and
    /// must call [`end_sleep`](Self::end_sleep) when it wakes up). Returns `false` if records
    /// arrived in the meantime: the announcement is withdrawn and the caller should pop them.
    ///
    /// Protocol (see README): store `consumer_sleeping = episode << 1 | 1`, SeqCst fence, re-check
    /// `tail`.
    pub fn prepare_sleep(&mut self) -> bool {
        let flag = &self.view.hdr().consumer_sleeping.0;
        self.episode += 1;
        flag.store(self.episode << 1 | 1, Ordering::Relaxed);
        // SeqCst fence between the flag store and the tail re-check; see `needs_doorbell`.
        seqcst_fence();
        if self.is_empty() {
            true
        } else {
            // Withdraw. A producer may already have seen the announcement and rung: that doorbell
            // is merely spurious.
            flag.store(self.episode << 1, Ordering::Relaxed);
            false
        }
    }

    /// Withdraws a sleep announcement after waking up (by doorbell, timeout or anything else).
    pub fn end_sleep(&mut self) {
        self.view.hdr().consumer_sleeping.0.store(self.episode << 1, Ordering::Relaxed);
    }
}

impl<R: SharedRegion> Drop for Consumer<R> {
    fn drop(&mut self) {
        self.view.release(Role::Consumer);
    }
}

impl<R: SharedRegion> fmt::Debug for Consumer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.view.capacity)
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .finish_non_exhaustive()
    }
}
