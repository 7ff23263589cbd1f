//! The native half of the `charmrs` Python package: the private module
//! `charmrs._charmrs`. Glue only: the runtime is `smp-core` (crate `charmrs`).
//!
//! One Rust chare type, [`PyChare`], stands for every Python chare class: the core's
//! entry-method table is fixed at link time, so Python classes are named by
//! `module:qualname` in the messages and their methods by name. Arguments travel as
//! pickled bytes ([`PodVec<u8>`]: out of band between processes), unpickled on the PE
//! that runs the method. The PE loop runs without the GIL; each call into Python takes
//! it.
//!
//! Coroutines (`main`, `@coro` methods) are greenlets driven by a Rust task of the PE
//! (`drive`): a greenlet that waits for a future switches back to the task with the
//! future, the task awaits it without the GIL and switches back in with the value.
//!
//! numpy arrays among the arguments travel beside the pickle, copied at most once on
//! each side (module `arrays`).

use charmrs::prelude::*;
use charmrs::PodVec;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::Arc;

mod arrays;
mod arrred;
mod entry;
use arrays::ArrayData;
use arrred::PyArr;

/// A method call for a Python chare: the method's name, its pickled arguments, and
/// whether the caller wants the return value (`ret=True`: then it is pickled back).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PyMsg {
    /// Shared by the copies of a broadcast (a clone per element it reaches).
    #[serde(with = "shared")]
    method: Arc<str>,
    args: PodVec<u8>,
    /// The numpy arrays among the positional arguments (`None` in the pickle or in
    /// `plain`): raw bytes beside the message between processes, never pickled.
    arrays: Vec<PyArrayArg>,
    /// The out-of-band buffers of the pickle (protocol 5: numpy arrays nested inside
    /// other arguments), raw bytes beside the message between processes.
    bufs: Vec<ArrayData>,
    /// The futures and proxies among the positional arguments (`None` in the pickle):
    /// pickling one costs a few microseconds (a global lookup on each side).
    objs: Vec<PyObjArg>,
    /// The arguments when they are all of plain types ([`ARGS_PLAIN`]): no pickle.
    /// Shared by the copies of a broadcast, which then know each other by address.
    #[serde(with = "shared")]
    plain: Arc<[PlainArg]>,
    /// The caller's objects themselves ([`ARGS_REF`]: a call delivered in this process
    /// with `local_msg_optim`), pickled only if the message leaves the process.
    refs: entry::RefArgs,
    ret: bool,
    /// How `args` are passed: [`ARGS_TUPLE`], [`ARGS_ONE`] or [`ARGS_NONE`].
    shape: u8,
}

/// Serde for the `Arc`s of [`PyMsg`], as the `String` or `Vec` they hold (serde's own
/// `rc` feature would make every `Rc` a payload in the whole workspace).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<T: ?Sized + Serialize, S: Serializer>(
        v: &Arc<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        (**v).serialize(s)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<Arc<T>, D::Error>
    where
        T: ?Sized + ToOwned,
        T::Owned: Deserialize<'de> + Into<Arc<T>>,
        D: Deserializer<'de>,
    {
        T::Owned::deserialize(d).map(Into::into)
    }
}

/// A group element.
const KIND_GROUP: u8 = 0;
/// An array element.
const KIND_ARRAY: u8 = 1;
/// A single chare.
const KIND_SINGLE: u8 = 2;
/// A single chare whose `__init__` runs later, as a coroutine (the entry chare of
/// `charm.start(ChareClass)`, as in Charm4py).
const KIND_SINGLE_DEFERRED: u8 = 3;

impl PyMsg {
    /// A call of `method` with positional `args`: natively ([`ARGS_PLAIN`]) if each is
    /// plain or a numpy array of a plain dtype (beside them, as `arrays`); otherwise
    /// pickled (protocol 5) with the explicit futures, the proxies and the numpy arrays
    /// of plain dtypes among them beside the pickle (`None` in their places: pickling a
    /// future or a proxy costs a global lookup on each side, and numpy's pickling of an
    /// array ~15 us even when small), and the arrays nested in other arguments as the
    /// pickle's out-of-band buffers. Each argument is looked at once (an array's bytes
    /// are read once, whichever way the call goes).
    fn positional(
        py: Python<'_>,
        method: &str,
        args: &Bound<'_, pyo3::types::PyTuple>,
        ret: bool,
    ) -> PyResult<PyMsg> {
        let index = |i: usize| {
            u32::try_from(i).map_err(|_| pyo3::exceptions::PyValueError::new_err("too many arguments"))
        };
        let mut plain = Vec::with_capacity(args.len());
        let mut arrays = Vec::new();
        // The first argument that is neither plain nor an array: the call is pickled.
        let mut other = None;
        for (i, a) in args.iter().enumerate() {
            if let Some(p) = PlainArg::of(&a) {
                plain.push(p);
            } else if let Some(arr) = arrays::plain_array(&a, index(i)?) {
                arrays.push(arr);
                plain.push(PlainArg::None);
            } else {
                other = Some(i);
                break;
            }
        }
        let Some(other) = other else {
            return Ok(PyMsg {
                plain: plain.into(),
                arrays,
                ..PyMsg::new(method.to_owned(), PodVec::new(), ARGS_PLAIN, ret)
            });
        };
        let mut rest: Option<Vec<Bound<'_, PyAny>>> = None;
        let (mut objs, mut nested) = (Vec::new(), false);
        let found: Vec<usize> = arrays.iter().map(|a| a.index as usize).collect();
        let mut seen = found.into_iter().peekable();
        for (i, a) in args.iter().enumerate() {
            if i < other && seen.next_if_eq(&i).is_some() {
                // An array found above.
            } else if let Some(o) = beside_arg(&a, index(i)?)? {
                objs.push(o);
            } else if i < other {
                continue; // a plain value: pickled with the rest
            } else if let Some(arr) = (i > other).then(|| arrays::plain_array(&a, i as u32)).flatten() {
                arrays.push(arr);
            } else {
                nested |= !flat(&a);
                continue;
            }
            rest.get_or_insert_with(|| args.iter().collect())[i] = py.None().into_bound(py);
        }
        let args = match rest {
            Some(rest) => pyo3::types::PyTuple::new(py, rest)?,
            None => args.clone(),
        };
        let mut bufs = Vec::new();
        let pickle = if nested && arrays::numpy_loaded(py) {
            let got = pyo3::types::PyList::empty(py);
            let kw = pyo3::types::PyDict::new(py);
            kw.set_item(pyo3::intern!(py, "buffer_callback"), got.getattr(pyo3::intern!(py, "append"))?)?;
            let pickle = pickle_fn(py, true)?.call((&args, 5), Some(&kw))?;
            if !got.is_empty() {
                let views = glue_fn!(py, "buffers")?.call1((got,))?;
                for v in views.try_iter()? {
                    bufs.push(ArrayData::borrow(&v?)?);
                }
            }
            pickle
        } else {
            pickle_fn(py, true)?.call1((&args, 5))?
        };
        Ok(PyMsg { arrays, bufs, objs, ..PyMsg::new(method.to_owned(), pickled(&pickle), ARGS_TUPLE, ret) })
    }

    /// The sender's arrays this message still refers to (see [`arrays::detach`]).
    fn live(&self) -> Vec<std::sync::Arc<arrays::LiveArray>> {
        self.arrays
            .iter()
            .map(|a| &a.data)
            .chain(&self.bufs)
            .filter_map(|d| match d {
                ArrayData::Live(l) => Some(std::sync::Arc::clone(l)),
                ArrayData::Owned(_) => None,
            })
            .collect()
    }

    /// A call of `method` with `args` passed as `shape` says, and nothing beside them.
    fn new(method: String, args: PodVec<u8>, shape: u8, ret: bool) -> PyMsg {
        PyMsg {
            method: method.into(),
            args,
            arrays: Vec::new(),
            bufs: Vec::new(),
            objs: Vec::new(),
            plain: Arc::default(),
            refs: entry::RefArgs::None,
            ret,
            shape,
        }
    }
}

/// A numpy array argument: its position, dtype (`dtype.str`), shape and data.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PyArrayArg {
    index: u32,
    dtype: String,
    shape: Vec<i64>,
    data: ArrayData,
}

/// A future or proxy argument, by position.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub enum PyObjArg {
    /// An explicit future (`charm.Future()`).
    Future(u32, charmrs::Future<Pickled>),
    /// A proxy, and the `module:qualname` of its chare class.
    Proxy(u32, PyChareProxy, String),
}

/// `args` is a pickled tuple of the arguments.
const ARGS_TUPLE: u8 = 0;
/// `args` is one pickled value, the one argument (a reduction's result).
const ARGS_ONE: u8 = 1;
/// No arguments (an empty reduction's callback).
const ARGS_NONE: u8 = 2;
/// `args` is a pickled pair `(args, kwargs)`.
const ARGS_KW: u8 = 3;
/// The positional arguments are in `plain` (all of plain types), `args` is empty.
const ARGS_PLAIN: u8 = 4;
/// The arguments are in `refs`, passed by reference (module `entry`).
const ARGS_REF: u8 = 5;

/// A positional argument of a plain Python type, carried without pickle (pickling a
/// call costs more than its transport within a host).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum PlainArg {
    /// `None`.
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` of 64 bits (larger ones are pickled).
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(PodVec<u8>),
    /// An explicit future (`charm.Future()`).
    Future(charmrs::Future<Pickled>),
    /// A proxy, and the `module:qualname` of its chare class (boxed: the other
    /// variants are small).
    Proxy(Box<(PyChareProxy, String)>),
}

/// The proxy classes (one per chare class) by type object address, with the path of
/// their chare class: a proxy argument is then recognised without a Python call.
static PROXY_CLASSES: std::sync::Mutex<Vec<(usize, String)>> = std::sync::Mutex::new(Vec::new());

/// Registers proxy class `cls` of the chare class at `path` (`module:qualname`), so
/// that proxies of it travel as plain arguments (from `charmrs.chare`).
#[pyfunction]
fn register_proxy_class(cls: &Bound<'_, pyo3::types::PyType>, path: String) {
    let mut all = PROXY_CLASSES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = cls.as_ptr() as usize;
    if !all.iter().any(|(k, _)| *k == key) {
        // Classes live as long as the process (the proxy class cache keeps them).
        std::mem::forget(cls.clone().unbind());
        all.push((key, path));
    }
}

/// The path of the chare class of proxy class `t`, if it is one.
fn proxy_class_path(t: &Bound<'_, pyo3::types::PyType>) -> Option<String> {
    let key = t.as_ptr() as usize;
    let all = PROXY_CLASSES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    all.iter().find(|(k, _)| *k == key).map(|(_, p)| p.clone())
}

thread_local! {
    /// Whether this PE thread runs a busy turn of its scheduler, holding the GIL (see
    /// `set_pe_turn_wrapper` in [`start`]).
    static IN_TURN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` without the GIL if this PE thread holds it for its scheduler's turn (a
/// long computation in Rust lets the program's other Python threads run meanwhile);
/// as it is otherwise (the thread does not hold the GIL then).
pub(crate) fn without_turn_gil<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if IN_TURN.get() {
        Python::attach(|py| py.detach(f))
    } else {
        f()
    }
}

/// `charmrs._glue.Done`, what a worker greenlet switches back with at the end of a job.
fn done_class(py: Python<'_>) -> &Bound<'_, pyo3::types::PyType> {
    static T: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    T.import(py, "charmrs._glue", "Done").expect("charmrs._glue.Done")
}

/// `charmrs.Future`, the class.
pub(crate) fn future_class(py: Python<'_>) -> PyResult<&Bound<'_, pyo3::types::PyType>> {
    static T: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    T.import(py, "charmrs.future", "Future")
}

impl PlainArg {
    /// The argument if `a` is exactly of a plain type (not a subclass) that this
    /// encodes; `None` otherwise (the call is pickled then).
    fn of(a: &Bound<'_, PyAny>) -> Option<PlainArg> {
        use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
        Some(if a.is_none() {
            PlainArg::None
        } else if let Ok(b) = a.cast_exact::<PyBool>() {
            PlainArg::Bool(b.is_true())
        } else if let Ok(i) = a.cast_exact::<PyInt>() {
            PlainArg::Int(i.extract().ok()?)
        } else if let Ok(f) = a.cast_exact::<PyFloat>() {
            PlainArg::Float(f.value())
        } else if let Ok(s) = a.cast_exact::<PyString>() {
            PlainArg::Str(s.to_cow().ok()?.into_owned())
        } else if let Ok(b) = a.cast_exact::<PyBytes>() {
            PlainArg::Bytes(b.as_bytes().to_vec().into())
        } else {
            let py = a.py();
            let t = a.get_type();
            if future_class(py).is_ok_and(|f| t.is(f)) {
                let raw = a.getattr(pyo3::intern!(py, "_raw")).ok()?;
                match &raw.cast::<PyFuture>().ok()?.borrow().kind {
                    FutKind::Val(f) | FutKind::Multi(f) => PlainArg::Future(f.clone()),
                    // Refused with its message by the pickled path.
                    _ => return None,
                }
            } else if let Some(path) = proxy_class_path(&t) {
                let raw = a.getattr(pyo3::intern!(py, "_raw")).ok()?;
                PlainArg::Proxy(Box::new((raw.cast::<PyProxy>().ok()?.get().inner, path)))
            } else {
                return None;
            }
        })
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match self {
            PlainArg::None => py.None().into_bound(py),
            PlainArg::Bool(b) => pyo3::types::PyBool::new(py, *b).to_owned().into_any(),
            PlainArg::Int(i) => i.into_pyobject(py)?.into_any(),
            PlainArg::Float(f) => f.into_pyobject(py)?.into_any(),
            PlainArg::Str(s) => pyo3::types::PyString::new(py, s).into_any(),
            PlainArg::Bytes(b) => PyBytes::new(py, b).into_any(),
            PlainArg::Future(f) => glue_fn!(py, "future_of")?.call1((PyFuture::copy_of(f.clone()),))?,
            PlainArg::Proxy(p) => glue_fn!(py, "proxy_of")?.call1((PyProxy { inner: p.0 }, &p.1))?,
        })
    }

    /// Whether making the Python object costs a Python call (a future or a proxy).
    fn costly(&self) -> bool {
        matches!(self, PlainArg::Future(_) | PlainArg::Proxy(_))
    }

    /// Whether `self` and `other` make equal Python objects (a future or proxy: the
    /// same one), so that the object made for one serves for the other.
    fn same(&self, other: &PlainArg) -> bool {
        match (self, other) {
            (PlainArg::None, PlainArg::None) => true,
            (PlainArg::Bool(a), PlainArg::Bool(b)) => a == b,
            (PlainArg::Int(a), PlainArg::Int(b)) => a == b,
            (PlainArg::Float(a), PlainArg::Float(b)) => a.to_bits() == b.to_bits(),
            (PlainArg::Str(a), PlainArg::Str(b)) => a == b,
            (PlainArg::Bytes(a), PlainArg::Bytes(b)) => a[..] == b[..],
            (PlainArg::Future(a), PlainArg::Future(b)) => a == b,
            (PlainArg::Proxy(a), PlainArg::Proxy(b)) => a == b,
            _ => false,
        }
    }

    fn len(&self) -> usize {
        match self {
            PlainArg::Str(s) => s.len(),
            PlainArg::Bytes(b) => b.len(),
            _ => 8,
        }
    }
}

/// A pickled value; empty when the caller did not ask for it.
type Pickled = PodVec<u8>;

/// Python-level profiling (`charm.options.profiling`, `charm.printStats()`): per chare
/// class and entry method, the time in the method (`em`), in sends made from it
/// (`send`) and in unpickling its arguments (`recv`); and the sizes of the messages
/// this PE sent and received. Off by default (nothing is timed then).
mod prof {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    static ON: AtomicBool = AtomicBool::new(false);

    /// Whether profiling is on (set before the job starts).
    #[inline]
    pub(crate) fn on() -> bool {
        ON.load(Ordering::Relaxed)
    }

    pub(crate) fn set(on: bool) {
        ON.store(on, Ordering::Relaxed);
    }

    /// One entry method's totals.
    #[derive(Default, Clone, Copy)]
    pub(crate) struct Row {
        pub(crate) em: Duration,
        pub(crate) send: Duration,
        pub(crate) recv: Duration,
        pub(crate) calls: u64,
    }

    /// Message sizes: count, total, min, max.
    #[derive(Default, Clone, Copy)]
    pub(crate) struct Sizes {
        pub(crate) n: u64,
        pub(crate) total: u64,
        pub(crate) min: u64,
        pub(crate) max: u64,
    }

    impl Sizes {
        fn add(&mut self, bytes: u64) {
            self.min = if self.n == 0 { bytes } else { self.min.min(bytes) };
            self.max = self.max.max(bytes);
            self.n += 1;
            self.total += bytes;
        }
    }

    /// The runtime's own work that the manual's profile lists after the chare
    /// classes: `reductions` (contributing), `custom reductions` (Python reducers
    /// combining values), `migrating out` (pickling chares that leave).
    #[derive(Clone, Copy)]
    pub(crate) enum Extra {
        Reductions = 0,
        CustomReductions = 1,
        MigratingOut = 2,
    }

    #[derive(Default)]
    pub(crate) struct Table {
        pub(crate) rows: BTreeMap<(String, String), Row>,
        /// Time in each [`Extra`] (in the running method's time too, where one runs).
        pub(crate) extras: [Duration; 3],
        pub(crate) sent: Sizes,
        pub(crate) received: Sizes,
        /// Time in sends since the running method started.
        sending: Duration,
    }

    thread_local! {
        /// This PE's table.
        pub(crate) static TABLE: RefCell<Table> = RefCell::new(Table::default());
    }

    /// A send of `bytes` took `took`.
    pub(crate) fn sent(bytes: u64, took: Duration) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            t.sent.add(bytes);
            t.sending += took;
        });
    }

    /// Adds `took` to the time in `what` (when profiling is on).
    pub(crate) fn extra(what: Extra, took: Duration) {
        TABLE.with(|t| t.borrow_mut().extras[what as usize] += took);
    }

    /// Counts the time until it is dropped in `what`, if profiling is on.
    pub(crate) struct Timed(Option<(Extra, std::time::Instant)>);

    /// Starts timing the rest of the scope as `what` (see [`Timed`]).
    pub(crate) fn time(what: Extra) -> Timed {
        Timed(on().then(|| (what, std::time::Instant::now())))
    }

    impl Drop for Timed {
        fn drop(&mut self) {
            if let Some((what, t0)) = self.0 {
                extra(what, t0.elapsed());
            }
        }
    }

    /// Starts a method's step: the sends made from now on are its own.
    pub(crate) fn begin() {
        TABLE.with(|t| t.borrow_mut().sending = Duration::ZERO);
    }

    /// Ends a step of `method` of `class` that took `took` (sends included) after
    /// `recv` unpickling `bytes` of arguments (`calls`: 1 for a new call, 0 for a
    /// coroutine going on).
    pub(crate) fn end(class: String, method: &str, took: Duration, recv: Duration, bytes: Option<u64>) {
        TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let sending = std::mem::take(&mut t.sending);
            if let Some(b) = bytes {
                t.received.add(b);
            }
            let r = t.rows.entry((class, method.to_string())).or_default();
            r.em += took.saturating_sub(sending);
            r.send += sending;
            r.recv += recv;
            r.calls += u64::from(bytes.is_some());
        });
    }
}

/// How the profile names a chare's class: `<class 'module.qualname'> as Group`, `as
/// Mainchare` (the chare class given to `charm.start`) or `as Array` (Charm4py's
/// other single chares are arrays too).
fn class_name(obj: &Bound<'_, PyAny>) -> String {
    let t = obj.get_type();
    let module = t.module().map(|m| m.to_string()).unwrap_or_default();
    let q = t.qualname().map(|q| q.to_string()).unwrap_or_default();
    let py = obj.py();
    let group = obj
        .getattr(pyo3::intern!(py, "thisProxy"))
        .and_then(|p| p.getattr(pyo3::intern!(py, "_raw")))
        .is_ok_and(|r| r.cast::<PyProxy>().is_ok_and(|r| r.get().is_group()));
    let kind = if group {
        "Group"
    } else if glue_fn!(py, "is_mainchare")
        .and_then(|f| f.call1((obj,)))
        .is_ok_and(|r| r.is_truthy().unwrap_or(false))
    {
        "Mainchare"
    } else {
        "Array"
    };
    format!("<class '{module}.{q}'> as {kind}")
}

/// The bytes of a message's arguments (pickle, arrays, buffers).
fn msg_bytes(msg: &PyMsg) -> u64 {
    (msg.args.len()
        + msg.arrays.iter().map(|a| a.data.len()).sum::<usize>()
        + msg.bufs.iter().map(|b| b.len()).sum::<usize>()
        + msg.plain.iter().map(PlainArg::len).sum::<usize>()) as u64
}

/// A Python chare: the Python object, made by `charmrs._glue.construct`. It migrates
/// pickled (`charmrs._glue.pack_chare` / `unpack_chare`, protocol 5).
pub struct PyChare {
    obj: Py<PyAny>,
}

pyo3::create_exception!(
    charmrs.exceptions,
    CharmError,
    pyo3::exceptions::PyException,
    "An error of the charmrs runtime, or an exception raised in a remote method (its traceback is in the message)."
);

/// A function of the private Python half of the glue (`charmrs._glue`), looked up once.
macro_rules! glue_fn {
    ($py:expr, $name:literal) => {{
        static F: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        F.import($py, "charmrs._glue", $name)
    }};
}
pub(crate) use glue_fn;

/// The exception's traceback, as Python prints it.
fn traceback(py: Python<'_>, e: &PyErr) -> String {
    let text = py.import("traceback").and_then(|tb| {
        let v = e.value(py);
        tb.call_method1("format_exception", (v.get_type(), v, e.traceback(py)))?.extract::<Vec<String>>()
    });
    match text {
        Ok(lines) => lines.concat(),
        Err(_) => e.to_string(),
    }
}

/// Fails the running method with the Python exception: the runtime catches the panic
/// and hands it to the caller's future (the exception itself, pickled, when it can be:
/// the caller re-raises it with its own type), or ends the job with it if nobody waits.
fn raised(py: Python<'_>, what: &str, e: PyErr) -> ! {
    let tb = traceback(py, &e);
    let detail = glue_fn!(py, "pickle_exception")
        .and_then(|f| f.call1((e.value(py),)))
        .map(|b| pickled(&b).into_inner())
        .unwrap_or_default();
    std::panic::panic_any(charmrs::__private::Raised {
        message: format!("{what} raised an exception:\n{}", tb.trim_end()),
        detail,
    })
}

/// The exit status `SystemExit` exception `e` asks for: its code (0 for `None`; a
/// message, printed, means 1), as Python's own `exit()` does.
fn exit_code(py: Python<'_>, e: &PyErr) -> i32 {
    match e.value(py).getattr("code").ok() {
        Some(c) if c.is_none() => 0,
        Some(c) => c.extract::<i32>().unwrap_or_else(|_| {
            eprintln!("{c}");
            1
        }),
        None => 0,
    }
}

/// A runtime error as a Python exception: a remote exception with its own type (the
/// remote traceback in its notes and `remote_traceback`), anything else a `CharmError`.
fn py_err(e: charmrs::Error) -> PyErr {
    if let charmrs::Error::RemotePanic { detail: Some(d), .. } = &e {
        if !d.is_empty() {
            let text = e.to_string();
            let exc = Python::attach(|py| {
                glue_fn!(py, "unpickle_exception")
                    .and_then(|f| f.call1((PyBytes::new(py, d), text)))
                    .map(Bound::unbind)
            });
            if let Ok(exc) = exc {
                return Python::attach(|py| PyErr::from_value(exc.into_bound(py)));
            }
        }
    }
    CharmError::new_err(e.to_string())
}

/// The bytes of a `bytes` result (or none, for `None`).
fn pickled(v: &Bound<'_, PyAny>) -> Pickled {
    match v.cast::<PyBytes>() {
        Ok(b) => b.as_bytes().to_vec().into(),
        Err(_) => PodVec::new(),
    }
}

impl serde::Serialize for PyChare {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let _timed = prof::time(prof::Extra::MigratingOut);
        let bytes = Python::attach(|py| {
            let obj = self.obj.bind(py);
            glue_fn!(py, "pack_chare").and_then(|f| f.call1((obj,))).map(|b| pickled(&b)).map_err(|e| {
                let class = obj.get_type().qualname().map(|q| q.to_string()).unwrap_or_default();
                format!("pickling the {class} object failed:\n{}", traceback(py, &e).trim_end())
            })
        })
        .map_err(serde::ser::Error::custom)?;
        bytes.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for PyChare {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = PodVec::<u8>::deserialize(d)?;
        Python::attach(|py| {
            glue_fn!(py, "unpack_chare")
                .and_then(|f| f.call1((PyBytes::new(py, &bytes),)))
                .map(|o| PyChare { obj: o.unbind() })
                .map_err(|e| traceback(py, &e))
        })
        .map_err(|tb| serde::de::Error::custom(format!("unpickling it failed:\n{}", tb.trim_end())))
    }
}

#[chare(migratable)]
impl PyChare {
    /// Makes the Python object: `kind` is [`KIND_GROUP`], [`KIND_ARRAY`] or
    /// [`KIND_SINGLE`] (Charm4py's `thisIndex` is an int for a group, a tuple for an
    /// array).
    fn new(ctx: &Ctx<Self>, class: String, kind: u8, args: PodVec<u8>) -> Self {
        let index: Vec<i32> = ctx.this_index().as_slice().to_vec();
        let proxy = PyProxy { inner: ctx.this_proxy() };
        Python::attach(|py| {
            let made = glue_fn!(py, "construct")
                .and_then(|f| f.call1((&class, PyBytes::new(py, &args), index, proxy, kind)));
            match made {
                Ok(obj) => {
                    // A @coro constructor that waits: its greenlet goes on as a task.
                    let glet = pyo3::intern!(py, "_charmrs_ctor_glet");
                    if let Ok((g, first)) =
                        obj.getattr(glet).and_then(|t| t.extract::<(Py<PyAny>, Py<PyAny>)>())
                    {
                        let _ = obj.delattr(glet);
                        let what = format!("the constructor of {class}");
                        let me = ctx.this_elem();
                        charmrs::spawn(async move {
                            drive_from(g, &what, Some(first)).await;
                            // The element's state changed: what waits on it looks again.
                            if let Some(h) = Handle::<PyChare>::of(&me) {
                                h.with(|_| ());
                            }
                        });
                    }
                    // Reductions the constructor contributed to wait until the element
                    // exists: right after this message.
                    if obj.hasattr(pyo3::intern!(py, "_charmrs_pending")).unwrap_or(false) {
                        let o = obj.clone().unbind();
                        charmrs::spawn(async move {
                            Python::attach(|py| {
                                if let Err(e) = glue_fn!(py, "flush_pending").and_then(|f| f.call1((o,))) {
                                    raised(py, "a contribution made in a constructor", e)
                                }
                            })
                        });
                    }
                    // `setMigratable(False)` in the constructor.
                    if let Ok(false) =
                        obj.getattr(pyo3::intern!(py, "migratable")).and_then(|m| m.is_truthy())
                    {
                        ctx.set_migratable(false);
                    }
                    PyChare { obj: obj.unbind() }
                }
                Err(e) if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => {
                    // `exit(n)` in a constructor ends the job with status n, as in a
                    // method; the element is a placeholder that ignores its calls.
                    charmrs::exit(exit_code(py, &e));
                    PyChare { obj: py.None() }
                }
                Err(e) => raised(py, &format!("the constructor of {class}"), e),
            }
        })
    }

    /// Runs `msg.method` on the Python object (a plain method: it cannot wait).
    fn call(&mut self, ctx: &Ctx<Self>, msg: PyMsg) -> Pickled {
        let _ = ctx;
        let mut msg = msg;
        Python::attach(|py| match invoke(py, self.obj.bind(py), &mut msg) {
            Ok(v) => v,
            Err(e) => raised(py, &format!("method {}", msg.method), e),
        })
    }

    /// Runs `msg.method`, a method with a `@when` condition: the runtime keeps the
    /// message until the condition holds (re-checked after each method of the element).
    #[when(self.holds(msg))]
    fn call_when(&mut self, ctx: &Ctx<Self>, msg: PyMsg) -> Pickled {
        self.call(ctx, msg)
    }

    /// Runs `msg.method`, a `@coro` method with a `@when` condition: it starts once the
    /// condition holds, then may wait as any coroutine.
    #[when(self.holds(msg))]
    async fn call_coro_when(this: Handle<Self>, msg: PyMsg) -> Pickled {
        Self::run_coro(this, msg).await
    }

    /// Runs `msg.method` (a `@coro` method) in a greenlet: it may wait for futures.
    async fn call_coro(this: Handle<Self>, msg: PyMsg) -> Pickled {
        Self::run_coro(this, msg).await
    }

    /// After a move: the Python object's `migrated()`.
    fn migrated(&mut self) {
        Python::attach(|py| {
            if let Err(e) = self.obj.bind(py).call_method0(pyo3::intern!(py, "migrated")) {
                raised(py, "method migrated", e)
            }
        })
    }

    /// After a load-balancing step: the Python object's `resumeFromSync()`, sent to the
    /// element as a message (a `@coro` one runs as a coroutine).
    fn resume_from_sync(&mut self, ctx: &Ctx<Self>) {
        let coro = Python::attach(|py| {
            self.obj
                .bind(py)
                .getattr(pyo3::intern!(py, "resumeFromSync"))
                .and_then(|m| m.getattr(pyo3::intern!(py, "_charmrs_coro")))
                .and_then(|c| c.is_truthy())
                .unwrap_or(false)
        });
        let msg = PyMsg::new("resumeFromSync".into(), PodVec::new(), ARGS_NONE, false);
        if coro {
            let _ = ctx.this_elem().call_coro(msg);
        } else {
            let _ = ctx.this_elem().call(msg);
        }
    }
}

impl PyChare {
    /// The greenlet of a `@coro` method, driven to its end.
    async fn run_coro(this: Handle<Self>, mut msg: PyMsg) -> Pickled {
        let obj = this.with(|c| Python::attach(|py| c.obj.clone_ref(py)));
        if Python::attach(|py| obj.is_none(py)) {
            return PodVec::new(); // its constructor called `exit()`: the job is ending
        }
        let key = prof::on().then(|| Python::attach(|py| (class_name(obj.bind(py)), msg.method.to_string())));
        let bytes = msg_bytes(&msg);
        let t0 = std::time::Instant::now();
        let glet = Python::attach(|py| {
            msg_args_owned(py, &mut msg)
                .and_then(|(a, kw)| glue_fn!(py, "coro")?.call1((obj, &*msg.method, a, kw, msg.ret)))
                .map(Bound::unbind)
                .unwrap_or_else(|e| raised(py, &format!("method {}", msg.method), e))
        });
        if let Some((class, method)) = &key {
            prof::end(class.clone(), method, std::time::Duration::ZERO, t0.elapsed(), Some(bytes));
        }
        drive_profiled(glet, &format!("method {}", msg.method), None, key).await
    }
}

/// Keeps large allocations (message buffers, numpy arrays of arguments) in glibc's
/// heap instead of a fresh `mmap` each: with the default threshold every message of a
/// few MiB was mapped, faulted in page by page and unmapped again (measured: a third
/// of a 1 MiB ping-pong's time in page faults). `CHARMRS_MALLOC_TUNE=0` leaves glibc
/// as it is.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var("CHARMRS_MALLOC_TUNE").as_deref() != Ok("0") {
        // SAFETY: `mallopt` only changes allocator parameters; it is called before the
        // runtime starts its threads, with valid parameter codes and values.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}

/// `pickle.loads` and `pickle.dumps`, looked up once.
fn pickle_fn<'py>(py: Python<'py>, dumps: bool) -> PyResult<&'py Bound<'py, PyAny>> {
    static LOADS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    static DUMPS: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    if dumps {
        DUMPS.import(py, "pickle", "dumps")
    } else {
        LOADS.import(py, "pickle", "loads")
    }
}

/// Plain arguments made into objects, and the objects (see `LAST_PLAIN`).
type LastPlain = (Arc<[PlainArg]>, Py<pyo3::types::PyTuple>);

thread_local! {
    /// The arguments last unpickled on this PE, with the message bytes they came from
    /// (kept alive, so that the buffer's address cannot be reused meanwhile): the copies
    /// of a broadcast share their bytes, so its local recipients unpickle them once and
    /// share the objects, as the manual allows ("Rules and Semantics").
    static LAST_ARGS: std::cell::RefCell<Option<(PodVec<u8>, Py<PyAny>)>> = const { std::cell::RefCell::new(None) };
    /// The same for the whole argument tuple of a message with futures or proxies
    /// beside its pickle (and no arrays, which each recipient gets its own copy of): a
    /// broadcast's local recipients share them too.
    static LAST_FULL: std::cell::RefCell<Option<(PodVec<u8>, Py<pyo3::types::PyTuple>)>> = const { std::cell::RefCell::new(None) };
    /// The same for plain arguments with futures or proxies: the arguments last made
    /// into objects on this PE, and the objects.
    static LAST_PLAIN: std::cell::RefCell<Option<LastPlain>> = const { std::cell::RefCell::new(None) };
}

/// The unpickled `args`, from the cache when they are the bytes unpickled last.
fn unpickle_args<'py>(py: Python<'py>, args: &PodVec<u8>) -> PyResult<Bound<'py, PyAny>> {
    let hit = LAST_ARGS.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(b, _)| b.as_ptr() == args.as_ptr() && b.len() == args.len())
            .map(|(_, v)| v.clone_ref(py))
    });
    if let Some(v) = hit {
        return Ok(v.into_bound(py));
    }
    let v = pickle_fn(py, false)?.call1((PyBytes::new(py, args),))?;
    let old = LAST_ARGS.with(|c| c.borrow_mut().replace((args.clone(), v.clone().unbind())));
    drop(old); // outside the borrow: dropping objects may run Python code
    Ok(v)
}

thread_local! {
    /// Method names as interned Python strings (a chare class has few methods; the
    /// lookup by an interned string compares pointers).
    static METHOD_NAMES: std::cell::RefCell<rustc_hash::FxHashMap<String, Py<pyo3::types::PyString>>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

/// `name` as an interned Python string, made once per PE thread.
fn method_name<'py>(py: Python<'py>, name: &str) -> Bound<'py, pyo3::types::PyString> {
    if let Some(s) = METHOD_NAMES.with(|m| m.borrow().get(name).map(|s| s.clone_ref(py))) {
        return s.into_bound(py);
    }
    let s = pyo3::types::PyString::intern(py, name);
    METHOD_NAMES.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() < 4096 {
            m.insert(name.to_owned(), s.clone().unbind());
        }
    });
    s
}

/// The positional and keyword arguments of a call.
type CallArgs<'py> = (Bound<'py, pyo3::types::PyTuple>, Option<Bound<'py, pyo3::types::PyDict>>);

/// The arguments of a message that stays where it is (a `@when` condition looks at
/// it): its arrays are copied.
fn msg_args<'py>(py: Python<'py>, msg: &PyMsg) -> PyResult<CallArgs<'py>> {
    let arrays = msg.arrays.iter().map(|a| a.data.to_vec()).collect();
    let bufs = msg.bufs.iter().map(ArrayData::to_vec).collect();
    args_with(py, msg, arrays, bufs)
}

/// The arguments of a message consumed by the call: its arrays become numpy arrays
/// without a copy when nothing else shares their bytes.
fn msg_args_owned<'py>(py: Python<'py>, msg: &mut PyMsg) -> PyResult<CallArgs<'py>> {
    let arrays = msg.arrays.iter_mut().map(|a| a.data.take()).collect();
    let bufs = msg.bufs.iter_mut().map(ArrayData::take).collect();
    args_with(py, msg, arrays, bufs)
}

/// The positional and keyword arguments of a message, unpickled here: the numpy
/// arrays that travelled beside the pickle (their bytes: `arrays`) put back in their
/// places, and the pickle's out-of-band buffers (`bufs`) handed to it, each a numpy
/// array over bytes the receiver owns.
fn args_with<'py>(
    py: Python<'py>,
    msg: &PyMsg,
    arrays: Vec<Vec<u8>>,
    bufs: Vec<Vec<u8>>,
) -> PyResult<CallArgs<'py>> {
    let unpickle = |bufs: Vec<Vec<u8>>| -> PyResult<Bound<'py, PyAny>> {
        if bufs.is_empty() {
            return unpickle_args(py, &msg.args);
        }
        let bufs = bufs
            .into_iter()
            .map(|b| {
                let n = b.len() as i64;
                arrays::array_over(py, b, "|u1", &[n])
            })
            .collect::<PyResult<Vec<_>>>()?;
        let kw = pyo3::types::PyDict::new(py);
        kw.set_item("buffers", bufs)?;
        pickle_fn(py, false)?.call((PyBytes::new(py, &msg.args),), Some(&kw))
    };
    Ok(match msg.shape {
        ARGS_TUPLE if msg.arrays.is_empty() && !msg.objs.is_empty() && bufs.is_empty() => {
            let hit = LAST_FULL.with(|c| {
                c.borrow()
                    .as_ref()
                    .filter(|(b, _)| b.as_ptr() == msg.args.as_ptr() && b.len() == msg.args.len())
                    .map(|(_, v)| v.clone_ref(py))
            });
            if let Some(t) = hit {
                return Ok((t.into_bound(py), None));
            }
            let list = unpickle(bufs)?.cast_into::<pyo3::types::PyTuple>()?.to_list();
            for o in &msg.objs {
                let (i, v) = obj_of(py, o)?;
                list.set_item(i as usize, v)?;
            }
            let t = list.to_tuple();
            let old = LAST_FULL.with(|c| c.borrow_mut().replace((msg.args.clone(), t.clone().unbind())));
            drop(old); // outside the borrow: dropping objects may run Python code
            (t, None)
        }
        ARGS_TUPLE if !msg.arrays.is_empty() || !msg.objs.is_empty() => {
            let args = unpickle(bufs)?.cast_into::<pyo3::types::PyTuple>()?;
            let list = args.to_list();
            for (a, bytes) in msg.arrays.iter().zip(arrays) {
                let arr = arrays::array_over(py, bytes, &a.dtype, &a.shape)?;
                list.set_item(a.index as usize, arr)?;
            }
            for o in &msg.objs {
                let (i, v) = obj_of(py, o)?;
                list.set_item(i as usize, v)?;
            }
            (list.to_tuple(), None)
        }
        ARGS_TUPLE => (unpickle(bufs)?.cast_into::<pyo3::types::PyTuple>()?, None),
        ARGS_ONE => (pyo3::types::PyTuple::new(py, [unpickle(bufs)?])?, None),
        ARGS_KW => {
            let (a, kw): (Bound<'py, pyo3::types::PyTuple>, Bound<'py, pyo3::types::PyDict>) =
                unpickle(bufs)?.extract()?;
            (a, Some(kw))
        }
        ARGS_PLAIN if msg.arrays.is_empty() && msg.plain.iter().any(PlainArg::costly) => {
            // The copies of a broadcast on this PE share the futures and proxies made
            // for the first, as they share unpickled arguments.
            let hit = LAST_PLAIN.with(|c| {
                c.borrow()
                    .as_ref()
                    .filter(|(a, _)| {
                        // A copy of the same broadcast shares the arguments themselves.
                        Arc::ptr_eq(a, &msg.plain)
                            || a.len() == msg.plain.len()
                                && a.iter().zip(msg.plain.iter()).all(|(x, y)| x.same(y))
                    })
                    .map(|(_, t)| t.clone_ref(py))
            });
            if let Some(t) = hit {
                return Ok((t.into_bound(py), None));
            }
            let items = msg.plain.iter().map(|a| a.to_py(py)).collect::<PyResult<Vec<_>>>()?;
            let t = pyo3::types::PyTuple::new(py, items)?;
            let old =
                LAST_PLAIN.with(|c| c.borrow_mut().replace((Arc::clone(&msg.plain), t.clone().unbind())));
            drop(old); // outside the borrow: dropping objects may run Python code
            (t, None)
        }
        ARGS_PLAIN => {
            let mut items = msg.plain.iter().map(|a| a.to_py(py)).collect::<PyResult<Vec<_>>>()?;
            // Each recipient its own arrays (from bytes it owns), in their places.
            for (a, bytes) in msg.arrays.iter().zip(arrays) {
                let Some(slot) = items.get_mut(a.index as usize) else {
                    return Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "malformed message: an array argument at position {} of {} arguments",
                        a.index,
                        msg.plain.len()
                    )));
                };
                *slot = arrays::array_over(py, bytes, &a.dtype, &a.shape)?;
            }
            (pyo3::types::PyTuple::new(py, items)?, None)
        }
        ARGS_REF => msg.refs.get(py)?,
        _ => (pyo3::types::PyTuple::empty(py), None),
    })
}

/// Runs `obj.<msg.method>(*args, **kwargs)` (the arguments unpickled here); returns the
/// pickled result if the caller asked for it. `exit()` in the method ends the job with
/// its code (the method returns normally).
fn invoke(py: Python<'_>, obj: &Bound<'_, PyAny>, msg: &mut PyMsg) -> PyResult<Pickled> {
    if obj.is_none() {
        // Its constructor called `exit()`: the job is ending, the calls go nowhere.
        return Ok(PodVec::new());
    }
    let method = obj.getattr(method_name(py, &msg.method))?;
    let r = if prof::on() {
        let bytes = msg_bytes(msg);
        let t0 = std::time::Instant::now();
        let args = msg_args_owned(py, msg);
        let t1 = std::time::Instant::now();
        prof::begin();
        let r = args.and_then(|(a, kw)| method.call(a, kw.as_ref()));
        prof::end(class_name(obj), &msg.method, t1.elapsed(), t1 - t0, Some(bytes));
        r
    } else {
        msg_args_owned(py, msg).and_then(|(a, kw)| method.call(a, kw.as_ref()))
    };
    let v = match r {
        Ok(v) => v,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => {
            charmrs::exit(exit_code(py, &e));
            return Ok(PodVec::new());
        }
        Err(e) => return Err(e),
    };
    if !msg.ret {
        return Ok(PodVec::new());
    }
    Ok(pickled(&pickle_fn(py, true)?.call1((v, 5))?))
}

impl PyChare {
    /// Whether the `@when` condition of `msg.method` holds for these arguments (with
    /// the GIL). A condition that raises ends the job with its traceback.
    fn holds(&self, msg: &PyMsg) -> bool {
        Python::attach(|py| {
            if self.obj.is_none(py) {
                return false; // its constructor called `exit()`: the job is ending
            }
            let r = msg_args(py, msg).and_then(|(a, kw)| {
                glue_fn!(py, "when_holds")?.call1((self.obj.bind(py), &*msg.method, a, kw))?.is_truthy()
            });
            r.unwrap_or_else(|e| raised(py, &format!("the @when condition of {}", msg.method), e))
        })
    }
}

/// Runs greenlet `glet` to its end on this PE: each time it switches back with a
/// future (`Future.get()`), waits for the future without the GIL and switches back in
/// with its value (or throws its error into it). Returns what the greenlet returned.
async fn drive(glet: Py<PyAny>, what: &str) -> Pickled {
    drive_from(glet, what, None).await
}

/// [`drive`] for a greenlet already started: `first` is what it switched back with.
async fn drive_from(glet: Py<PyAny>, what: &str, first: Option<Py<PyAny>>) -> Pickled {
    drive_profiled(glet, what, first, None).await
}

/// [`drive_from`], each step of the greenlet counted in the profile of entry method
/// `key` (class, method) if given.
async fn drive_profiled(
    glet: Py<PyAny>,
    what: &str,
    first: Option<Py<PyAny>>,
    key: Option<(String, String)>,
) -> Pickled {
    let mut resume: Option<Result<Py<PyAny>, PyErr>> = None;
    let mut first = first;
    loop {
        let t0 = key.as_ref().map(|_| {
            prof::begin();
            std::time::Instant::now()
        });
        let step = Python::attach(|py| {
            let g = glet.bind(py);
            let r = match (first.take(), resume.take()) {
                (Some(v), _) => Ok(v.into_bound(py)),
                (None, None) => g.call_method0(pyo3::intern!(py, "switch")),
                (None, Some(Ok(v))) => g.call_method1(pyo3::intern!(py, "switch"), (v,)),
                (None, Some(Err(e))) => {
                    let v = e.value(py);
                    g.call_method1(pyo3::intern!(py, "throw"), (v.get_type(), v, e.traceback(py)))
                }
            };
            let v = r.unwrap_or_else(|e| raised(py, what, e));
            // A worker greenlet that finished its job (and waits for the next one).
            if v.get_type().is(done_class(py)) {
                return Err(pickled(
                    &v.getattr(pyo3::intern!(py, "value")).unwrap_or_else(|e| raised(py, what, e)),
                ));
            }
            if g.getattr(pyo3::intern!(py, "dead")).and_then(|d| d.is_truthy()).unwrap_or(true) {
                return Err(pickled(&v));
            }
            if let Ok(f) = v.extract::<PyRef<'_, PyFuture>>() {
                f.awaited.store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(Wait::One(f.kind.clone()));
            }
            // `Chare.wait(condition)`: (element proxy, condition callable).
            if let Ok((elem, cond)) = v.extract::<(PyRef<'_, PyProxy>, Py<PyAny>)>() {
                return match Handle::<PyChare>::of(&elem.inner) {
                    Some(h) => Ok(Wait::Cond(h, cond)),
                    None => raised(
                        py,
                        what,
                        CharmError::new_err("wait(condition) is for a chare's own coroutine, on its PE"),
                    ),
                };
            }
            if let Ok(list) = v.cast::<pyo3::types::PyList>() {
                let kinds = list
                    .iter()
                    .map(|x| {
                        let f = x.extract::<PyRef<'_, PyFuture>>()?;
                        f.awaited.store(true, std::sync::atomic::Ordering::Relaxed);
                        Ok::<_, PyErr>(f.kind.clone())
                    })
                    .collect::<Result<Vec<_>, _>>();
                if let Ok(kinds) = kinds {
                    if !kinds.is_empty() {
                        return Ok(Wait::Any(kinds));
                    }
                }
            }
            raised(
                py,
                what,
                CharmError::new_err("a coroutine switched to the runtime without a future (greenlet misuse)"),
            )
        });
        if let (Some((class, method)), Some(t0)) = (&key, t0) {
            prof::end(class.clone(), method, t0.elapsed(), std::time::Duration::ZERO, None);
        }
        match step {
            Err(done) => return done,
            Ok(Wait::One(kind)) => resume = Some(kind.wait().await),
            Ok(Wait::Cond(h, cond)) => {
                // Re-checked after each method of the element; an error in the
                // condition counts as "holds": the coroutine re-evaluates it and raises.
                h.wait(move |_| {
                    Python::attach(|py| cond.call0(py).and_then(|r| r.is_truthy(py)).unwrap_or(true))
                })
                .await;
                resume = Some(Ok(Python::attach(|py| py.None())));
            }
            Ok(Wait::Any(kinds)) => {
                let (i, r) = first_of(kinds).await;
                resume = Some(Ok(Python::attach(|py| {
                    let (ok, v) = match r {
                        Ok(v) => (true, v),
                        Err(e) => (false, e.value(py).clone().into_any().unbind()),
                    };
                    (i, ok, v).into_pyobject(py).map(|t| t.into_any().unbind()).expect("a tuple")
                })));
            }
        }
    }
}

/// What a coroutine waits for.
enum Wait {
    /// One future (`Future.get()`).
    One(FutKind),
    /// The first of several to complete (`charm.iwait`): the coroutine gets `(index,
    /// ok, value or exception)`.
    Any(Vec<FutKind>),
    /// A condition on a chare (`Chare.wait`), re-checked after each of its methods.
    Cond(Handle<PyChare>, Py<PyAny>),
}

/// Waits for the first of `kinds` to complete; the others are left untouched (their
/// values stay in their futures).
async fn first_of(kinds: Vec<FutKind>) -> (usize, Result<Py<PyAny>, PyErr>) {
    let mut waits: Vec<_> = kinds.into_iter().map(|k| Box::pin(k.wait())).collect();
    std::future::poll_fn(|cx| {
        for (i, w) in waits.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::future::Future::poll(w.as_mut(), cx) {
                return std::task::Poll::Ready((i, r));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// What a Python `Future` stands for.
#[derive(Clone)]
enum FutKind {
    /// A value (`ret=True` on one element, or an explicit future).
    Val(charmrs::Future<Pickled>),
    /// Completion only (`awaitable=True`).
    Unit(charmrs::Future<()>),
    /// The values of a broadcast (`ret=True`), by element index.
    All(charmrs::Future<Vec<Pickled>>),
    /// The result of an allreduce.
    Red(charmrs::Future<PyRed>),
    /// The result of a gathering allreduce, by element index.
    Gathered(charmrs::Future<Vec<PyRed>>),
    /// The result of an allreduce of numbers.
    Num(charmrs::Future<PyNum>),
    /// The proxies of new sections (`charm.split`, `charm.combine`, slicing).
    Sections(charmrs::Future<Result<Vec<PyChareProxy>, charmrs::Error>>),
    /// An explicit future of several values (`Future(num_vals=n)`).
    Multi(charmrs::Future<Pickled>),
    /// The results of a pool map, one pickled list per chunk.
    Chunks(charmrs::Future<Result<Vec<Pickled>, charmrs::Error>>),
    /// The result of an allreduce of numpy arrays.
    Arr(charmrs::Future<PyArr>),
}

impl FutKind {
    /// Whether the value arrived (on the owner PE).
    fn is_ready(&self) -> bool {
        match self {
            FutKind::Val(f) | FutKind::Multi(f) => f.is_ready(),
            FutKind::Unit(f) => f.is_ready(),
            FutKind::All(f) => f.is_ready(),
            FutKind::Red(f) => f.is_ready(),
            FutKind::Gathered(f) => f.is_ready(),
            FutKind::Num(f) => f.is_ready(),
            FutKind::Sections(f) => f.is_ready(),
            FutKind::Chunks(f) => f.is_ready(),
            FutKind::Arr(f) => f.is_ready(),
        }
    }

    /// Waits for the value: unpickled, `None` for completion, a list for a broadcast;
    /// a remote failure becomes a `CharmError` with the remote traceback.
    async fn wait(self) -> Result<Py<PyAny>, PyErr> {
        let err = py_err;
        fn loads(py: Python<'_>, b: &[u8]) -> PyResult<Py<PyAny>> {
            if b.is_empty() {
                return Ok(py.None());
            }
            Ok(pickle_fn(py, false)?.call1((PyBytes::new(py, b),))?.unbind())
        }
        match self {
            FutKind::Val(f) => {
                let v = f.await.map_err(err)?;
                Python::attach(|py| loads(py, &v))
            }
            FutKind::Unit(f) => {
                f.await.map_err(err)?;
                Ok(Python::attach(|py| py.None()))
            }
            FutKind::All(f) => {
                let vs = f.await.map_err(err)?;
                Python::attach(|py| {
                    let items = vs.iter().map(|v| loads(py, v)).collect::<PyResult<Vec<_>>>()?;
                    Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
                })
            }
            FutKind::Red(f) => {
                let v = f.await.map_err(err)?;
                let data = finish(&v);
                Python::attach(|py| loads(py, &data))
            }
            FutKind::Num(f) => {
                let v = f.await.map_err(err)?;
                Python::attach(|py| Ok(v.into_py(py)?.unbind()))
            }
            FutKind::Arr(f) => {
                let v = f.await.map_err(err)?;
                Python::attach(|py| Ok(v.into_py(py)?.unbind()))
            }
            FutKind::Gathered(f) => {
                let vs = f.await.map_err(err)?;
                Python::attach(|py| {
                    let items = vs.iter().map(|v| loads(py, &v.data)).collect::<PyResult<Vec<_>>>()?;
                    Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
                })
            }
            FutKind::Multi(f) => {
                let vs = f.get_all().await.map_err(err)?;
                Python::attach(|py| {
                    let items = vs.iter().map(|v| loads(py, v)).collect::<PyResult<Vec<_>>>()?;
                    Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
                })
            }
            FutKind::Chunks(f) => {
                let vs = f.await.map_err(err)?.map_err(err)?;
                Python::attach(|py| {
                    let items = vs.iter().map(|v| loads(py, v)).collect::<PyResult<Vec<_>>>()?;
                    Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
                })
            }
            FutKind::Sections(f) => {
                let ps = f.await.map_err(err)?.map_err(err)?;
                Python::attach(|py| {
                    let items = ps
                        .into_iter()
                        .map(|inner| Py::new(py, PyProxy { inner }))
                        .collect::<PyResult<Vec<_>>>()?;
                    Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
                })
            }
        }
    }
}

/// A future of the runtime (wrapped by `charmrs.Future`).
#[pyclass(module = "charmrs._charmrs", name = "RawFuture")]
pub struct PyFuture {
    kind: FutKind,
    /// A coroutine waits for it (or it came from another chare): never detached.
    awaited: std::sync::atomic::AtomicBool,
}

impl PyFuture {
    fn new(kind: FutKind) -> PyFuture {
        // The program may keep it in a garbage cycle until the end (an exception it
        // raised holds the frame that holds it): an error it never awaited is then a
        // warning, as when it drops the future.
        match &kind {
            FutKind::Val(f) | FutKind::Multi(f) => f.lenient(),
            FutKind::Unit(f) => f.lenient(),
            FutKind::All(f) => f.lenient(),
            FutKind::Red(f) => f.lenient(),
            FutKind::Gathered(f) => f.lenient(),
            FutKind::Num(f) => f.lenient(),
            FutKind::Arr(f) => f.lenient(),
            FutKind::Sections(f) => f.lenient(),
            FutKind::Chunks(f) => f.lenient(),
        }
        PyFuture { kind, awaited: std::sync::atomic::AtomicBool::new(false) }
    }

    /// A copy of an explicit future that came from elsewhere: the original decides
    /// whether the future is detached, so dropping this one does not.
    fn copy_of(f: charmrs::Future<Pickled>) -> PyFuture {
        let f = PyFuture::new(FutKind::Val(f));
        f.awaited.store(true, std::sync::atomic::Ordering::Relaxed);
        f
    }
}

impl Drop for PyFuture {
    /// Nobody can wait for it any more (the program dropped it): its value is dropped
    /// and an error is printed as a warning, as Charm4py ignores them (calls made
    /// without a future still end the job when they raise).
    fn drop(&mut self) {
        if !self.awaited.load(std::sync::atomic::Ordering::Relaxed) && charmrs::__private::on_pe() {
            match &self.kind {
                FutKind::Val(f) => f.ignore(),
                FutKind::Unit(f) => f.ignore(),
                FutKind::All(f) => f.ignore(),
                FutKind::Red(f) => f.ignore(),
                FutKind::Gathered(f) => f.ignore(),
                FutKind::Num(f) => f.ignore(),
                FutKind::Arr(f) => f.ignore(),
                FutKind::Sections(f) => f.ignore(),
                FutKind::Chunks(f) => f.ignore(),
                FutKind::Multi(f) => f.ignore(),
            }
        }
    }
}

#[pymethods]
impl PyFuture {
    /// A new future owned by this PE, for explicit `send`s: one value, or `num_vals`.
    #[new]
    #[pyo3(signature = (num_vals=1))]
    fn py_new(num_vals: u32) -> PyResult<Self> {
        on_pe()?;
        Ok(PyFuture::new(match num_vals {
            0 => return Err(pyo3::exceptions::PyValueError::new_err("a future takes at least one value")),
            1 => FutKind::Val(charmrs::Future::new()),
            n => FutKind::Multi(charmrs::Future::with_values(n)),
        }))
    }

    /// Sets the value (pickled bytes), from any PE.
    fn send(&self, value: &[u8]) -> PyResult<()> {
        on_pe()?;
        match &self.kind {
            FutKind::Val(f) | FutKind::Multi(f) => {
                f.send(value.to_vec().into());
                Ok(())
            }
            _ => Err(CharmError::new_err("only explicit futures (charm.Future()) take a value from send()")),
        }
    }

    /// The future as bytes, to send it to another chare.
    fn to_bytes(&self) -> PyResult<Vec<u8>> {
        match &self.kind {
            FutKind::Val(f) | FutKind::Multi(f) => {
                bincode::serde::encode_to_vec(f, bincode::config::standard())
                    .map_err(|e| CharmError::new_err(e.to_string()))
            }
            _ => {
                Err(CharmError::new_err("only explicit futures (charm.Future()) can be sent to other chares"))
            }
        }
    }

    /// Whether the value (every value) arrived; `false` off the PE that made it.
    fn is_ready(&self) -> bool {
        on_pe_quiet() && self.kind.is_ready()
    }

    /// The value (raised if it is an error) if it already arrived, else `pending`:
    /// `Future.get()` then returns without suspending its coroutine (a switch to the
    /// PE's scheduler and back costs a few microseconds). Only on the owner PE.
    fn ready_value(&self, pending: Py<PyAny>) -> PyResult<Py<PyAny>> {
        if !on_pe_quiet() || !self.kind.is_ready() {
            return Ok(pending);
        }
        self.awaited.store(true, std::sync::atomic::Ordering::Relaxed);
        // Ready: the first poll completes (each `wait` awaits its one future, then
        // converts). The no-op waker is never woken.
        let mut wait = std::pin::pin!(self.kind.clone().wait());
        match std::future::Future::poll(
            wait.as_mut(),
            &mut std::task::Context::from_waker(std::task::Waker::noop()),
        ) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => Ok(pending),
        }
    }

    /// The future sent as `to_bytes`.
    #[staticmethod]
    fn from_bytes(b: &[u8]) -> PyResult<PyFuture> {
        let (f, _) =
            bincode::serde::decode_from_slice::<charmrs::Future<Pickled>, _>(b, bincode::config::standard())
                .map_err(|e| CharmError::new_err(format!("not a future: {e}")))?;
        Ok(PyFuture::copy_of(f))
    }
}

/// Runs `f`, turning a panic of the runtime (a call it refuses: an index outside the
/// array, a PE that does not exist) into a `CharmError` with its message, raised in the
/// Python caller (the panic hook prints nothing on a PE).
fn refused<R>(f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "the runtime refused the call".into());
            Err(CharmError::new_err(msg))
        }
    }
}

/// `CharmError` off a PE (before `charm.start`, or on a thread of the program's own).
/// Whether the calling thread is a running PE.
fn on_pe_quiet() -> bool {
    charmrs::__private::on_pe()
}

fn on_pe() -> PyResult<()> {
    if charmrs::__private::on_pe() {
        Ok(())
    } else {
        Err(CharmError::new_err(
            "not on a charmrs PE: call this from main or a chare method, after charm.start()",
        ))
    }
}

/// A proxy of a Python chare collection, or of one element (`elem`).
#[pyclass(module = "charmrs._charmrs", name = "Proxy", frozen)]
#[derive(Clone, Copy)]
pub struct PyProxy {
    inner: PyChareProxy,
}

#[pymethods]
impl PyProxy {
    /// The proxy of element `index` of this collection.
    fn elem(&self, index: Vec<i32>) -> PyResult<PyProxy> {
        if index.is_empty() || index.len() > charmrs::MAX_DIMS {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "an index has 1 to {} dimensions, not {}",
                charmrs::MAX_DIMS,
                index.len()
            )));
        }
        Ok(PyProxy { inner: self.inner.elem(Index::new(&index)) })
    }

    /// Sends a call of `method` with pickled `args` (to every element of a collection
    /// proxy, or to the one element of an element proxy). `coro`: the method is a
    /// `@coro` method. `want`: 0 nothing, 1 completion (`awaitable=True`), 2 the return
    /// value(s) (`ret=True`); then returns the future. `kwargs`: `args` is a pickled
    /// `(args, kwargs)` pair. `when`: the method has a `@when` condition.
    /// `bufs`: the pickle's out-of-band buffers (numpy arrays of bytes).
    #[pyo3(signature = (method, args, coro, want, kwargs=false, when=false, bufs=None))]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: String,
        args: &[u8],
        coro: bool,
        want: u8,
        kwargs: bool,
        when: bool,
        bufs: Option<Vec<Bound<'_, PyAny>>>,
    ) -> PyResult<Option<PyFuture>> {
        on_pe()?;
        let bufs = bufs.unwrap_or_default().iter().map(ArrayData::borrow).collect::<PyResult<Vec<_>>>()?;
        let shape = if kwargs { ARGS_KW } else { ARGS_TUPLE };
        let msg = PyMsg { bufs, ..PyMsg::new(method, args.to_vec().into(), shape, want == 2) };
        let live = msg.live();
        self.send_timed(msg, coro, want, when, &live)
    }

    /// Sends a call of `method` with positional arguments `args` (no keyword
    /// arguments): those of plain types encoded natively, numpy arrays as raw bytes,
    /// futures and proxies beside the rest, which is pickled if there is a rest (see
    /// `PyMsg::positional`). Otherwise as `send`.
    #[pyo3(signature = (method, args, coro, want, when=false))]
    fn send_args(
        &self,
        method: String,
        args: &Bound<'_, pyo3::types::PyTuple>,
        coro: bool,
        want: u8,
        when: bool,
    ) -> PyResult<Option<PyFuture>> {
        on_pe()?;
        let msg = PyMsg::positional(args.py(), &method, args, want == 2)?;
        let live = msg.live();
        self.send_timed(msg, coro, want, when, &live)
    }

    /// Inserts element `index` of the sparse array this proxy names, made by class
    /// `cls` with pickled constructor `args`, on PE `pe` (its home PE if negative).
    fn insert(&self, index: Vec<i32>, cls: String, args: &[u8], pe: i64) -> PyResult<()> {
        on_pe()?;
        if index.is_empty() || index.len() > charmrs::MAX_DIMS {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("{index:?} is not an index")));
        }
        let on = if pe < 0 { None } else { Some(PeId(pe as u32)) };
        self.inner
            .insert(Index::new(&index), (cls, KIND_ARRAY, args.to_vec().into()), on)
            .map_err(|e| CharmError::new_err(e.to_string()))
    }

    /// Ends the insertions into the sparse array this proxy names; the future
    /// completes once reductions over it can complete.
    fn done_inserting(&self) -> PyResult<PyFuture> {
        on_pe()?;
        Ok(PyFuture::new(FutKind::Unit(self.inner.done_inserting())))
    }

    /// The proxy as bytes, to send it to another chare.
    #[pyo3(name = "to_bytes")]
    fn encoded(&self) -> PyResult<Vec<u8>> {
        bincode::serde::encode_to_vec(self.inner, bincode::config::standard())
            .map_err(|e| CharmError::new_err(e.to_string()))
    }

    /// Whether a call through this proxy now is delivered in this process.
    fn delivered_in_process(&self) -> bool {
        charmrs::__private::delivered_in_process(self.inner.__raw())
    }

    /// Whether the proxy names a group or one of its elements.
    fn is_group(&self) -> bool {
        charmrs::__private::is_group(self.inner.__raw())
    }

    /// Whether the proxy names a section.
    fn is_section(&self) -> bool {
        self.inner.is_section()
    }

    /// The proxy sent as `to_bytes`.
    #[staticmethod]
    fn from_bytes(b: &[u8]) -> PyResult<PyProxy> {
        let (inner, _) = bincode::serde::decode_from_slice::<PyChareProxy, _>(b, bincode::config::standard())
            .map_err(|e| CharmError::new_err(format!("not a proxy: {e}")))?;
        Ok(PyProxy { inner })
    }
}

impl PyProxy {
    /// Whether a call through this proxy passes its arguments by reference with
    /// `local_msg_optim` (the manual's 15.1): a call delivered in this process, or a
    /// section multicast (its members in this process share the caller's objects; the
    /// message is pickled for the others when it leaves the process).
    pub(crate) fn by_reference(&self) -> bool {
        let raw = self.inner.__raw();
        charmrs::__private::is_section_multicast(raw) || charmrs::__private::delivered_in_process(raw)
    }

    /// Sends a built message (the body of `send`).
    /// `send_msg`, then the copies of the arrays the message still refers to (`live`,
    /// see `arrays`; the GIL is still held), timed for the profile if it is on.
    fn send_timed(
        &self,
        msg: PyMsg,
        coro: bool,
        want: u8,
        when: bool,
        live: &[std::sync::Arc<arrays::LiveArray>],
    ) -> PyResult<Option<PyFuture>> {
        let t0 = prof::on().then(|| (std::time::Instant::now(), msg_bytes(&msg)));
        let r = self.send_msg(msg, coro, want, when);
        arrays::detach(live);
        if let Some((t0, bytes)) = t0 {
            prof::sent(bytes, t0.elapsed());
        }
        r
    }

    fn send_msg(&self, msg: PyMsg, coro: bool, want: u8, when: bool) -> PyResult<Option<PyFuture>> {
        let bcast = self.inner.index().is_none();
        refused(|| {
            let call = match (coro, when) {
                (false, false) => self.inner.call(msg),
                (true, false) => self.inner.call_coro(msg),
                (false, true) => self.inner.call_when(msg),
                (true, true) => self.inner.call_coro_when(msg),
            };
            Ok(match want {
                0 => {
                    drop(call);
                    None
                }
                1 => Some(PyFuture::new(FutKind::Unit(call.awaitable()))),
                _ if bcast => Some(PyFuture::new(FutKind::All(call.ret_all()))),
                _ => Some(PyFuture::new(FutKind::Val(call.ret()))),
            })
        })
    }
}

/// Positional argument `a` (at `index`) as a future or proxy carried beside the
/// pickle, if it is one; an error for a future that cannot be sent.
fn beside_arg(a: &Bound<'_, PyAny>, index: u32) -> PyResult<Option<PyObjArg>> {
    let py = a.py();
    let t = a.get_type();
    if t.is(future_class(py)?) {
        let raw = a.getattr(pyo3::intern!(py, "_raw"))?;
        return match &raw.cast::<PyFuture>()?.borrow().kind {
            FutKind::Val(f) | FutKind::Multi(f) => Ok(Some(PyObjArg::Future(index, f.clone()))),
            _ => {
                Err(CharmError::new_err("only explicit futures (charm.Future()) can be sent to other chares"))
            }
        };
    }
    match proxy_class_path(&t) {
        Some(path) => {
            let raw = a.getattr(pyo3::intern!(py, "_raw"))?;
            Ok(Some(PyObjArg::Proxy(index, raw.cast::<PyProxy>()?.get().inner, path)))
        }
        None => Ok(None),
    }
}

/// Whether `a` is of a type that cannot hold a numpy array (`None`, `bool`, `int`,
/// `float`, `complex`, `str`, `bytes`: exactly).
fn flat(a: &Bound<'_, PyAny>) -> bool {
    use pyo3::types::{PyBool, PyComplex, PyFloat, PyInt, PyString};
    a.is_none()
        || a.is_exact_instance_of::<PyInt>()
        || a.is_exact_instance_of::<PyFloat>()
        || a.is_exact_instance_of::<PyString>()
        || a.is_exact_instance_of::<PyBytes>()
        || a.is_exact_instance_of::<PyBool>()
        || a.is_exact_instance_of::<PyComplex>()
}

/// The Python object of a future or proxy argument.
fn obj_of<'py>(py: Python<'py>, o: &PyObjArg) -> PyResult<(u32, Bound<'py, PyAny>)> {
    Ok(match o {
        PyObjArg::Future(i, f) => (*i, glue_fn!(py, "future_of")?.call1((PyFuture::copy_of(f.clone()),))?),
        PyObjArg::Proxy(i, p, path) => (*i, glue_fn!(py, "proxy_of")?.call1((PyProxy { inner: *p }, path))?),
    })
}

/// A number as Python passes it to `contribute`.
#[derive(FromPyObject)]
pub enum PyNumArg {
    /// An `int` of 64 bits.
    I(i64),
    /// A `float`.
    F(f64),
}

/// A contribution to a reduction: its pickled value, and the name of the reducer that
/// combines two of them (`charmrs._glue.combine`).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PyRed {
    reducer: String,
    data: Pickled,
}

/// A number contributed to `sum`, `product`, `max` or `min`: reduced in Rust, without
/// the GIL or pickling.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub enum PyNum {
    /// A Python `int` that fits 64 bits.
    I(i64),
    /// A Python `float` (or a mix).
    F(f64),
}

impl PyNum {
    fn f(self) -> f64 {
        match self {
            PyNum::I(i) => i as f64,
            PyNum::F(f) => f,
        }
    }

    fn combine(
        a: PyNum,
        b: PyNum,
        int: fn(i64, i64) -> Option<i64>,
        float: fn(f64, f64) -> f64,
        what: &str,
    ) -> PyNum {
        match (a, b) {
            (PyNum::I(x), PyNum::I(y)) => PyNum::I(int(x, y).unwrap_or_else(|| {
                panic!("an integer {what} reduction overflowed 64 bits: contribute floats, or use a custom reducer")
            })),
            _ => PyNum::F(float(a.f(), b.f())),
        }
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(match self {
            PyNum::I(i) => i.into_pyobject(py)?.into_any(),
            PyNum::F(f) => f.into_pyobject(py)?.into_any(),
        })
    }

    /// The number pickled (for a target that takes pickled values).
    fn pickled(self) -> Pickled {
        Python::attach(|py| {
            let r = self.into_py(py).and_then(|v| pickle_fn(py, true)?.call1((v, 5)));
            match r {
                Ok(b) => pickled(&b),
                Err(e) => raised(py, "pickling a reduction's result", e),
            }
        })
    }
}

fn num_sum(a: PyNum, b: PyNum) -> PyNum {
    PyNum::combine(a, b, i64::checked_add, |x, y| x + y, "sum")
}
fn num_product(a: PyNum, b: PyNum) -> PyNum {
    PyNum::combine(a, b, i64::checked_mul, |x, y| x * y, "product")
}
fn num_max(a: PyNum, b: PyNum) -> PyNum {
    PyNum::combine(a, b, |x, y| Some(x.max(y)), f64::max, "max")
}
fn num_min(a: PyNum, b: PyNum) -> PyNum {
    PyNum::combine(a, b, |x, y| Some(x.min(y)), f64::min, "min")
}

/// The Rust reducer of built-in reducer `name` on numbers, if there is one.
fn num_reducer(name: &str) -> Option<Reducer<PyNum>> {
    Some(match name {
        "sum" => Reducer::custom("python-number-sum", num_sum),
        "product" => Reducer::custom("python-number-product", num_product),
        "max" => Reducer::custom("python-number-max", num_max),
        "min" => Reducer::custom("python-number-min", num_min),
        _ => return None,
    })
}

/// The pickled numpy array of a reduction's result (with the GIL).
fn arr_pickled(v: PyArr) -> Pickled {
    Python::attach(|py| match v.into_py(py).and_then(|a| pickle_fn(py, true)?.call1((a, 5))) {
        Ok(b) => pickled(&b),
        Err(e) => raised(py, "the result of a numpy reduction", e),
    })
}

/// Combines two contributions with their Python reducer (with the GIL).
fn py_fold(a: PyRed, b: PyRed) -> PyRed {
    let _timed = prof::time(prof::Extra::CustomReductions);
    Python::attach(|py| {
        let r = glue_fn!(py, "combine")
            .and_then(|f| f.call1((&a.reducer, PyBytes::new(py, &a.data), PyBytes::new(py, &b.data))));
        match r {
            Ok(v) => PyRed { data: pickled(&v), reducer: a.reducer },
            Err(e) => raised(py, &format!("reducer {}", a.reducer), e),
        }
    })
}

/// Where a reduction's result goes, as Python gave it.
#[derive(Clone)]
enum PyTarget {
    /// An explicit future.
    Future(charmrs::Future<Pickled>),
    /// A method of a proxy (one element, or a broadcast): `(proxy, method, coro)`.
    Method(PyChareProxy, String, bool),
}

impl PyTarget {
    /// Delivers a result: `data` is the pickled value (`None`: no value, for an empty
    /// reduction).
    fn deliver(&self, data: Option<Pickled>) {
        match self {
            PyTarget::Future(f) => f.send(data.unwrap_or_default()),
            PyTarget::Method(p, method, coro) => {
                let (args, shape) = match data {
                    Some(d) => (d, ARGS_ONE),
                    None => (PodVec::new(), ARGS_NONE),
                };
                let msg = PyMsg::new(method.clone(), args, shape, false);
                drop(if *coro { p.call_coro(msg) } else { p.call(msg) });
            }
        }
    }
}

/// The result of a fold after its reducer's `post` step (with the GIL).
fn finish(v: &PyRed) -> Pickled {
    Python::attach(|py| {
        match glue_fn!(py, "finish").and_then(|f| f.call1((&v.reducer, PyBytes::new(py, &v.data)))) {
            Ok(b) => pickled(&b),
            Err(e) => raised(py, &format!("the post step of reducer {}", v.reducer), e),
        }
    })
}

/// The pickled list of gathered values (with the GIL).
fn gathered(vs: Vec<PyRed>) -> Pickled {
    Python::attach(|py| {
        let items: Vec<_> = vs.iter().map(|v| PyBytes::new(py, &v.data)).collect();
        match glue_fn!(py, "gather_list").and_then(|f| f.call1((items,))) {
            Ok(v) => pickled(&v),
            Err(e) => raised(py, "gathering a reduction's values", e),
        }
    })
}

/// Contributes to the next reduction of the collection of element `elem` (which must
/// live on this PE): `data` pickled, combined by Python reducer `reducer` (`"gather"`
/// collects the values by element index; no reducer and no data: an empty reduction).
/// The result goes to `future` or to `method` of `proxy`; with neither, every element
/// gets it (allreduce) through the returned future.
#[pyfunction]
#[pyo3(signature = (elem, data, reducer, future=None, proxy=None, method=None, coro=false, number=None, section=None, array=None))]
#[allow(clippy::too_many_arguments)]
fn contribute(
    elem: &PyProxy,
    data: Option<&[u8]>,
    reducer: Option<String>,
    future: Option<PyRef<'_, PyFuture>>,
    proxy: Option<PyRef<'_, PyProxy>>,
    method: Option<String>,
    coro: bool,
    number: Option<PyNumArg>,
    section: Option<PyRef<'_, PyProxy>>,
    array: Option<(String, Vec<i64>, Bound<'_, PyBytes>)>,
) -> PyResult<Option<PyFuture>> {
    let _timed = prof::time(prof::Extra::Reductions);
    on_pe()?;
    let Some(h) = Handle::<PyChare>::of(&elem.inner) else {
        return Err(CharmError::new_err(
            "contribute/allreduce is called by a chare element, on its own PE, after its constructor",
        ));
    };
    let red = Red { h, section: section.map(|s| s.inner) };
    let target = match (future, proxy, method) {
        (Some(f), None, None) => match &f.kind {
            FutKind::Val(f) => Some(PyTarget::Future(f.clone())),
            _ => return Err(CharmError::new_err("a reduction's target future must be an explicit Future()")),
        },
        (None, Some(p), Some(m)) => Some(PyTarget::Method(p.inner, m, coro)),
        (None, None, None) => None,
        _ => return Err(CharmError::new_err("a reduction goes to a Future or to one proxy method")),
    };
    // A numpy array to `sum`/`product`/`max`/`min`: reduced in Rust, element by element.
    if let (Some((typestr, shape, bytes)), Some(r)) =
        (array, reducer.as_deref().and_then(arrred::arr_reducer))
    {
        if !arrred::supported(&typestr) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "dtype {typestr} is not reduced natively"
            )));
        }
        let v = PyArr { typestr, shape, data: bytes.as_bytes().to_vec().into() };
        return refused(|| {
            Ok(match target {
                Some(t) => {
                    red.contribute(v, r, RedTarget::from_fn(move |v: PyArr| t.deliver(Some(arr_pickled(v)))));
                    None
                }
                None => Some(PyFuture::new(FutKind::Arr(red.allreduce(v, r)))),
            })
        });
    }
    // A number to `sum`/`product`/`max`/`min`: reduced in Rust.
    if let (Some(n), Some(r)) = (number, reducer.as_deref().and_then(num_reducer)) {
        let v = match n {
            PyNumArg::I(i) => PyNum::I(i),
            PyNumArg::F(f) => PyNum::F(f),
        };
        return refused(|| Ok(red.number(v, r, target)));
    }
    refused(|| {
        Ok(match (reducer.as_deref(), data) {
            (None, _) => red.empty(target),
            (Some("gather"), Some(d)) => {
                let v = PyRed { reducer: "gather".into(), data: d.to_vec().into() };
                let r = Reducer::<PyRed, Vec<PyRed>>::gather();
                match target {
                    Some(t) => {
                        red.contribute(v, r, RedTarget::from_fn(move |vs| t.deliver(Some(gathered(vs)))));
                        None
                    }
                    None => Some(PyFuture::new(FutKind::Gathered(red.allreduce(v, r)))),
                }
            }
            (Some(name), Some(d)) => {
                let v = PyRed { reducer: name.to_string(), data: d.to_vec().into() };
                let r = Reducer::custom("python", py_fold);
                match target {
                    Some(t) => {
                        red.contribute(v, r, RedTarget::from_fn(move |v: PyRed| t.deliver(Some(finish(&v)))));
                        None
                    }
                    None => Some(PyFuture::new(FutKind::Red(red.allreduce(v, r)))),
                }
            }
            (Some(name), None) => {
                return Err(CharmError::new_err(format!("reducer {name} needs data to reduce")));
            }
        })
    })
}

/// An element's side of a reduction: over its collection, or over a section it
/// belongs to.
struct Red {
    h: Handle<PyChare>,
    section: Option<PyChareProxy>,
}

impl Red {
    fn contribute<T: charmrs::Payload, R: charmrs::Payload>(&self, v: T, r: Reducer<T, R>, t: RedTarget<R>) {
        match &self.section {
            Some(s) => self.h.section_contribute(s, v, r, t),
            None => self.h.contribute(v, r, t),
        }
    }

    fn allreduce<T: charmrs::Payload, R: charmrs::Payload>(
        &self,
        v: T,
        r: Reducer<T, R>,
    ) -> charmrs::Future<R> {
        match &self.section {
            Some(s) => self.h.section_allreduce(s, v, r),
            None => self.h.allreduce(v, r),
        }
    }

    /// Contributes number `v`, combined by `r`, to `target` (or every element).
    fn number(&self, v: PyNum, r: Reducer<PyNum>, target: Option<PyTarget>) -> Option<PyFuture> {
        match target {
            Some(t) => {
                self.contribute(v, r, RedTarget::from_fn(move |v: PyNum| t.deliver(Some(v.pickled()))));
                None
            }
            None => Some(PyFuture::new(FutKind::Num(self.allreduce(v, r)))),
        }
    }

    /// Contributes to an empty reduction (a barrier) whose end goes to `target` (or
    /// every element).
    fn empty(&self, target: Option<PyTarget>) -> Option<PyFuture> {
        let r = Reducer::<()>::nop();
        match target {
            Some(t) => {
                self.contribute((), r, RedTarget::from_fn(move |()| t.deliver(None)));
                None
            }
            None => Some(PyFuture::new(FutKind::Unit(self.allreduce((), r)))),
        }
    }
}

/// A `Reducer` object and the numeric reducer it is, if it is one (see
/// [`num_reducer_of`]).
type NumReducerEntry = (Py<PyAny>, Option<Reducer<PyNum>>);

thread_local! {
    /// What [`num_reducer_of`] found for each `Reducer` object it was given, keyed by
    /// address with the object kept alive (so that no other object can take its
    /// address); cleared past a few dozen (reducers made on the fly).
    static NUM_REDUCERS: std::cell::RefCell<rustc_hash::FxHashMap<usize, NumReducerEntry>> =
        std::cell::RefCell::new(rustc_hash::FxHashMap::default());
}

/// The numeric reducer `reducer` is: `sum`, `product`, `max` or `min` of
/// `charmrs.reduction`, with no `pre` step (`None` for any other object). Looked up
/// once per object and PE: reducers are long-lived (`Reducer.sum`), and reading two
/// attributes and comparing the name cost as much as the rest of a contribution.
fn num_reducer_of(reducer: &Bound<'_, PyAny>) -> PyResult<Option<Reducer<PyNum>>> {
    let key = reducer.as_ptr() as usize;
    if let Some(r) = NUM_REDUCERS.with(|m| m.borrow().get(&key).map(|(_, r)| *r)) {
        return Ok(r);
    }
    let py = reducer.py();
    static REDUCER: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    let r = if reducer.get_type().is(REDUCER.import(py, "charmrs.reduction", "_Reducer")?)
        && reducer.getattr(pyo3::intern!(py, "pre"))?.is_none()
    {
        let name = reducer.getattr(pyo3::intern!(py, "name"))?;
        num_reducer(&name.cast::<pyo3::types::PyString>()?.to_cow()?)
    } else {
        None
    };
    let old = NUM_REDUCERS.with(|m| {
        let mut m = m.borrow_mut();
        let old = if m.len() >= 64 { std::mem::take(&mut *m) } else { Default::default() };
        m.insert(key, (reducer.clone().unbind(), r));
        old
    });
    drop(old); // outside the borrow: dropping objects may run Python code
    Ok(r)
}

/// `Chare.contribute`, `reduce` and `allreduce` in their common cases, without the
/// Python path's frames and checks: an empty reduction, or a number (a `float`, an
/// `int` of 64 bits) to a built-in numeric reducer (`sum`, `product`, `max`, `min`),
/// over the element's collection, to an explicit future or (`callback` None) to every
/// element. Returns `NotImplemented` for anything else (a section, another reducer or
/// value, an element still in its constructor, the first call of an element), which
/// the Python path handles; the future of an allreduce otherwise, or None.
#[pyfunction]
fn reduce_fast<'py>(
    chare: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    reducer: &Bound<'py, PyAny>,
    callback: &Bound<'py, PyAny>,
) -> PyResult<Py<PyAny>> {
    use pyo3::types::{PyDict, PyFloat, PyInt};
    let _timed = prof::time(prof::Extra::Reductions);
    let py = chare.py();
    let general = || Ok(py.NotImplemented());
    let target = if callback.is_none() {
        None
    } else if callback.get_type().is(future_class(py)?) {
        match &callback.getattr(pyo3::intern!(py, "_raw"))?.cast::<PyFuture>()?.borrow().kind {
            FutKind::Val(f) => Some(PyTarget::Future(f.clone())),
            _ => return general(),
        }
    } else {
        return general();
    };
    let dict = chare.getattr(pyo3::intern!(py, "__dict__"))?;
    let Ok(dict) = dict.cast::<PyDict>() else { return general() };
    if dict.contains(pyo3::intern!(py, "_charmrs_constructing"))? {
        return general();
    }
    let Some(elem) = dict.get_item(pyo3::intern!(py, "_charmrs_elem"))? else { return general() };
    let Ok(elem) = elem.cast::<PyProxy>() else { return general() };
    let number = if reducer.is_none() && data.is_none() {
        None
    } else {
        let Some(r) = num_reducer_of(reducer)? else { return general() };
        let v = if let Ok(f) = data.cast_exact::<PyFloat>() {
            PyNum::F(f.value())
        } else if let Ok(i) = data.cast_exact::<PyInt>() {
            match i.extract::<i64>() {
                Ok(i) => PyNum::I(i),
                Err(_) => return general(),
            }
        } else {
            return general();
        };
        Some((v, r))
    };
    on_pe()?;
    let Some(h) = Handle::<PyChare>::of(&elem.get().inner) else { return general() };
    let red = Red { h, section: None };
    let fut = refused(|| {
        Ok(match number {
            Some((v, r)) => red.number(v, r, target),
            None => red.empty(target),
        })
    })?;
    match fut {
        None => Ok(py.None()),
        Some(f) => Ok(glue_fn!(py, "future_of")?.call1((f,))?.unbind()),
    }
}

/// Makes sections of the collections or sections `proxies`: with one proxy, `n`
/// sections chosen by `func` (pickled section function, evaluated on each element's
/// PE), `elems` (the indexes of each section) or `slice` (one section: `(start, stop,
/// step)` per dimension); with several proxies and none of those, their combination.
/// Returns the future of the list of section proxies.
#[pyfunction]
#[pyo3(signature = (proxies, n, func=None, elems=None, slice=None))]
fn make_sections(
    proxies: Vec<PyRef<'_, PyProxy>>,
    n: u32,
    func: Option<Vec<u8>>,
    elems: Option<Vec<Vec<Vec<i32>>>>,
    slice: Option<Vec<(i32, i32, i32)>>,
) -> PyResult<PyFuture> {
    on_pe()?;
    let ps: Vec<PyChareProxy> = proxies.iter().map(|p| p.inner).collect();
    let members = match (func, elems, slice) {
        (Some(f), None, None) => Some(charmrs::Members::Custom(f)),
        (None, Some(e), None) => {
            let lists = e
                .into_iter()
                .map(|l| {
                    l.into_iter()
                        .map(|i| {
                            if i.is_empty() || i.len() > charmrs::MAX_DIMS {
                                Err(pyo3::exceptions::PyValueError::new_err(format!("{i:?} is not an index")))
                            } else {
                                Ok(Index::new(&i))
                            }
                        })
                        .collect::<PyResult<Vec<_>>>()
                })
                .collect::<PyResult<Vec<_>>>()?;
            Some(charmrs::Members::Elems(lists))
        }
        (None, None, Some(s)) => Some(charmrs::Members::Slice(
            s.into_iter().map(|(a, b, c)| charmrs::SliceDim::new(a, b, c)).collect(),
        )),
        (None, None, None) => None,
        _ => return Err(CharmError::new_err("sections are chosen by one of section_func, elems or a slice")),
    };
    let out = charmrs::Future::<Result<Vec<PyChareProxy>, charmrs::Error>>::new();
    let fut = out.clone();
    match (members, ps.as_slice()) {
        (Some(m), [p]) => {
            let s = charmrs::split(p, n, m);
            charmrs::spawn(async move { out.send(s.await) });
        }
        (None, [_, ..]) => {
            let s = charmrs::combine(&ps);
            charmrs::spawn(async move { out.send(s.await.map(|p| vec![p])) });
        }
        _ => return Err(CharmError::new_err("split takes one proxy; combine takes one or more")),
    }
    Ok(PyFuture::new(FutKind::Sections(fut)))
}

/// A task of `charm.pool`: a pickled function and its pickled arguments; `chunk`: the
/// arguments are a list of items, and the task maps the function over them.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PyTask {
    func: PodVec<u8>,
    args: PodVec<u8>,
    chunk: bool,
}
charmrs::register_task!(PyTask);

impl charmrs::pool::Task for PyTask {
    type Output = Pickled;
    /// Runs in a greenlet, so that the function may wait (for the tasks it submits).
    async fn run(self) -> Pickled {
        let glet = Python::attach(|py| {
            glue_fn!(py, "task")
                .and_then(|f| {
                    f.call1((PyBytes::new(py, &self.func), PyBytes::new(py, &self.args), self.chunk))
                })
                .map(Bound::unbind)
                .unwrap_or_else(|e| raised(py, "a pool task", e))
        });
        drive(glet, "a pool task").await
    }
}

/// Submits one pool task: `func(*args)` (pickled). `want`: 0 nothing back, 1 or 2 a
/// future (of completion or of the value: both give the pickled return value).
#[pyfunction]
fn pool_submit(func: Vec<u8>, args: Vec<u8>, want: u8) -> PyResult<Option<PyFuture>> {
    on_pe()?;
    let task = PyTask { func: func.into(), args: args.into(), chunk: false };
    Ok(match want {
        0 => {
            charmrs::pool::spawn(task);
            None
        }
        _ => Some(PyFuture::new(FutKind::Val(charmrs::pool::submit(task)))),
    })
}

/// Maps pickled `func` over each chunk of pickled items in `chunks` as pool tasks, at
/// most `ncores` at once (all at once if not positive); the future gives the list of
/// the chunks' result lists, in order, or the first failure.
#[pyfunction]
fn pool_map(func: Vec<u8>, chunks: Vec<Vec<u8>>, ncores: i64) -> PyResult<PyFuture> {
    on_pe()?;
    let func: Pickled = func.into();
    let tasks: Vec<PyTask> =
        chunks.into_iter().map(|c| PyTask { func: func.clone(), args: c.into(), chunk: true }).collect();
    let out = charmrs::Future::<Result<Vec<Pickled>, charmrs::Error>>::new();
    let fut = out.clone();
    if ncores > 0 {
        let m = charmrs::pool::map_limited(tasks, ncores as usize);
        charmrs::spawn(async move { out.send(m.await) });
    } else {
        let m = charmrs::pool::map(tasks);
        charmrs::spawn(async move { out.send(m.await) });
    }
    Ok(PyFuture::new(FutKind::Chunks(fut)))
}

/// The sections element `raw` belongs to, by the pickled section function `func`.
fn section_eval(func: &[u8], raw: charmrs::__private::RawProxy) -> Result<Vec<i64>, String> {
    let proxy = <PyChareProxy as charmrs::Proxy>::__from_raw(raw);
    let Some(h) = Handle::<PyChare>::of(&proxy) else { return Ok(Vec::new()) };
    let obj = h.with(|c| Python::attach(|py| c.obj.clone_ref(py)));
    Python::attach(|py| {
        glue_fn!(py, "section_of")
            .and_then(|f| f.call1((PyBytes::new(py, func), obj)))
            .and_then(|v| v.extract::<Vec<i64>>())
            .map_err(|e| traceback(py, &e))
    })
}

/// Starts the runtime on this process with `argv` (runtime options included) and runs
/// greenlet `main` on PE 0; returns the job's exit code when the job ends.
#[pyfunction]
fn start(py: Python<'_>, main: Py<PyAny>, argv: Vec<String>) -> PyResult<i32> {
    // Each PE thread keeps its interpreter thread state for its whole life (attached
    // once, then detached while it runs): greenlets belong to a thread state, and
    // attaching per call would make and destroy one each time.
    charmrs::__private::set_pe_thread_wrapper(|run| Python::attach(|py| py.detach(run)));
    // A PE alone in its process (the default) holds the GIL for each busy turn of its
    // scheduler: one GIL hand-over per turn, not one per message (the `Python::attach`
    // of each call then only counts). It lets it go whenever it idles, and Python
    // threads of the program get it at the interpreter's switch interval meanwhile.
    charmrs::__private::set_pe_turn_wrapper(|turn| {
        Python::attach(|_| {
            IN_TURN.set(true);
            turn();
            IN_TURN.set(false);
        })
    });
    charmrs::__private::set_section_eval(section_eval);
    tune_malloc();
    let config = charmrs::Config::parse(argv, |k| std::env::var(k).ok())
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    py.detach(move || {
        charmrs::run_with(config, move |_| async move {
            drive(main, "main").await;
        })
        .map_err(|e| e.to_string())
    })
    .map_err(CharmError::new_err)
}

/// Turns Python-level profiling on or off (before the job starts).
#[pyfunction]
fn set_profiling(on: bool) {
    prof::set(on);
}

/// This PE's profile: `(rows, sent, received, extras)`, rows `(class, method, em, send,
/// recv, calls)` in seconds, sizes `(count, total, min, max)` in bytes, extras the
/// seconds in `(reductions, custom reductions, migrating out)`; `None` if profiling is
/// off.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn profile() -> Option<(
    Vec<(String, String, f64, f64, f64, u64)>,
    (u64, u64, u64, u64),
    (u64, u64, u64, u64),
    (f64, f64, f64),
)> {
    if !prof::on() {
        return None;
    }
    prof::TABLE.with(|t| {
        let t = t.borrow();
        let rows = t
            .rows
            .iter()
            .map(|((c, m), r)| {
                (
                    c.clone(),
                    m.clone(),
                    r.em.as_secs_f64(),
                    r.send.as_secs_f64(),
                    r.recv.as_secs_f64(),
                    r.calls,
                )
            })
            .collect();
        let sz = |s: &prof::Sizes| (s.n, s.total, s.min, s.max);
        let [r, c, m] = t.extras.map(|d| d.as_secs_f64());
        Some((rows, sz(&t.sent), sz(&t.received), (r, c, m)))
    })
}

/// `argv` without the runtime's options (`+p4`, `+balancer GreedyLB`, ...), as Charm++
/// leaves it for the program; a bad option is a `ValueError`.
#[pyfunction]
fn user_args(argv: Vec<String>) -> PyResult<Vec<String>> {
    charmrs::Config::parse(argv, |k| std::env::var(k).ok())
        .map(|c| c.user_args)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// This PE's number.
#[pyfunction]
fn my_pe() -> u32 {
    charmrs::my_pe().0
}

/// The number of PEs of the job.
#[pyfunction]
fn num_pes() -> u32 {
    charmrs::num_pes()
}

/// Ends the job with `code` once the current method returns.
#[pyfunction]
fn exit(code: i32) {
    charmrs::exit(code)
}

/// Creates a group of `cls` (`module:qualname`) with pickled constructor `args`: on
/// every PE, or on `pes` only.
#[pyfunction]
#[pyo3(signature = (cls, args, pes=None))]
fn create_group(cls: String, args: &[u8], pes: Option<Vec<i64>>) -> PyResult<(PyProxy, PyFuture)> {
    on_pe()?;
    let args = (cls, KIND_GROUP, args.to_vec().into());
    match pes {
        None => created(Group::<PyChare>::new(args)),
        Some(pes) => {
            let n = i64::from(charmrs::num_pes());
            if pes.is_empty() || pes.iter().any(|&p| p < 0 || p >= n) {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "onPEs={pes:?}: a non-empty list of PEs of the job's {n}"
                )));
            }
            created(Group::<PyChare>::on_pes(pes.into_iter().map(|p| PeId(p as u32)), args))
        }
    }
}

/// Creates an array of `cls` of shape `dims` with pickled constructor `args`.
#[pyfunction]
#[pyo3(signature = (cls, dims, args, map=None))]
fn create_array(
    cls: String,
    dims: Vec<i32>,
    args: &[u8],
    map: Option<PyRef<'_, PyProxy>>,
) -> PyResult<(PyProxy, PyFuture)> {
    on_pe()?;
    if dims.is_empty() || dims.len() > charmrs::MAX_DIMS || dims.iter().any(|&d| d < 0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "an array has 1 to {} dimensions of sizes >= 0, not {dims:?}",
            charmrs::MAX_DIMS
        )));
    }
    let args = (cls, KIND_ARRAY, args.to_vec().into());
    match map {
        None => created(Array::<PyChare>::new(Index::new(&dims), args)),
        Some(m) => {
            refused(|| created(Array::<PyChare>::with_map(Index::new(&dims), PyMap { group: m.inner }, args)))
        }
    }
}

/// Creates an empty sparse array of `cls` with `ndims`-d indexes (placed by the
/// `ArrayMap` group `map`, if given); elements come with `Proxy.insert`.
#[pyfunction]
#[pyo3(signature = (cls, ndims, map=None))]
fn create_sparse(
    cls: String,
    ndims: usize,
    map: Option<PyRef<'_, PyProxy>>,
) -> PyResult<(PyProxy, PyFuture)> {
    on_pe()?;
    let _ = cls;
    if !(1..=charmrs::MAX_DIMS).contains(&ndims) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "an array has 1 to {} dimensions, not {ndims}",
            charmrs::MAX_DIMS
        )));
    }
    match map {
        None => created(Array::<PyChare>::sparse(ndims)),
        Some(m) => refused(|| created(Array::<PyChare>::sparse_with_map(ndims, PyMap { group: m.inner }))),
    }
}

/// A Python `ArrayMap`: the group whose local element's `procNum(index)` places each
/// array element.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PyMap {
    group: PyChareProxy,
}
charmrs::register_map!(PyMap);

impl charmrs::ArrayMap for PyMap {
    fn pe_of(&self, index: &Index, _shape: &Index, num_pes: u32) -> PeId {
        let me = charmrs::my_pe();
        // Called by the scheduler (creating an array, routing a call): a bad map ends the
        // job with a clear message, as no caller is there to receive an error.
        let Some(h) = Handle::<PyChare>::of(&self.group.elem(Index::from(me.0 as i32))) else {
            charmrs::abort("the ArrayMap group has no element on this PE: create the map before the array")
        };
        let obj = h.with(|c| Python::attach(|py| c.obj.clone_ref(py)));
        Python::attach(|py| {
            let idx = pyo3::types::PyTuple::new(py, index.as_slice()).expect("a tuple");
            match obj.bind(py).call_method1("procNum", (idx,)).and_then(|v| v.extract::<i64>()) {
                Ok(p) if p >= 0 && p < i64::from(num_pes) => PeId(p as u32),
                Ok(p) => charmrs::abort(&format!(
                    "ArrayMap.procNum({index}) returned PE {p}; the job has {num_pes} PEs"
                )),
                Err(e) => {
                    charmrs::abort(&format!("ArrayMap.procNum({index}) raised:\n{}", traceback(py, &e)))
                }
            }
        })
    }
}

/// Creates a single chare of `cls` on PE `pe` (or one chosen round-robin if negative).
#[pyfunction]
#[pyo3(signature = (cls, pe, args, deferred=false))]
fn create_single(cls: String, pe: i64, args: &[u8], deferred: bool) -> PyResult<(PyProxy, PyFuture)> {
    on_pe()?;
    let n = charmrs::num_pes();
    let kind = if deferred { KIND_SINGLE_DEFERRED } else { KIND_SINGLE };
    let args = (cls, kind, args.to_vec().into());
    if pe < 0 {
        return created(Single::<PyChare>::new(args));
    }
    if pe >= i64::from(n) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("onPE={pe}: the job has {n} PEs")));
    }
    created(Single::<PyChare>::on_pe(PeId(pe as u32), args))
}

/// The proxy of a creation, and a future completed when every element exists.
///
/// A constructor that raises ends the job with its traceback, whether or not anybody
/// awaits the creation (Charm4py's behaviour; an error kept in a future nobody awaits
/// would leave the job hanging), so the future only ever completes with success.
fn created(c: charmrs::Creation<PyChareProxy>) -> PyResult<(PyProxy, PyFuture)> {
    let (proxy, done) = c.into_parts();
    let ok = charmrs::Future::<()>::new();
    let tell = ok.clone();
    charmrs::spawn(async move {
        match done.await {
            Ok(()) => tell.send(()),
            Err(e) => charmrs::abort(&format!("creating a collection failed: {e}")),
        }
    });
    Ok((PyProxy { inner: proxy }, PyFuture::new(FutKind::Unit(ok))))
}

/// Runs a job as `charmrs-run` does, with the launcher's options in `args` (`+p4 ++ppn 2
/// prog.py prog-args...`); the program is a Python script run by `python` (the
/// interpreter running this), one PE per process by default. Returns the job's exit
/// status (2 for a bad command line).
#[pyfunction]
#[pyo3(signature = (args, python, interactive_script=None))]
fn launch(py: Python<'_>, args: Vec<String>, python: String, interactive_script: Option<String>) -> i32 {
    use charmrs_comm::launcher::{local, options::LaunchOptions};
    let interactive = args.iter().any(|a| a == "++interactive");
    let parsed = match (LaunchOptions::parse(args.clone()), interactive_script) {
        // `++interactive` without a program: the interactive console is the program.
        (Err(charmrs_comm::launcher::options::LaunchError::NoProgram), Some(s)) if interactive => {
            LaunchOptions::parse(args.into_iter().chain([s]))
        }
        (r, _) => r,
    };
    let mut opts = match parsed {
        Ok(o) => o,
        Err(e) => {
            eprintln!("charmrs.run: {e}");
            return 2;
        }
    };
    // One PE per process unless `++ppn` says otherwise: the GIL would serialise the PE
    // threads of one process (ARCHITECTURE.md, "Execution model").
    opts.ppn.get_or_insert(1);
    let script = std::mem::replace(&mut opts.program, python);
    // Each process runs `python -m charmrs.run --charmrs-worker prog.py args...`
    // (line-buffered output: see `charmrs.run`).
    opts.args.splice(
        0..0,
        ["-m", "charmrs.run", "--charmrs-worker"].map(String::from).into_iter().chain([script]),
    );
    py.detach(|| match local::run(&opts) {
        Ok(out) => {
            if let Some(r) = out.reason {
                eprintln!("charmrs.run: {r}");
            }
            out.code
        }
        Err(e) => {
            eprintln!("charmrs.run: {e}");
            1
        }
    })
}

/// Ends the job at once with `message` (status 1).
#[pyfunction]
fn abort(message: &str) -> PyResult<()> {
    on_pe()?;
    charmrs::abort(message)
}

/// A future completed after `secs` seconds (for `charm.sleep`).
#[pyfunction]
fn timer(secs: f64) -> PyResult<PyFuture> {
    on_pe()?;
    let d = duration(secs)?;
    let f = charmrs::Future::<()>::new();
    let done = f.clone();
    charmrs::call_after(d, move || done.send(()));
    Ok(PyFuture::new(FutKind::Unit(f)))
}

fn duration(secs: f64) -> PyResult<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("{secs} is not a number of seconds >= 0"))
    })
}

/// The live element `elem` names (on this PE), for the methods it calls on itself.
fn own_elem(elem: &PyProxy, what: &str) -> PyResult<Handle<PyChare>> {
    on_pe()?;
    Handle::<PyChare>::of(&elem.inner)
        .ok_or_else(|| CharmError::new_err(format!("{what} is called by a chare element, on its own PE")))
}

/// `AtSync()` of array element `elem`: ready for load balancing.
#[pyfunction]
fn at_sync(elem: &PyProxy) -> PyResult<()> {
    let h = own_elem(elem, "AtSync")?;
    h.can_migrate()
        .map_err(|why| CharmError::new_err(format!("AtSync: load balancing moves elements, and {why}")))?;
    h.at_sync();
    Ok(())
}

/// `migrate(pe)` of array element `elem`: moves it once the running method returns.
#[pyfunction]
fn migrate(elem: &PyProxy, pe: i64) -> PyResult<()> {
    let h = own_elem(elem, "migrate")?;
    h.can_migrate().map_err(|why| CharmError::new_err(format!("migrate: {why}")))?;
    let n = charmrs::num_pes();
    let to = u32::try_from(pe)
        .ok()
        .filter(|&p| p < n)
        .ok_or_else(|| CharmError::new_err(format!("migrate to PE {pe}: the job has {n} PEs")))?;
    h.migrate(charmrs::PeId(to));
    Ok(())
}

/// `setMigratable(m)` of element `elem`: whether the load balancer may move it.
#[pyfunction]
fn set_migratable(elem: &PyProxy, migratable: bool) -> PyResult<()> {
    own_elem(elem, "setMigratable")?.set_migratable(migratable);
    Ok(())
}

/// Calls `callable(*args)` on this PE after `secs` seconds (`charm.scheduleCallableAfter`).
/// An exception it raises ends the job with its traceback.
#[pyfunction]
fn call_after(callable: Py<PyAny>, secs: f64, args: Py<pyo3::types::PyTuple>) -> PyResult<()> {
    on_pe()?;
    let d = duration(secs)?;
    charmrs::call_after(d, move || {
        Python::attach(|py| {
            if let Err(e) = callable.call1(py, args.bind(py)) {
                let tb = traceback(py, &e);
                charmrs::abort(&format!(
                    "a callable scheduled with scheduleCallableAfter raised:\n{}",
                    tb.trim_end()
                ))
            }
        })
    });
    Ok(())
}

/// Starts quiescence detection: when no PE runs or has a message to run and none is in
/// flight, the `future` is set or `method` of `proxy` is called.
#[pyfunction]
#[pyo3(signature = (future=None, proxy=None, method=None, coro=false))]
fn start_qd(
    future: Option<PyRef<'_, PyFuture>>,
    proxy: Option<PyRef<'_, PyProxy>>,
    method: Option<String>,
    coro: bool,
) -> PyResult<()> {
    on_pe()?;
    let t = match (future, proxy, method) {
        (Some(f), None, None) => match &f.kind {
            FutKind::Val(f) => PyTarget::Future(f.clone()),
            _ => return Err(CharmError::new_err("startQD's callback future must be an explicit Future()")),
        },
        (None, Some(p), Some(m)) => PyTarget::Method(p.inner, m, coro),
        _ => return Err(CharmError::new_err("startQD's callback is a Future or one proxy method")),
    };
    charmrs::start_qd(RedTarget::from_fn(move |()| t.deliver(None)));
    Ok(())
}

/// `(number of hosts, this PE's host, this process, number of processes)`.
#[pyfunction]
fn topology() -> PyResult<(u32, u32, u32, u32)> {
    on_pe()?;
    Ok((charmrs::num_hosts(), charmrs::my_host(), charmrs::my_node(), charmrs::num_nodes()))
}

/// The PEs of host `host`.
#[pyfunction]
fn host_pes(host: u32) -> PyResult<Vec<u32>> {
    on_pe()?;
    Ok(charmrs::get_host_pes(host).into_iter().map(|p| p.0).collect())
}

/// `(host of pe, rank of pe on its host)`.
#[pyfunction]
fn pe_host(pe: u32) -> PyResult<(u32, u32)> {
    on_pe()?;
    if pe >= charmrs::num_pes() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("PE {pe} does not exist")));
    }
    Ok((charmrs::get_pe_host(PeId(pe)), charmrs::get_pe_host_rank(PeId(pe))))
}

/// The first PE of process `node`.
#[pyfunction]
fn node_first_pe(node: u32) -> PyResult<u32> {
    on_pe()?;
    if node >= charmrs::num_nodes() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("process {node} does not exist")));
    }
    Ok(charmrs::get_node_first_pe(node).0)
}

fn pe_list(pes: Option<Vec<u32>>) -> PyResult<Option<Vec<PeId>>> {
    let n = charmrs::num_pes();
    pes.map(|v| {
        v.into_iter()
            .map(|p| {
                if p < n {
                    Ok(PeId(p))
                } else {
                    Err(pyo3::exceptions::PyValueError::new_err(format!("PE {p} does not exist")))
                }
            })
            .collect()
    })
    .transpose()
}

/// `(parent, children)` of `pe` in the spanning tree rooted at `root` over `pes`.
#[pyfunction]
#[pyo3(signature = (pe, root, pes=None, bfactor=4))]
fn topo_tree_edges(
    pe: u32,
    root: u32,
    pes: Option<Vec<u32>>,
    bfactor: u32,
) -> PyResult<(Option<u32>, Vec<u32>)> {
    on_pe()?;
    let pes = pe_list(pes)?;
    refused(|| {
        let (parent, children) =
            charmrs::get_topo_tree_edges(PeId(pe), PeId(root), pes.as_deref(), bfactor.max(1));
        Ok((parent.map(|p| p.0), children.into_iter().map(|p| p.0).collect()))
    })
}

/// The subtrees under `root` of the spanning tree over `pes`.
#[pyfunction]
#[pyo3(signature = (root, pes=None, bfactor=4))]
fn topo_subtrees(root: u32, pes: Option<Vec<u32>>, bfactor: u32) -> PyResult<Vec<Vec<u32>>> {
    on_pe()?;
    let pes = pe_list(pes)?;
    refused(|| {
        Ok(charmrs::get_topo_subtrees(PeId(root), pes.as_deref(), bfactor.max(1))
            .into_iter()
            .map(|t| t.into_iter().map(|p| p.0).collect())
            .collect())
    })
}

/// The module `charmrs._charmrs`.
#[pymodule]
fn _charmrs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyProxy>()?;
    m.add_class::<PyFuture>()?;
    m.add_class::<entry::EntryMethod>()?;
    m.add_class::<entry::BoundEntry>()?;
    m.add("CharmError", m.py().get_type::<CharmError>())?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_function(wrap_pyfunction!(launch, m)?)?;
    m.add_function(wrap_pyfunction!(my_pe, m)?)?;
    m.add_function(wrap_pyfunction!(num_pes, m)?)?;
    m.add_function(wrap_pyfunction!(exit, m)?)?;
    m.add_function(wrap_pyfunction!(create_group, m)?)?;
    m.add_function(wrap_pyfunction!(create_array, m)?)?;
    m.add_function(wrap_pyfunction!(create_single, m)?)?;
    m.add_function(wrap_pyfunction!(contribute, m)?)?;
    m.add_function(wrap_pyfunction!(make_sections, m)?)?;
    m.add_function(wrap_pyfunction!(create_sparse, m)?)?;
    m.add_function(wrap_pyfunction!(pool_submit, m)?)?;
    m.add_function(wrap_pyfunction!(pool_map, m)?)?;
    for f in [
        wrap_pyfunction!(abort, m)?,
        wrap_pyfunction!(at_sync, m)?,
        wrap_pyfunction!(user_args, m)?,
        wrap_pyfunction!(set_profiling, m)?,
        wrap_pyfunction!(profile, m)?,
        wrap_pyfunction!(migrate, m)?,
        wrap_pyfunction!(set_migratable, m)?,
        wrap_pyfunction!(timer, m)?,
        wrap_pyfunction!(call_after, m)?,
        wrap_pyfunction!(start_qd, m)?,
        wrap_pyfunction!(topology, m)?,
        wrap_pyfunction!(host_pes, m)?,
        wrap_pyfunction!(pe_host, m)?,
        wrap_pyfunction!(node_first_pe, m)?,
        wrap_pyfunction!(topo_tree_edges, m)?,
        wrap_pyfunction!(topo_subtrees, m)?,
        wrap_pyfunction!(entry::set_local_msg_optim, m)?,
        wrap_pyfunction!(entry::set_ro_dirty, m)?,
        wrap_pyfunction!(register_proxy_class, m)?,
        wrap_pyfunction!(reduce_fast, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
