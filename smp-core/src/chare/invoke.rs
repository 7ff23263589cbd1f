//! Running entry methods: the generic helpers that `#[chare]`-generated code calls, panic
//! capture, `when` buffering, and where results and errors go.

use std::any::Any;
use std::cell::RefCell;
use std::future::Future as StdFuture;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Once;
use std::task::{Context, Poll};

use crate::chare::registry::EntryDesc;
use crate::chare::{Chare, Ctx, ElemMeta, Handle, Slot};
use crate::collection::AnyElem;
use crate::error::Error;
use crate::msg::{Args, Envelope, Payload, Reply};
use crate::pe::{with_pe, PeLocal};
use crate::reduction::{self, RedTarget, Reducer, Stream};
use crate::Future;

/// One delivery of a message to an entry method (built by the runtime, consumed by the
/// generated invoke function).
pub struct Invoke<'a> {
    pub(crate) pe: &'a Rc<PeLocal>,
    pub(crate) target: Target<'a>,
    pub(crate) desc: &'static EntryDesc,
    pub(crate) args: Args,
    pub(crate) reply: Reply,
}

/// The element a delivery runs on: an existing one, or one to construct.
pub(crate) enum Target<'a> {
    /// A method call.
    Elem(&'a Rc<dyn AnyElem>),
    /// A constructor call.
    New(ElemMeta),
}

thread_local! {
    /// Where the panic hook leaves the location of a panic caught at dispatch.
    static LAST_PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps the location of the panic for the error value
/// and stays quiet on PE threads, where the runtime reports the panic itself with PE,
/// chare and method; elsewhere it defers to the previous hook.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_pe = crate::pe::local::try_with_pe(|_| ()).is_some();
            if on_pe {
                let at = info.location().map(|l| l.to_string());
                LAST_PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                prev(info);
            }
        }));
    });
}

/// The payload a language binding panics with to fail an entry method with an error of
/// its own: `message` is what the runtime reports, `detail` reaches the caller's
/// future in [`crate::Error::RemotePanic`] (the Python package pickles the exception
/// there). Not a public API.
#[doc(hidden)]
pub struct Raised {
    /// The failure, as reported (a traceback).
    pub message: String,
    /// The binding's own encoding of the failure.
    pub detail: Vec<u8>,
}

thread_local! {
    /// The `detail` of the last caught [`Raised`], until `remote_panic` takes it.
    static LAST_DETAIL: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// The message of a caught panic, with its location.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(r) = payload.downcast_ref::<Raised>() {
        // The binding's own report; the Rust location of its `panic_any` is noise.
        LAST_PANIC_AT.with(|p| p.borrow_mut().take());
        LAST_DETAIL.with(|d| *d.borrow_mut() = Some(r.detail.clone()));
        return r.message.clone();
    }
    LAST_DETAIL.with(|d| d.borrow_mut().take());
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    };
    match LAST_PANIC_AT.with(|p| p.borrow_mut().take()) {
        Some(at) => format!("{msg} (at {at})"),
        None => msg,
    }
}

/// Ends the job: `msg` on stderr, exit status 1. For errors nobody can receive.
#[cold]
pub(crate) fn fatal(msg: &str) -> ! {
    let pe = crate::pe::local::try_with_pe(|pe| pe.id.0.to_string()).unwrap_or_else(|| "?".into());
    eprintln!("charmrs: fatal error on PE {pe}: {msg}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(1)
}

/// The error of a pool task of type `name` that panicked with `message`.
pub(crate) fn task_failure(name: &str, message: String) -> Error {
    Error::RemotePanic {
        pe: with_pe(|pe| pe.id),
        chare: "pool".to_string(),
        method: name.rsplit("::").next().unwrap_or(name).to_string(),
        index: None,
        message,
        detail: LAST_DETAIL.with(|d| d.borrow_mut().take()),
    }
}

fn remote_panic(meta: &ElemMeta, desc: &EntryDesc, message: String) -> Error {
    let index = match meta.home {
        crate::chare::proxy::Home::Single(_) => None,
        _ => Some(meta.key.index.to_string()),
    };
    Error::RemotePanic {
        pe: with_pe(|pe| pe.id),
        chare: desc.chare().rsplit("::").next().unwrap_or(desc.chare()).to_string(),
        method: desc.method().to_string(),
        index,
        message,
        detail: LAST_DETAIL.with(|d| d.borrow_mut().take()),
    }
}

fn take_args<A: Payload>(pe: &PeLocal, args: Args, desc: &EntryDesc) -> A {
    pe.stats.received_bytes(crate::msg::shallow_size::<A>());
    let a = match args {
        Args::Owned(b) => b.downcast::<A>().ok().map(|b| b.into_inner()),
        Args::Shared(a) => a.downcast_ref::<A>().cloned(),
    };
    a.unwrap_or_else(|| fatal(&format!("arguments of the wrong type for entry method {}", desc.name())))
}

/// The element a synchronous method runs on, borrowed.
fn slot_ref<'a, C: Chare>(target: &Target<'a>, desc: &EntryDesc) -> &'a Slot<C> {
    match target {
        Target::Elem(e) => e.as_any().downcast_ref::<Slot<C>>().unwrap_or_else(|| {
            fatal(&format!("entry method {} called on a chare of another type", desc.name()))
        }),
        Target::New(_) => fatal(&format!("entry method {} delivered as a constructor", desc.name())),
    }
}

/// The element an async method runs on, shared with its task.
fn slot_of<'a, C: Chare>(target: &Target<'a>, desc: &EntryDesc) -> Rc<Slot<C>> {
    match target {
        Target::Elem(e) => Rc::clone(e).into_any_rc().downcast::<Slot<C>>().unwrap_or_else(|_| {
            fatal(&format!("entry method {} called on a chare of another type", desc.name()))
        }),
        Target::New(_) => fatal(&format!("entry method {} delivered as a constructor", desc.name())),
    }
}

/// Where a finished call's value or error goes.
fn complete<R: Payload>(meta: &ElemMeta, desc: &EntryDesc, reply: Reply, result: Result<R, String>) {
    let result = result.map_err(|m| remote_panic(meta, desc, m));
    match (reply, result) {
        (Reply::None, Ok(_)) => {}
        (Reply::None, Err(e)) => {
            tracing::error!(chare = desc.chare(), ep = desc.method(), "unhandled panic");
            fatal(&format!("unhandled {e}"))
        }
        (Reply::Future(f), r) => Future::<R>::from_id(f).complete(r),
        (Reply::Done(f), r) => Future::<()>::from_id(f).complete(r.map(|_| ())),
        (Reply::Bcast { fut, gather: true }, r) => reduction::contribute(
            meta,
            Stream::Bcast(fut),
            r,
            Reducer::<R, Vec<R>>::gather(),
            RedTarget::from_id(fut),
        ),
        (Reply::Bcast { fut, gather: false }, r) => reduction::contribute(
            meta,
            Stream::Bcast(fut),
            r.map(|_| ()),
            Reducer::<(), ()>::nop(),
            RedTarget::from_id(fut),
        ),
        (Reply::SecBcast { sec, fut, gather: true }, r) => reduction::contribute_to(
            reduction::RedKey { coll: sec, stream: Stream::Bcast(fut) },
            meta.key.index,
            r,
            Reducer::<R, Vec<R>>::gather(),
            RedTarget::from_id(fut),
        ),
        (Reply::SecBcast { sec, fut, gather: false }, r) => reduction::contribute_to(
            reduction::RedKey { coll: sec, stream: Stream::Bcast(fut) },
            meta.key.index,
            r.map(|_| ()),
            Reducer::<(), ()>::nop(),
            RedTarget::from_id(fut),
        ),
    }
}

/// Starts measuring an entry method's time for the load balancer: migratable chare
/// types only, and only in a job that has a balancer (`+balancer`), the one reader of
/// the loads. Two clock reads per method (~5% of a small Python method's cost).
#[inline]
fn lb_start<C: Chare>(pe: &PeLocal) -> Option<std::time::Instant> {
    (pe.shared.config.balancer.is_some() && C::__ctor().migrate().is_some()).then(std::time::Instant::now)
}

/// Adds the time since `t0` to the element's load.
#[inline]
fn lb_end(meta: &ElemMeta, t0: Option<std::time::Instant>) {
    if let Some(t0) = t0 {
        meta.load.set(meta.load.get() + t0.elapsed().as_nanos() as u64);
    }
}

/// Runs a `&mut self` entry method.
pub fn invoke_mut<C: Chare, A: Payload, R: Payload>(inv: Invoke<'_>, f: fn(&mut C, &Ctx<C>, A) -> R) {
    let slot = slot_ref::<C>(&inv.target, inv.desc);
    let args = take_args::<A>(inv.pe, inv.args, inv.desc);
    let t0 = inv.pe.stats.start_ep();
    let l0 = lb_start::<C>(inv.pe);
    let r = catch_unwind(AssertUnwindSafe(|| f(&mut slot.state.borrow_mut(), &slot.ctx, args)));
    lb_end(&slot.ctx.meta, l0);
    inv.pe.stats.end_ep(inv.desc.id(), t0);
    complete(&slot.ctx.meta, inv.desc, inv.reply, r.map_err(panic_message));
}

/// Runs a `&self` entry method.
pub fn invoke_ref<C: Chare, A: Payload, R: Payload>(inv: Invoke<'_>, f: fn(&C, &Ctx<C>, A) -> R) {
    let slot = slot_ref::<C>(&inv.target, inv.desc);
    let args = take_args::<A>(inv.pe, inv.args, inv.desc);
    let t0 = inv.pe.stats.start_ep();
    let l0 = lb_start::<C>(inv.pe);
    let r = catch_unwind(AssertUnwindSafe(|| f(&slot.state.borrow(), &slot.ctx, args)));
    lb_end(&slot.ctx.meta, l0);
    inv.pe.stats.end_ep(inv.desc.id(), t0);
    complete(&slot.ctx.meta, inv.desc, inv.reply, r.map_err(panic_message));
}

/// Starts an `async` entry method as a task of this PE.
pub fn invoke_async<C, A, R, Fut>(inv: Invoke<'_>, f: fn(Handle<C>, A) -> Fut)
where
    C: Chare,
    A: Payload,
    R: Payload,
    Fut: StdFuture<Output = R> + 'static,
{
    let slot = slot_of::<C>(&inv.target, inv.desc);
    let args = take_args::<A>(inv.pe, inv.args, inv.desc);
    let desc = inv.desc;
    let reply = inv.reply;
    let key = slot.ctx.meta.key;
    let handle = Handle(Rc::clone(&slot));
    let t0 = inv.pe.stats.start_ep();
    let l0 = lb_start::<C>(inv.pe);
    let fut = catch_unwind(AssertUnwindSafe(|| f(handle, args)));
    lb_end(&slot.ctx.meta, l0);
    inv.pe.stats.end_ep(desc.id(), t0);
    match fut {
        Ok(fut) => inv.pe.spawn_task(
            Box::pin(async move {
                let r = CatchUnwind::new(fut).await;
                complete(&slot.ctx.meta, desc, reply, r);
            }),
            Some(key),
        ),
        Err(p) => complete::<R>(&slot.ctx.meta, desc, reply, Err(panic_message(p))),
    }
}

/// Runs a constructor and installs the new element.
pub fn invoke_ctor<C: Chare>(inv: Invoke<'_>, f: fn(&Ctx<C>, C::Args) -> C) {
    let Target::New(meta) = inv.target else {
        fatal(&format!("constructor {} delivered to an existing element", inv.desc.name()))
    };
    let args = take_args::<C::Args>(inv.pe, inv.args, inv.desc);
    let ctx = Ctx::<C>::new(meta);
    let t0 = inv.pe.stats.start_ep();
    let r = catch_unwind(AssertUnwindSafe(|| f(&ctx, args)));
    inv.pe.stats.end_ep(inv.desc.id(), t0);
    match r {
        Ok(state) => {
            let slot: Rc<dyn AnyElem> = Rc::new(Slot { ctx, state: RefCell::new(state) });
            inv.pe.elems.borrow_mut().insert(crate::collection::ElemEntry(Rc::clone(&slot)));
            complete(slot.meta(), inv.desc, inv.reply, Ok(()));
        }
        Err(p) => {
            inv.pe.failed_ctors.borrow_mut().insert(ctx.meta.key);
            complete::<()>(&ctx.meta, inv.desc, inv.reply, Err(panic_message(p)))
        }
    }
}

/// Evaluates a `when` condition (used by generated code).
pub fn when_check<C: Chare, A: Payload>(elem: &dyn Any, args: &dyn Any, cond: fn(&C, &A) -> bool) -> bool {
    match (elem.downcast_ref::<Slot<C>>(), args.downcast_ref::<A>()) {
        (Some(slot), Some(a)) => cond(&slot.state.borrow(), a),
        _ => true,
    }
}

/// After a chare's state may have changed: wake the tasks waiting on a condition of it
/// (the `when` buffer is re-checked by the scheduler after each delivery).
#[inline]
pub(crate) fn after_state_change(meta: &ElemMeta) {
    for w in meta.take_waiters() {
        w.wake();
    }
}

/// Delivers one call to an element, or buffers it while its `when` condition is false.
/// Returns whether it ran.
pub(crate) fn deliver(
    pe: &Rc<PeLocal>,
    elem: &Rc<dyn AnyElem>,
    desc: &'static EntryDesc,
    env: Envelope,
) -> bool {
    let Envelope::Call { args, reply, .. } = env else { unreachable!("deliver takes calls") };
    if let Some(cond) = desc.when() {
        let arg_ref: &dyn Any = match &args {
            Args::Owned(b) => &**b,
            Args::Shared(a) => &**a,
        };
        if !cond(elem.as_any(), arg_ref) {
            let meta = elem.meta();
            let env =
                Envelope::Call { coll: meta.key.coll, index: meta.key.index, ep: desc.id(), reply, args };
            meta.buffer(env);
            return false;
        }
    }
    // What this PE runs, for SIGUSR1's report (restored after: a delivery may nest).
    let running = &pe.shared.pe(pe.id).running;
    let before = running.load(std::sync::atomic::Ordering::Relaxed);
    running.store(desc.id().0 + 1, std::sync::atomic::Ordering::Relaxed);
    let outer = pe.current.replace(Some(Rc::clone(elem)));
    desc.invoke(Invoke { pe, target: Target::Elem(elem), desc, args, reply });
    *pe.current.borrow_mut() = outer;
    running.store(before, std::sync::atomic::Ordering::Relaxed);
    after_state_change(elem.meta());
    true
}

/// Re-delivers the buffered `when` messages of an element whose conditions now hold,
/// until none does.
pub(crate) fn retry_when(pe: &Rc<PeLocal>, elem: &Rc<dyn AnyElem>) {
    loop {
        let buf = elem.meta().take_buffered();
        if buf.is_empty() {
            return;
        }
        let mut progressed = false;
        for env in buf {
            let Envelope::Call { ep, .. } = &env else { continue };
            let desc = crate::chare::registry::entry(*ep).expect("registered");
            progressed |= deliver(pe, elem, desc, env);
        }
        if !progressed {
            return;
        }
    }
}

/// Wraps the main function (and spawned tasks): a panic there ends the job.
pub(crate) async fn guard_main(fut: impl StdFuture<Output = ()>) {
    if let Err(m) = CatchUnwind::new(fut).await {
        fatal(&format!("panic in the main function or a spawned task: {m}"));
    }
}

pin_project_lite::pin_project! {
    /// Polls a future, turning a panic into `Err(message)`. Pinned in place (no box of
    /// its own): it lives inside the task's allocation.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        fut: F,
    }
}

impl<F: StdFuture> CatchUnwind<F> {
    pub(crate) fn new(fut: F) -> Self {
        CatchUnwind { fut }
    }
}

impl<F: StdFuture> StdFuture for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.project().fut;
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(p))),
        }
    }
}
