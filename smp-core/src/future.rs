//! Futures: placeholders for values, created on one PE, sendable to any chare on any
//! PE, set once, awaited by a task of the PE that created them.

use std::cell::RefCell;
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};

use crate::chare::invoke::fatal;
use crate::error::{Error, Result};
use crate::msg::{shallow_size, AnyBox, Envelope, Payload};
use crate::pe::{with_pe, PeId};

/// Identifies a future in the job: the PE that owns it and a counter of that PE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct FutureId {
    /// Owner PE (where it is awaited).
    pub(crate) pe: PeId,
    /// Counter of that PE.
    pub(crate) seq: u64,
}

impl fmt::Display for FutureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (idx, gen) = split(self.seq);
        write!(f, "{idx}.{gen}@PE{}", self.pe)
    }
}

/// A future of a `T`: create it with [`Future::new`] (Charm4py's `Future()`), send it
/// to other chares in messages, set it once with [`Future::send`] from anywhere, await
/// it on the PE that created it. Calls with [`crate::Call::ret`] and reductions return
/// them too. Awaiting gives `Err` when the value is an error, such as a panic in the
/// remote method that should have produced it.
///
/// ```
/// use charmrs::prelude::*;
///
/// pub struct Squarer;
///
/// #[chare]
/// impl Squarer {
///     fn new() -> Self { Squarer }
///     /// Sends `x * x` to a future owned by someone else.
///     fn square(&self, x: u64, reply: Future<u64>) { reply.send(x * x) }
/// }
///
/// fn main() {
///     charmrs::start(|_| async {
///         let g = Group::<Squarer>::new(()).await.unwrap();
///         let futs: Vec<Future<u64>> = (1..=3).map(|_| Future::new()).collect();
///         for (x, f) in futs.iter().enumerate() {
///             g.elem(0).square(x as u64 + 1, f.clone());
///         }
///         assert_eq!(charmrs::wait_all(futs).await.unwrap(), vec![1, 4, 9]);
///         charmrs::exit(0);
///     })
/// }
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Future<T> {
    id: FutureId,
    #[serde(skip)]
    _t: PhantomData<fn() -> T>,
}

/// Two handles are equal when they name the same future.
impl<T> PartialEq for Future<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T> Eq for Future<T> {}

impl<T> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future { id: self.id, _t: PhantomData }
    }
}

impl<T> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Future({})", self.id)
    }
}

impl<T: Payload> Default for Future<T> {
    fn default() -> Self {
        Future::new()
    }
}

impl<T: Payload> Future<T> {
    /// A new future owned by the current PE.
    ///
    /// # Panics
    /// Off a PE.
    pub fn new() -> Future<T> {
        with_pe(|pe| Future { id: pe.futures.create(pe.id), _t: PhantomData })
    }

    pub(crate) fn from_id(id: FutureId) -> Future<T> {
        Future { id, _t: PhantomData }
    }

    pub(crate) fn id(&self) -> FutureId {
        self.id
    }

    /// The PE that owns the future.
    pub fn owner(&self) -> PeId {
        self.id.pe
    }

    /// Sets the future's value, from any PE. A future takes one value: a second one is
    /// an error that ends the job (it is detected where the future lives).
    pub fn send(&self, value: T) {
        self.complete(Ok(value));
    }

    /// Sets the future to an error.
    pub(crate) fn fail(&self, e: Error) {
        self.complete(Err(e));
    }

    /// Sets the future to a value or an error.
    pub(crate) fn complete(&self, value: Result<T>) {
        let id = self.id;
        with_pe(|pe| {
            if !pe.shared.is_local(id.pe) {
                // Another process: serialized here, where the type is known; the owner
                // decodes it when the future is awaited.
                let value = match value {
                    Ok(v) => {
                        let mut bytes = Vec::new();
                        if let Err(e) = crate::msg::wire::encode(&v, &mut bytes) {
                            fatal(&format!("the value for future {id} does not serialize: {e}"));
                        }
                        let b: AnyBox = smallbox::smallbox!(crate::msg::wire::Encoded(bytes.into()));
                        Ok(b)
                    }
                    Err(e) => Err(Box::new(e)),
                };
                pe.send(id.pe, Envelope::SetFuture { fut: id, value }, shallow_size::<T>());
                return;
            }
            let value = value.map(|v| -> AnyBox { smallbox::smallbox!(v) });
            if id.pe == pe.id {
                pe.futures.set(id, value);
            } else {
                let value = value.map_err(Box::new);
                pe.send(id.pe, Envelope::SetFuture { fut: id, value }, shallow_size::<T>());
            }
        });
    }

    /// Waits for the value (the same as `.await` on the future).
    pub fn get(&self) -> Get<T> {
        Get { id: self.id, _t: PhantomData }
    }

    /// A new future owned by the current PE that takes `n` values (Charm4py's
    /// `Future(num_vals=n)`): senders [`send`](Self::send) to it as to any future;
    /// [`get_all`](Self::get_all) waits for all `n` and gives them in arrival order.
    ///
    /// # Panics
    /// Off a PE.
    pub fn with_values(n: u32) -> Future<T> {
        with_pe(|pe| Future { id: pe.futures.create_multi(pe.id, n), _t: PhantomData })
    }

    /// Waits for every value of a future made by [`with_values`](Self::with_values)
    /// (in arrival order; the first error wins), or for the one value of a plain
    /// future.
    pub async fn get_all(&self) -> Result<Vec<T>> {
        let id = self.id;
        let boxes = std::future::poll_fn(|cx| {
            with_pe(|pe| {
                if pe.id != id.pe {
                    return Poll::Ready(Err(Error::NotOwner { owner: id.pe, pe: pe.id }));
                }
                pe.futures.poll_all(id, cx.waker())
            })
        })
        .await?;
        boxes.into_iter().map(|b| Self::unbox(id, b)).collect()
    }

    /// The value in a box: this process's `T`, or bytes from another process.
    fn unbox(id: FutureId, b: AnyBox) -> Result<T> {
        match b.downcast::<T>() {
            Ok(v) => Ok(v.into_inner()),
            Err(b) => match b.downcast::<crate::msg::wire::Encoded>() {
                Ok(enc) => enc.decode::<T>().map_err(|e| {
                    Error::Usage(format!(
                        "the value of future {id} from another process is not a {}: {e}",
                        std::any::type_name::<T>()
                    ))
                }),
                Err(_) => fatal(&format!("future {id} received a value of another type")),
            },
        }
    }

    /// Whether the value has arrived (on the owner PE; `false` elsewhere).
    pub fn is_ready(&self) -> bool {
        with_pe(|pe| pe.id == self.id.pe && pe.futures.is_ready(self.id))
    }

    /// Stops caring about the value: an error that arrived or arrives later ends the
    /// job instead of waiting to be awaited, and a value is dropped. Does nothing on a
    /// PE other than the owner's.
    pub fn detach(&self) {
        with_pe(|pe| {
            if pe.id == self.id.pe {
                pe.futures.detach(self.id, Detach::Fatal)
            }
        });
    }

    /// Drops the value or the error, whenever it comes (the runtime's own futures
    /// whose outcome is already decided, such as the rest of a failed `pool::map`).
    pub(crate) fn discard(&self) {
        with_pe(|pe| {
            if pe.id == self.id.pe {
                pe.futures.detach(self.id, Detach::Silent)
            }
        });
    }

    /// An error that reaches this future and is still in it when the job ends (never
    /// awaited, the future never dropped) is printed as a warning at the end instead of
    /// failing the job. For language bindings whose programs may keep futures they do
    /// not await (a garbage cycle holding a Python future: Charm4py ignores their
    /// errors). Only the owning PE can mark its future; elsewhere this does nothing.
    pub fn lenient(&self) {
        crate::pe::local::try_with_pe(|pe| {
            if pe.id == self.id.pe {
                pe.futures.set_lenient(self.id.seq)
            }
        });
    }

    /// Stops caring about the value, like [`detach`](Self::detach), but an error is
    /// only printed as a warning (a language binding's futures that its program
    /// dropped: Charm4py ignores their errors).
    pub fn ignore(&self) {
        with_pe(|pe| {
            if pe.id == self.id.pe {
                pe.futures.detach(self.id, Detach::Warn)
            }
        });
    }

    fn poll_value(id: FutureId, cx: &mut Context<'_>) -> Poll<Result<T>> {
        with_pe(|pe| {
            if pe.id != id.pe {
                return Poll::Ready(Err(Error::NotOwner { owner: id.pe, pe: pe.id }));
            }
            // From another process, the value is decoded now that the type is known.
            pe.futures.poll(id, cx.waker()).map(|r| r.and_then(|b| Self::unbox(id, b)))
        })
    }
}

/// The value of a [`Future`], as a `std::future::Future`.
pub struct Get<T> {
    id: FutureId,
    _t: PhantomData<fn() -> T>,
}

impl<T: Payload> StdFuture for Get<T> {
    type Output = Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        Future::<T>::poll_value(self.id, cx)
    }
}

impl<T: Payload> IntoFuture for Future<T> {
    type Output = Result<T>;
    type IntoFuture = Get<T>;
    fn into_future(self) -> Get<T> {
        self.get()
    }
}

impl<T: Payload> IntoFuture for &Future<T> {
    type Output = Result<T>;
    type IntoFuture = Get<T>;
    fn into_future(self) -> Get<T> {
        self.get()
    }
}

/// Waits for every future and returns their values in order; the first error wins.
pub async fn wait_all<T: Payload>(futs: impl IntoIterator<Item = Future<T>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for f in futs {
        out.push(f.get().await?);
    }
    Ok(out)
}

/// Waits for the first of `futs` to complete: its position and value.
///
/// # Panics
/// If `futs` is empty.
pub async fn wait_any<T: Payload>(futs: Vec<Future<T>>) -> (usize, Result<T>) {
    assert!(!futs.is_empty(), "wait_any needs at least one future");
    iwait(futs).next().await.expect("one future at least")
}

/// Yields futures as they complete (Charm4py's `charm.iwait`): call
/// [`Iwait::next`] until it returns `None`.
pub fn iwait<T: Payload>(futs: Vec<Future<T>>) -> Iwait<T> {
    Iwait { futs: futs.into_iter().map(Some).collect() }
}

/// The iterator of [`iwait`].
pub struct Iwait<T> {
    futs: Vec<Option<Future<T>>>,
}

impl<T: Payload> Iwait<T> {
    /// The next future to complete: its position in the original list and its value;
    /// `None` when all have been returned.
    pub async fn next(&mut self) -> Option<(usize, Result<T>)> {
        std::future::poll_fn(|cx| {
            let mut any = false;
            for (i, slot) in self.futs.iter_mut().enumerate() {
                let Some(f) = slot else { continue };
                any = true;
                if let Poll::Ready(v) = Future::<T>::poll_value(f.id, cx) {
                    *slot = None;
                    return Poll::Ready(Some((i, v)));
                }
            }
            if any {
                Poll::Pending
            } else {
                Poll::Ready(None)
            }
        })
        .await
    }
}

/// State of one future on its owner PE.
enum Slot {
    /// No value yet; the task awaiting it, if any.
    Waiting(Option<Waker>),
    /// The value arrived and waits to be taken (the error boxed: large and rare).
    Ready(Result<AnyBox, Box<Error>>),
    /// A future of several values: those arrived so far, until `need`.
    Multi { need: u32, got: Vec<Result<AnyBox, Box<Error>>>, waker: Option<Waker> },
    /// Nobody will await: an error must end the job.
    Detached,
    /// Nobody will await: an error is printed as a warning (or dropped if `quiet`);
    /// `remaining` values are still to come (the slot is freed after the last).
    Ignored { remaining: u32, quiet: bool },
}

/// What becomes of an error for a future nobody will await.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detach {
    /// It ends the job.
    Fatal,
    /// It is printed as a warning.
    Warn,
    /// It is dropped.
    Silent,
}

/// An error for a future nobody awaits: the end of the job, or a warning.
fn ignored_error(message: &str, fatal_errors: bool) {
    if fatal_errors {
        fatal(&format!("unhandled {message}"));
    }
    let pe = crate::pe::local::try_with_pe(|pe| pe.id.0.to_string()).unwrap_or_else(|| "?".into());
    eprintln!("charmrs: warning on PE {pe}: an error went to a future nobody waits for: {message}");
}

/// One place of the table: a generation, bumped at each reuse so that a stale id (of
/// a future already consumed) never reaches the future that took its place.
struct Entry {
    gen: u32,
    slot: Option<Slot>,
    /// An error left in it at the end of the job is a warning, not a failure (see
    /// [`Future::lenient`]).
    lenient: bool,
}

/// The futures owned by one PE: a generational slab (a future's `seq` is its
/// generation in the high 32 bits and its place in the low 32).
pub(crate) struct FutureTable {
    entries: RefCell<Vec<Entry>>,
    free: RefCell<Vec<u32>>,
}

/// Place and generation of a future id.
#[inline]
fn split(seq: u64) -> (usize, u32) {
    ((seq & 0xffff_ffff) as usize, (seq >> 32) as u32)
}

impl FutureTable {
    /// Empty.
    pub(crate) fn new() -> FutureTable {
        FutureTable { entries: RefCell::new(Vec::new()), free: RefCell::new(Vec::new()) }
    }

    /// A new future of PE `pe`.
    pub(crate) fn create(&self, pe: PeId) -> FutureId {
        let mut entries = self.entries.borrow_mut();
        let idx = match self.free.borrow_mut().pop() {
            Some(i) => i as usize,
            None => {
                entries.push(Entry { gen: 0, slot: None, lenient: false });
                entries.len() - 1
            }
        };
        let e = &mut entries[idx];
        e.gen = e.gen.wrapping_add(1);
        e.slot = Some(Slot::Waiting(None));
        e.lenient = false;
        FutureId { pe, seq: (e.gen as u64) << 32 | idx as u64 }
    }

    /// A new future of PE `pe` that takes `n` values.
    pub(crate) fn create_multi(&self, pe: PeId, n: u32) -> FutureId {
        let id = self.create(pe);
        self.with_slot(id.seq, |slot| *slot = Some(Slot::Multi { need: n, got: Vec::new(), waker: None }));
        id
    }

    /// Runs `f` on the live slot of `seq` (`None` if consumed or unknown); `f` returns
    /// whether to free the slot.
    #[inline]
    fn with_slot<R>(&self, seq: u64, f: impl FnOnce(&mut Option<Slot>) -> R) -> R {
        let (idx, gen) = split(seq);
        let mut entries = self.entries.borrow_mut();
        let mut none = None;
        let slot = match entries.get_mut(idx) {
            Some(e) if e.gen == gen && e.slot.is_some() => &mut e.slot,
            _ => &mut none,
        };
        let was_live = slot.is_some();
        let r = f(slot);
        if was_live && slot.is_none() {
            drop(entries);
            self.free.borrow_mut().push(idx as u32);
        }
        r
    }

    /// A value arrives.
    pub(crate) fn set(&self, id: FutureId, value: Result<AnyBox>) {
        enum Then {
            Wake(Option<Waker>),
            Fatal(String),
            Warn(String),
            Nothing,
        }
        let then = self.with_slot(id.seq, |slot| match slot.take() {
            Some(Slot::Waiting(w)) => {
                *slot = Some(Slot::Ready(value.map_err(Box::new)));
                Then::Wake(w)
            }
            Some(Slot::Detached) => match value {
                Err(e) => Then::Fatal(format!("unhandled {e}")),
                Ok(_) => Then::Nothing,
            },
            Some(Slot::Ignored { remaining, quiet }) => {
                if remaining > 1 {
                    *slot = Some(Slot::Ignored { remaining: remaining - 1, quiet });
                }
                match value {
                    Err(e) if !quiet => Then::Warn(e.to_string()),
                    _ => Then::Nothing,
                }
            }
            Some(Slot::Multi { need, mut got, waker }) => {
                got.push(value.map_err(Box::new));
                let full = got.len() as u32;
                if full > need {
                    *slot = Some(Slot::Multi { need, got, waker });
                    Then::Fatal(format!("future {id} was sent {full} values: it takes {need}"))
                } else if full == need {
                    *slot = Some(Slot::Multi { need, got, waker: None });
                    Then::Wake(waker)
                } else {
                    *slot = Some(Slot::Multi { need, got, waker });
                    Then::Nothing
                }
            }
            other => {
                *slot = other;
                Then::Fatal(format!("future {id} was sent a second value: a future takes one value"))
            }
        });
        match then {
            Then::Wake(Some(w)) => w.wake(),
            Then::Fatal(m) => fatal(&m),
            Then::Warn(m) => ignored_error(&m, false),
            Then::Wake(None) | Then::Nothing => {}
        }
    }

    /// Takes the values of a future of several values (or the one of a plain future)
    /// if they all arrived, or registers the waker.
    pub(crate) fn poll_all(&self, id: FutureId, waker: &Waker) -> Poll<Result<Vec<AnyBox>>> {
        let multi = self.with_slot(id.seq, |slot| match slot {
            Some(Slot::Multi { need, got, .. }) if got.len() as u32 >= *need => match slot.take() {
                Some(Slot::Multi { got, .. }) => {
                    Some(Poll::Ready(got.into_iter().map(|r| r.map_err(|e| *e)).collect::<Result<Vec<_>>>()))
                }
                _ => unreachable!("matched Multi"),
            },
            Some(Slot::Multi { waker: w, .. }) => {
                *w = Some(waker.clone());
                Some(Poll::Pending)
            }
            _ => None,
        });
        match multi {
            Some(p) => p,
            None => self.poll(id, waker).map(|r| r.map(|v| vec![v])),
        }
    }

    /// Takes the value if it arrived, or registers the waker.
    pub(crate) fn poll(&self, id: FutureId, waker: &Waker) -> Poll<Result<AnyBox>> {
        self.with_slot(id.seq, |slot| match slot {
            Some(Slot::Multi { need, .. }) => Poll::Ready(Err(Error::Usage(format!(
                "future {id} takes {need} values: wait for them with get_all()"
            )))),
            Some(Slot::Ready(_)) => match slot.take() {
                Some(Slot::Ready(v)) => Poll::Ready(v.map_err(|e| *e)),
                _ => unreachable!("matched Ready"),
            },
            Some(Slot::Waiting(w)) => {
                if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *w = Some(waker.clone());
                }
                Poll::Pending
            }
            Some(Slot::Detached) | Some(Slot::Ignored { .. }) | None => {
                Poll::Ready(Err(Error::Consumed(id.to_string())))
            }
        })
    }

    /// Whether the value (every value, for a future of several) arrived.
    pub(crate) fn is_ready(&self, id: FutureId) -> bool {
        self.with_slot(id.seq, |slot| match slot {
            Some(Slot::Ready(_)) => true,
            Some(Slot::Multi { need, got, .. }) => got.len() as u32 >= *need,
            _ => false,
        })
    }

    /// Nobody will await this future: an error in it ends the job (`fatal`), or, when
    /// `fatal` is false, is printed as a warning; a value is dropped.
    pub(crate) fn detach(&self, id: FutureId, mode: Detach) {
        let fatal_errors = mode == Detach::Fatal;
        let err = self.with_slot(id.seq, |slot| match slot.take() {
            Some(Slot::Ready(Err(e))) => Some(e.to_string()),
            Some(Slot::Waiting(_)) => {
                *slot = Some(if fatal_errors {
                    Slot::Detached
                } else {
                    Slot::Ignored { remaining: 1, quiet: mode == Detach::Silent }
                });
                None
            }
            Some(Slot::Multi { need, got, .. }) => {
                let remaining = need.saturating_sub(got.len() as u32);
                let err = got.into_iter().find_map(|r| r.err()).map(|e| e.to_string());
                if err.is_none() || !fatal_errors {
                    *slot = match (fatal_errors, remaining) {
                        (_, 0) => None,
                        (true, _) => Some(Slot::Detached),
                        (false, r) => Some(Slot::Ignored { remaining: r, quiet: mode == Detach::Silent }),
                    };
                }
                err
            }
            _ => None,
        });
        if let Some(m) = err {
            if mode != Detach::Silent {
                ignored_error(&m, fatal_errors);
            }
        }
    }

    /// Marks the live future `seq` as lenient (see [`Future::lenient`]).
    pub(crate) fn set_lenient(&self, seq: u64) {
        let (idx, gen) = split(seq);
        if let Some(e) = self.entries.borrow_mut().get_mut(idx) {
            if e.gen == gen && e.slot.is_some() {
                e.lenient = true;
            }
        }
    }

    /// Errors that arrived and were never awaited (reported at exit): those of lenient
    /// futures (second) apart.
    pub(crate) fn unobserved_errors(&self) -> (Vec<String>, Vec<String>) {
        let mut fatal = Vec::new();
        let mut lenient = Vec::new();
        for e in self.entries.borrow().iter() {
            if let Some(Slot::Ready(Err(err))) = &e.slot {
                if e.lenient { &mut lenient } else { &mut fatal }.push(err.to_string());
            }
        }
        (fatal, lenient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: u64) -> AnyBox {
        smallbox::smallbox!(v)
    }

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let t = FutureTable::new();
        let w = Waker::noop();
        let a = t.create(PeId(0));
        assert!(t.poll(a, w).is_pending());
        t.set(a, Ok(value(7)));
        assert!(t.is_ready(a));
        let Poll::Ready(Ok(v)) = t.poll(a, w) else { panic!("value expected") };
        assert_eq!(v.downcast::<u64>().ok().map(|b| b.into_inner()), Some(7));
        let b = t.create(PeId(0));
        assert_eq!(split(a.seq).0, split(b.seq).0, "the place is reused");
        assert_ne!(a.seq, b.seq, "with a new generation");
        assert!(matches!(t.poll(a, w), Poll::Ready(Err(Error::Consumed(_)))), "stale id");
        assert!(t.poll(b, w).is_pending(), "the new future is untouched");
    }

    #[test]
    fn a_future_of_several_values_is_ready_with_the_last() {
        let t = FutureTable::new();
        let w = Waker::noop();
        let a = t.create_multi(PeId(0), 3);
        assert!(matches!(t.poll(a, w), Poll::Ready(Err(Error::Usage(_)))), "get() on a multi future");
        let a = t.create_multi(PeId(0), 3);
        for v in [5, 6] {
            t.set(a, Ok(value(v)));
            assert!(!t.is_ready(a));
            assert!(t.poll_all(a, w).is_pending());
        }
        t.set(a, Ok(value(7)));
        assert!(t.is_ready(a));
        let Poll::Ready(Ok(vs)) = t.poll_all(a, w) else { panic!("values expected") };
        let vs: Vec<u64> = vs.into_iter().map(|b| b.downcast::<u64>().ok().unwrap().into_inner()).collect();
        assert_eq!(vs, vec![5, 6, 7]);
    }

    #[test]
    fn errors_nobody_awaited_are_listed() {
        let t = FutureTable::new();
        let a = t.create(PeId(1));
        t.set(a, Err(Error::Usage("boom".into())));
        assert_eq!(t.unobserved_errors(), (vec!["boom".to_string()], vec![]));
        // A lenient future's error is listed apart; the mark goes with the place's reuse.
        let b = t.create(PeId(1));
        t.set_lenient(b.seq);
        t.set(b, Err(Error::Usage("held".into())));
        assert_eq!(t.unobserved_errors(), (vec!["boom".to_string()], vec!["held".to_string()]));
        let Poll::Ready(Err(_)) = t.poll(b, Waker::noop()) else { panic!("the error") };
        let c = t.create(PeId(1));
        t.set(c, Err(Error::Usage("again".into())));
        assert_eq!(t.unobserved_errors().0, vec!["boom".to_string(), "again".to_string()]);
    }
}
