//! Out-of-band buffers: the large byte runs of a message between processes travel
//! beside its serialized form instead of inside it, and [`PodVec`], the argument type
//! that uses them.
//!
//! serde sees a `Vec<f64>` as a sequence and encodes it element by element: for a large
//! numeric argument that is most of the cost of a message between processes (measured:
//! a 1 MiB `Vec<f64>` round trip was capped near 1.5 GB/s by serde, whatever the
//! transport). A [`PodVec`] is encoded as its raw bytes instead, and while a message is
//! being built for another process (see [`collecting`]) those bytes are not even copied
//! into the message: the encoder records where they are and the transport copies them
//! once, straight into the shared-memory buffer or the socket, after the message's
//! header (the same idea as pickle protocol 5's out-of-band buffers, which the Python
//! package will use for numpy arrays). On arrival the decoder copies each run once into
//! the new vector: one copy on each side, as a raw memcpy through shared memory does.
//!
//! Only entry-method and constructor arguments go out of band: future values and
//! partial reductions are kept as bytes for a typed consumer that decodes them later,
//! so what they contain is encoded inline (the same bytes, in the message).
//!
//! Decoding borrows the message through a thread-local pointer (the one `unsafe` block
//! here), because a serde `Deserialize` has no other way to reach data beside its input.
//!
//! Written by hand because serde has no notion of out-of-band data (`serde_bytes` only
//! avoids the element-by-element encoding, and still copies into the message).

#![allow(unsafe_code)] // the decoding pointer and one copy into a new vector: see the SAFETY comments
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use charmrs_comm::transport::Tail;
use serde::de::{self, EnumAccess, SeqAccess, VariantAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Byte runs shorter than this stay in the message: setting one aside costs a few
/// bookkeeping steps and a record in the message's trailer, which pays only once the
/// copy it saves is longer than that.
pub(crate) const OOB_MIN: usize = 1024;

/// Bytes kept alive by their owner, which a message can send out of band: the owner
/// is kept until the transport has copied them (during the send that encodes the
/// message, on the thread that sends it), whatever happens to the value it came from.
///
/// [`PodVec`] uses it for its vector; [`serialize_oob`] lets a foreign buffer (a numpy
/// array in the Python package) travel the same way without being copied into a
/// vector first. `bytes` must return the same bytes for as long as the owner lives.
pub trait OobBytes {
    /// The bytes.
    fn bytes(&self) -> &[u8];
}

impl<T: bytemuck::Pod> OobBytes for Vec<T> {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self)
    }
}

/// A byte run set aside while encoding: shares the buffer of the value serialized.
pub(crate) type Run = Arc<dyn OobBytes>;

/// Serializes the bytes of `owner` exactly as a [`PodVec<u8>`] of them: out of band
/// (no copy into the message) when a message for another process is being encoded,
/// inline otherwise. The receiver deserializes a `PodVec<u8>`.
pub fn serialize_oob<S: Serializer>(owner: Arc<dyn OobBytes>, s: S) -> Result<S::Ok, S::Error> {
    let run = Arc::clone(&owner);
    serialize_bytes(owner.bytes(), move || run, s)
}

/// A run of the message being decoded: a pointer into it, or a place in the message's
/// tail that is still arriving (see [`with_runs`]).
#[derive(Clone, Copy)]
enum InRun {
    Bytes { ptr: *const u8, len: usize },
    Tail { at: usize, len: usize },
}

/// Where a run of a message being decoded comes from: bytes of the message, or bytes
/// `at..at + len` of its tail, still being written by the sender (see
/// [`charmrs_comm::transport::Receiver::deliver_streamed`]).
#[derive(Clone, Copy)]
pub(crate) enum RunIn<'a> {
    /// Bytes of the message.
    Bytes(&'a [u8]),
    /// Bytes of the tail.
    Tail { at: usize, len: usize },
}

/// The bytes of a byte run, for the code that keeps them: copied out with
/// [`Src::copy_to`] (from a streamed tail, as they arrive).
pub(crate) enum Src<'a> {
    Bytes(&'a [u8]),
    Tail { tail: &'a dyn Tail, at: usize, len: usize },
}

impl Src<'_> {
    /// How many bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Src::Bytes(b) => b.len(),
            Src::Tail { len, .. } => *len,
        }
    }

    /// Copies the bytes into `dst`, which is [`Src::len`] long; on `Ok` it is all
    /// initialized.
    pub(crate) fn copy_to(&self, dst: &mut [MaybeUninit<u8>]) -> Result<(), String> {
        assert_eq!(dst.len(), self.len(), "a destination of the run's length");
        match self {
            Src::Bytes(b) => {
                // SAFETY: `dst` has room for `b.len()` bytes (asserted) and, being a
                // `&mut`, cannot overlap `b`.
                unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.as_mut_ptr().cast::<u8>(), b.len()) };
                Ok(())
            }
            Src::Tail { tail, at, .. } => tail.copy_to(*at, dst),
        }
    }
}

/// The tail of the message being decoded, for the duration of [`with_runs`].
type TailPtr = *const (dyn Tail + 'static);

thread_local! {
    /// While [`collecting`] runs on this thread: the runs set aside so far.
    static OUT: RefCell<Vec<Run>> = const { RefCell::new(Vec::new()) };
    static COLLECTING: Cell<bool> = const { Cell::new(false) };
    /// While [`with_runs`] runs on this thread: the message's runs, and its tail.
    static IN: RefCell<(Vec<InRun>, Option<TailPtr>)> = const { RefCell::new((Vec::new(), None)) };
}

/// Runs `encode` with out-of-band collection on for this thread; returns its result and
/// the runs it set aside, in order.
pub(crate) fn collecting<R>(encode: impl FnOnce() -> R) -> (R, Vec<Run>) {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            COLLECTING.with(|c| c.set(false));
        }
    }
    OUT.with(|o| o.borrow_mut().clear());
    COLLECTING.with(|c| c.set(true));
    let off = Off;
    let r = encode();
    drop(off);
    (r, OUT.with(|o| std::mem::take(&mut *o.borrow_mut())))
}

/// Runs `decode` with `runs` as the out-of-band buffers of the message being decoded on
/// this thread, `tail` the message's tail still arriving if some runs are there (what
/// was there before is restored afterwards).
pub(crate) fn with_runs<R>(runs: &[RunIn<'_>], tail: Option<&dyn Tail>, decode: impl FnOnce() -> R) -> R {
    struct Restore((Vec<InRun>, Option<TailPtr>));
    impl Drop for Restore {
        fn drop(&mut self) {
            IN.with(|i| *i.borrow_mut() = std::mem::take(&mut self.0));
        }
    }
    let mine = runs
        .iter()
        .map(|r| match *r {
            RunIn::Bytes(b) => InRun::Bytes { ptr: b.as_ptr(), len: b.len() },
            RunIn::Tail { at, len } => InRun::Tail { at, len },
        })
        .collect();
    // SAFETY: only the lifetime is erased: the pointer is read only by the visitor
    // below, inside `decode`, while `tail` is borrowed for this whole call (and it is
    // gone from the thread-local when this call returns, also by a panic).
    let tail =
        tail.map(|t| unsafe { std::mem::transmute::<*const (dyn Tail + '_), TailPtr>(t as *const dyn Tail) });
    let restore = Restore(IN.with(|i| std::mem::replace(&mut *i.borrow_mut(), (mine, tail))));
    let r = decode();
    drop(restore);
    r
}

/// How byte runs appear in the serialized form.
#[derive(Deserialize)]
#[serde(rename = "Bytes")]
enum Tag {
    Inline,
    OutOfBand,
}

const VARIANTS: &[&str] = &["Inline", "OutOfBand"];

/// Serializes `bytes`: out of band if a message for another process is being built on
/// this thread and the run is long enough (then `owner` gives what keeps them alive
/// until the transport has sent them), inline otherwise.
pub(crate) fn serialize_bytes<S: Serializer>(
    bytes: &[u8],
    owner: impl FnOnce() -> Run,
    s: S,
) -> Result<S::Ok, S::Error> {
    if bytes.len() >= OOB_MIN && COLLECTING.with(Cell::get) {
        let i = OUT.with(|o| {
            let mut o = o.borrow_mut();
            o.push(owner());
            o.len() - 1
        });
        let i =
            u32::try_from(i).map_err(|_| serde::ser::Error::custom("more than 2^32 buffers in a message"))?;
        return s.serialize_newtype_variant("Bytes", 1, "OutOfBand", &i);
    }
    struct Raw<'a>(&'a [u8]);
    impl Serialize for Raw<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    s.serialize_newtype_variant("Bytes", 0, "Inline", &Raw(bytes))
}

/// Deserializes what [`serialize_bytes`] wrote and hands the bytes to `take` (they are
/// borrowed from the message, or still arriving: `take` copies what it keeps).
pub(crate) fn deserialize_bytes<'de, D, R>(
    d: D,
    take: impl FnOnce(Src<'_>) -> Result<R, String>,
) -> Result<R, D::Error>
where
    D: Deserializer<'de>,
{
    d.deserialize_enum("Bytes", VARIANTS, BytesVisitor(take, PhantomData))
}

struct BytesVisitor<F, R>(F, PhantomData<R>);

impl<'de, F, R> Visitor<'de> for BytesVisitor<F, R>
where
    F: FnOnce(Src<'_>) -> Result<R, String>,
{
    type Value = R;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte buffer, inline or out of band")
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<R, A::Error> {
        let (tag, v) = data.variant::<Tag>()?;
        match tag {
            Tag::Inline => v.newtype_variant_seed(InlineSeed(self.0, PhantomData)),
            Tag::OutOfBand => {
                let i: u32 = v.newtype_variant()?;
                let (run, tail) = IN.with(|runs| {
                    let runs = runs.borrow();
                    (runs.0.get(i as usize).copied(), runs.1)
                });
                let src = match run {
                    None => {
                        return Err(de::Error::custom(format!(
                            "out-of-band buffer {i} is not in the message"
                        )))
                    }
                    Some(InRun::Bytes { ptr, len }) => {
                        // SAFETY: `IN` holds runs only while `with_runs` runs on this
                        // thread (it restores the previous ones on the way out, also by a
                        // panic), and they point into the slices `with_runs` borrows for
                        // its whole call; this visitor runs inside it. `take` cannot keep
                        // the borrow (it is higher-ranked over the slice's lifetime).
                        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
                        Src::Bytes(bytes)
                    }
                    Some(InRun::Tail { at, len }) => {
                        let Some(tail) = tail else {
                            return Err(de::Error::custom("a run in a tail the message does not have"));
                        };
                        // SAFETY: as for the runs: `with_runs` borrows the tail for its
                        // whole call, which this visitor runs inside.
                        Src::Tail { tail: unsafe { &*tail }, at, len }
                    }
                };
                (self.0)(src).map_err(de::Error::custom)
            }
        }
    }
}

struct InlineSeed<F, R>(F, PhantomData<R>);

impl<'de, F, R> de::DeserializeSeed<'de> for InlineSeed<F, R>
where
    F: FnOnce(Src<'_>) -> Result<R, String>,
{
    type Value = R;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<R, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de, F, R> Visitor<'de> for InlineSeed<F, R>
where
    F: FnOnce(Src<'_>) -> Result<R, String>,
{
    type Value = R;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<R, E> {
        (self.0)(Src::Bytes(v)).map_err(E::custom)
    }

    // Self-describing formats without a bytes type (JSON) write a sequence of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<R, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        (self.0)(Src::Bytes(&v)).map_err(de::Error::custom)
    }
}

/// A vector of plain numbers (any [`bytemuck::Pod`] type: integers, floats, arrays and
/// `#[repr(C)]` structs of them) that crosses processes as its raw bytes: one copy into
/// shared memory or the socket on the sending side, one copy out on the receiving side,
/// instead of serde's element-by-element encoding of a `Vec<T>`.
///
/// Use it for large numeric arguments (halos, blocks of a matrix, particle arrays).
/// Between PEs of one process it is moved like any other argument, without a copy. It
/// dereferences to the `Vec<T>`.
///
/// The bytes are the machine's own representation: the processes of a job must share
/// byte order and layout (they run one program, which the bootstrap checks).
///
/// ```
/// use charmrs::PodVec;
/// let mut halo: PodVec<f64> = vec![0.0; 4].into();
/// halo[1] = 2.5;
/// assert_eq!(halo.iter().sum::<f64>(), 2.5);
/// let v: Vec<f64> = halo.into_inner();
/// assert_eq!(v.len(), 4);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodVec<T>(Arc<Vec<T>>);
// An `Arc` so that a message being sent can keep the buffer alive without a copy
// whatever the value it came from becomes meanwhile; the vector is shared only while a
// send is in progress, so `DerefMut` never copies in practice.

impl<T> PodVec<T> {
    /// An empty vector.
    pub fn new() -> Self {
        PodVec(Arc::new(Vec::new()))
    }

    /// The vector inside.
    pub fn into_inner(self) -> Vec<T>
    where
        T: Clone,
    {
        Arc::unwrap_or_clone(self.0)
    }
}

impl<T> Deref for PodVec<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Clone> DerefMut for PodVec<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<T> From<Vec<T>> for PodVec<T> {
    fn from(v: Vec<T>) -> Self {
        PodVec(Arc::new(v))
    }
}

impl<T: Clone> From<PodVec<T>> for Vec<T> {
    fn from(v: PodVec<T>) -> Self {
        v.into_inner()
    }
}

impl<T> FromIterator<T> for PodVec<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        PodVec::from(iter.into_iter().collect::<Vec<T>>())
    }
}

impl<T: fmt::Debug> fmt::Debug for PodVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: bytemuck::Pod> Serialize for PodVec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(bytemuck::cast_slice(&self.0), || Arc::clone(&self.0) as Run, s)
    }
}

impl<'de, T: bytemuck::Pod> Deserialize<'de> for PodVec<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_bytes(d, |bytes| pod_vec_from(bytes).map(PodVec::from))
    }
}

/// Copies the bytes of `src` into a new `Vec<T>` (aligned for `T`, which the bytes may
/// not be).
fn pod_vec_from<T: bytemuck::Pod>(src: Src<'_>) -> Result<Vec<T>, String> {
    let size = size_of::<T>();
    let len = src.len();
    if size == 0 {
        return if len == 0 { Ok(Vec::new()) } else { Err("bytes for a vector of zero-sized values".into()) };
    }
    if len % size != 0 {
        return Err(format!(
            "{len} bytes are not a whole number of {} ({size} bytes each)",
            std::any::type_name::<T>()
        ));
    }
    let n = len / size;
    let mut v: Vec<T> = Vec::with_capacity(n);
    // SAFETY: the vector has room for `n` values of `T`, that is `len` bytes, seen here
    // as bytes that may be uninitialized (`u8` has no alignment of its own).
    let dst = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<MaybeUninit<u8>>(), len) };
    src.copy_to(dst)?;
    // SAFETY: `copy_to` initialized all `len` bytes, and every bit pattern is a valid
    // `T` (`T: Pod`), so the first `n` values are initialized.
    unsafe { v.set_len(n) };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::wire::{decode, encode};
    use proptest::prelude::*;

    #[test]
    fn inline_when_not_collecting_and_for_short_runs() {
        let v: PodVec<f64> = (0..1000).map(f64::from).collect();
        let mut out = Vec::new();
        encode(&v, &mut out).expect("encodes");
        assert!(out.len() > 8000, "the bytes are in the message");
        assert_eq!(decode::<PodVec<f64>>(&out), Ok(v.clone()));
        let short: PodVec<u16> = vec![7u16; 10].into();
        let ((), runs) = collecting(|| encode(&short, &mut out).expect("encodes"));
        assert!(runs.is_empty(), "20 bytes stay in the message");
    }

    #[test]
    fn out_of_band_runs_round_trip_in_order() {
        let a: PodVec<f64> = (0..1000).map(f64::from).collect();
        let b: PodVec<u32> = (0..5000).collect();
        let value = (a.clone(), 42u8, b.clone(), PodVec::<i64>::new());
        let mut out = Vec::new();
        let ((), runs) = collecting(|| encode(&value, &mut out).expect("encodes"));
        assert_eq!(runs.len(), 2);
        assert!(out.len() < 64, "only the indices are in the message: {} bytes", out.len());
        let bytes: Vec<RunIn<'_>> = runs.iter().map(|r| RunIn::Bytes(r.bytes())).collect();
        assert_eq!(runs[0].bytes(), bytemuck::cast_slice::<f64, u8>(&a));
        let back = with_runs(&bytes, None, || decode::<(PodVec<f64>, u8, PodVec<u32>, PodVec<i64>)>(&out));
        assert_eq!(back, Ok(value));
        // Without its buffers the message is an error, not garbage.
        let e = decode::<(PodVec<f64>, u8, PodVec<u32>, PodVec<i64>)>(&out).expect_err("no buffers");
        assert!(e.contains("out-of-band buffer 0 is not in the message"), "{e}");
    }

    #[test]
    fn a_foreign_owner_travels_as_a_pod_vec_of_its_bytes() {
        /// Bytes that are not a `Vec` (as a numpy array's are).
        struct Foreign(Box<[u8]>);
        impl OobBytes for Foreign {
            fn bytes(&self) -> &[u8] {
                &self.0
            }
        }
        struct Wrap(Arc<Foreign>);
        impl Serialize for Wrap {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_oob(Arc::clone(&self.0) as Arc<dyn OobBytes>, s)
            }
        }
        for n in [0usize, 10, 5000] {
            let w = Wrap(Arc::new(Foreign((0..n).map(|i| i as u8).collect())));
            let mut out = Vec::new();
            let ((), runs) = collecting(|| encode(&w, &mut out).expect("encodes"));
            assert_eq!(runs.len(), usize::from(n >= OOB_MIN), "{n} bytes");
            let bytes: Vec<RunIn<'_>> = runs.iter().map(|r| RunIn::Bytes(r.bytes())).collect();
            let back = with_runs(&bytes, None, || decode::<PodVec<u8>>(&out)).expect("decodes");
            assert_eq!(&back[..], &w.0 .0[..]);
        }
    }

    /// A tail that hands out its bytes from a buffer, or fails past `cut` (a sender
    /// that died).
    struct TestTail {
        bytes: Vec<u8>,
        cut: usize,
    }

    impl Tail for TestTail {
        fn len(&self) -> usize {
            self.bytes.len()
        }

        fn copy_to(&self, at: usize, dst: &mut [MaybeUninit<u8>]) -> Result<(), String> {
            if at + dst.len() > self.cut {
                return Err("the sender is gone".into());
            }
            for (d, s) in dst.iter_mut().zip(&self.bytes[at..]) {
                d.write(*s);
            }
            Ok(())
        }
    }

    #[test]
    fn runs_in_a_streamed_tail_are_copied_from_it() {
        let a: PodVec<f64> = (0..1000).map(f64::from).collect();
        let b: PodVec<u16> = (0..3000).collect();
        let value = (a.clone(), 7u8, b.clone());
        let mut out = Vec::new();
        let ((), runs) = collecting(|| encode(&value, &mut out).expect("encodes"));
        let bytes: Vec<u8> = runs.iter().flat_map(|r| r.bytes().to_vec()).collect();
        let (la, lb) = (runs[0].bytes().len(), runs[1].bytes().len());
        let ins = [RunIn::Tail { at: 0, len: la }, RunIn::Tail { at: la, len: lb }];
        let whole = TestTail { cut: bytes.len(), bytes: bytes.clone() };
        let back = with_runs(&ins, Some(&whole), || decode::<(PodVec<f64>, u8, PodVec<u16>)>(&out));
        assert_eq!(back, Ok(value));
        // The sender dies after the first run: an error, not garbage.
        let cut = TestTail { cut: la + 10, bytes };
        let e =
            with_runs(&ins, Some(&cut), || decode::<(PodVec<f64>, u8, PodVec<u16>)>(&out)).expect_err("cut");
        assert!(e.contains("the sender is gone"), "{e}");
        // A tail run without a tail is refused.
        let e =
            with_runs(&ins, None, || decode::<(PodVec<f64>, u8, PodVec<u16>)>(&out)).expect_err("no tail");
        assert!(e.contains("does not have"), "{e}");
    }

    #[test]
    fn a_run_that_is_not_whole_values_is_an_error() {
        let odd: PodVec<u8> = vec![1u8; 1025].into();
        let mut out = Vec::new();
        encode(&odd, &mut out).expect("encodes");
        let e = decode::<PodVec<u64>>(&out).expect_err("1025 bytes are not u64s");
        assert!(e.contains("not a whole number"), "{e}");
    }

    proptest! {
        /// Any vector round-trips, inline or out of band, whatever its alignment in the
        /// message.
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u32>(), 0..2000), pad in 0usize..8, oob: bool) {
            let v = PodVec::from(v);
            let mut out = vec![0u8; pad];
            let ((), runs) = if oob {
                collecting(|| encode(&v, &mut out).expect("encodes"))
            } else {
                (encode(&v, &mut out).expect("encodes"), Vec::new())
            };
            let bytes: Vec<RunIn<'_>> = runs.iter().map(|r| RunIn::Bytes(r.bytes())).collect();
            let back = with_runs(&bytes, None, || decode::<PodVec<u32>>(&out[pad..]));
            prop_assert_eq!(back, Ok(v));
        }
    }
}
