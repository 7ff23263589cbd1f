//! Proxy methods in Rust: `proxy.method(...)` sends without a Python frame of ours on
//! the common paths, and passes arguments by reference to a chare of the same process
//! when `charm.options.local_msg_optim` is on (off by default, as in Charm4py 1.1:
//! the manual's default shares a sender's numpy views with the callee, which programs
//! written for 1.1 do not expect).
//!
//! Each entry method of a proxy class is an [`EntryMethod`] (a descriptor); reading it
//! on a proxy gives a [`BoundEntry`], whose call
//! - passes `args`/`kwargs` themselves (`ARGS_REF`) when the call is delivered in this
//!   process ([`charmrs::__private::delivered_in_process`]) and `local_msg_optim` is on:
//!   the callee gets the caller's very objects, as the manual's "Rules and Semantics"
//!   describe (section 15.1), and nothing is pickled or copied;
//! - sends positional arguments otherwise (`PyMsg::positional`): plain ones natively
//!   (`ARGS_PLAIN`), with C-contiguous numpy arrays of plain dtypes among them beside
//!   them as raw bytes (module `arrays`); any others pickled, with the futures,
//!   proxies and top-level arrays beside the pickle;
//! - hands a call with keyword arguments to the Python method it wraps (which pickles
//!   `(args, kwargs)`), as it does any call when readonlies changed since the last
//!   message (that method broadcasts them first).
//!
//! A by-reference message whose element moved away after the call was made is
//! forwarded by the element's home: its arguments are pickled then, when they are
//! encoded ([`RefArgs`]'s `Serialize`), with the values they have at that moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use charmrs::PodVec;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::{on_pe, pickle_fn, pickled, PyMsg, PyProxy, ARGS_REF};

/// `charm.options.local_msg_optim`, as `charm.start` read it.
static LOCAL_OPTIM: AtomicBool = AtomicBool::new(false);

/// Set when a readonly changed on this process and was not broadcast yet: calls then
/// go through the Python method, which broadcasts them first.
static RO_DIRTY: AtomicBool = AtomicBool::new(false);

/// Sets `local_msg_optim` (from `charm.start`).
#[pyfunction]
pub(crate) fn set_local_msg_optim(on: bool) {
    LOCAL_OPTIM.store(on, Ordering::Relaxed);
}

/// Says whether readonlies changed since their last broadcast (from `readonly.py`).
#[pyfunction]
pub(crate) fn set_ro_dirty(dirty: bool) {
    RO_DIRTY.store(dirty, Ordering::Relaxed);
}

/// The arguments of an `ARGS_REF` message.
#[derive(Clone, Default)]
pub(crate) enum RefArgs {
    /// Not a by-reference message.
    #[default]
    None,
    /// The caller's `(args, kwargs)` objects.
    Live(Arc<(Py<PyTuple>, Option<Py<PyDict>>)>),
    /// `(args, kwargs)` pickled: the message was encoded (forwarded to another process).
    Pickled(PodVec<u8>),
}

impl serde::Serialize for RefArgs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RefArgs::None => None::<PodVec<u8>>.serialize(s),
            RefArgs::Pickled(b) => Some(b).serialize(s),
            RefArgs::Live(a) => {
                let bytes = Python::attach(|py| {
                    let pair = (a.0.bind(py), a.1.as_ref().map(|k| k.bind(py)));
                    pickle_fn(py, true)
                        .and_then(|d| d.call1((pair, 5)))
                        .map(|b| pickled(&b))
                        .map_err(|e| format!("pickling the arguments of a forwarded call failed: {e}"))
                })
                .map_err(serde::ser::Error::custom)?;
                Some(bytes).serialize(s)
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for RefArgs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<PodVec<u8>>::deserialize(d)? {
            None => RefArgs::None,
            Some(b) => RefArgs::Pickled(b),
        })
    }
}

impl RefArgs {
    /// The positional and keyword arguments (with the GIL).
    pub(crate) fn get<'py>(&self, py: Python<'py>) -> PyResult<crate::CallArgs<'py>> {
        match self {
            RefArgs::Live(a) => Ok((a.0.bind(py).clone(), a.1.as_ref().map(|k| k.bind(py).clone()))),
            RefArgs::Pickled(b) => {
                let (a, kw): (Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>) =
                    pickle_fn(py, false)?.call1((pyo3::types::PyBytes::new(py, b),))?.extract()?;
                Ok((a, kw))
            }
            RefArgs::None => {
                Err(crate::CharmError::new_err("malformed message: a by-reference call without arguments"))
            }
        }
    }
}

/// An entry method of a proxy class: reading it on a proxy gives the [`BoundEntry`]
/// that sends the call.
#[pyclass(frozen, module = "charmrs._charmrs")]
pub(crate) struct EntryMethod {
    name: Py<PyString>,
    coro: bool,
    when: bool,
    /// The Python method `(proxy, *args, **kwargs)` for the calls not handled here.
    fallback: Py<PyAny>,
}

#[pymethods]
impl EntryMethod {
    /// The entry method `name` (a `@coro` one if `coro`, one with a `@when` condition
    /// if `when`); `fallback(proxy, *args, **kwargs)` sends the calls whose arguments
    /// need pickling.
    #[new]
    fn new(name: Bound<'_, PyString>, coro: bool, when: bool, fallback: Py<PyAny>) -> Self {
        EntryMethod { name: name.unbind(), coro, when, fallback }
    }

    /// The bound method on a proxy; the descriptor itself on the class.
    fn __get__(
        slf: Py<Self>,
        py: Python<'_>,
        obj: Option<Py<PyAny>>,
        owner: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let _ = owner;
        Ok(match obj {
            Some(proxy) if !proxy.is_none(py) => Py::new(py, BoundEntry { method: slf, proxy })?.into_any(),
            _ => slf.into_any(),
        })
    }

    /// The entry method's name.
    #[getter]
    fn __name__(&self, py: Python<'_>) -> Py<PyString> {
        self.name.clone_ref(py)
    }

    /// Whether it is a `@coro` method.
    #[getter]
    fn coro(&self) -> bool {
        self.coro
    }
}

/// What `BoundEntry.__reduce__` returns: `(getattr, (proxy, name))`.
type Reduced<'py> = (Bound<'py, PyAny>, (Py<PyAny>, Py<PyString>));

/// `proxy.method`: calling it sends the call (see the module doc). Also a callback for
/// reductions and `startQD`.
#[pyclass(frozen, module = "charmrs._charmrs")]
pub(crate) struct BoundEntry {
    method: Py<EntryMethod>,
    proxy: Py<PyAny>,
}

#[pymethods]
impl BoundEntry {
    /// Sends the call; with `ret=True` or `awaitable=True`, returns its `Future`.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let m = self.method.get();
        let mut want = 0u8;
        let mut rest: Option<Bound<'_, PyDict>> = None;
        if let Some(kw) = kwargs.filter(|k| !k.is_empty()) {
            for (k, v) in kw.iter() {
                match &*k.cast::<PyString>()?.to_cow()? {
                    "ret" => {
                        if v.is_truthy()? {
                            want = 2;
                        }
                    }
                    "awaitable" => {
                        if v.is_truthy()? && want == 0 {
                            want = 1;
                        }
                    }
                    _ => rest.get_or_insert_with(|| PyDict::new(py)).set_item(k, v)?,
                }
            }
        }
        if RO_DIRTY.load(Ordering::Relaxed) {
            return self.fallback(py, args, kwargs);
        }
        let proxy = self.proxy.bind(py);
        let raw_obj = proxy.getattr(pyo3::intern!(py, "_raw"))?;
        let raw = raw_obj.cast::<PyProxy>()?.get();
        let name = m.name.bind(py).to_cow()?;
        let msg = if LOCAL_OPTIM.load(Ordering::Relaxed) && raw.by_reference() {
            check_futures(py, args)?;
            let refs = RefArgs::Live(Arc::new((args.clone().unbind(), rest.map(Bound::unbind))));
            PyMsg { refs, ..PyMsg::new(name.into_owned(), PodVec::new(), ARGS_REF, want == 2) }
        } else {
            match rest {
                None => PyMsg::positional(py, &name, args, want == 2)?,
                Some(_) => return self.fallback(py, args, kwargs),
            }
        };
        on_pe()?;
        let live = msg.live();
        match raw.send_timed(msg, m.coro, want, m.when, &live)? {
            None => Ok(py.None()),
            Some(f) => Ok(crate::glue_fn!(py, "future_of")?.call1((f,))?.unbind()),
        }
    }

    /// The proxy the method is bound to.
    #[getter]
    fn __self__(&self, py: Python<'_>) -> Py<PyAny> {
        self.proxy.clone_ref(py)
    }

    /// The entry method's name.
    #[getter]
    fn __name__(&self, py: Python<'_>) -> Py<PyString> {
        self.method.get().name.clone_ref(py)
    }

    /// Whether it is a `@coro` method.
    #[getter]
    fn coro(&self) -> bool {
        self.method.get().coro
    }

    /// Pickled as `getattr(proxy, name)`, as a Python bound method is.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Reduced<'py>> {
        let getattr = py.import("builtins")?.getattr("getattr")?;
        Ok((getattr, (self.proxy.clone_ref(py), self.method.get().name.clone_ref(py))))
    }

    /// Equal when bound to equal proxies, for the same method.
    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(other) = other.cast::<BoundEntry>() else { return Ok(false) };
        let other = other.get();
        Ok(other.method.is(&self.method) && self.proxy.bind(py).eq(other.proxy.bind(py))?)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        Ok(self.proxy.bind(py).hash()? ^ self.method.get().name.bind(py).hash()?)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("<remote method {} of {}>", self.method.get().name.bind(py), self.proxy.bind(py))
    }
}

/// Refuses, as a call to another process does, a future among the positional
/// arguments that is not an explicit `Future()` (one from `awaitable=True`/`ret=True`
/// is its caller's).
fn check_futures(py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<()> {
    let cls = crate::future_class(py)?;
    for a in args.iter() {
        if a.get_type().is(cls) {
            crate::beside_arg(&a, 0)?;
        }
    }
    Ok(())
}

impl BoundEntry {
    /// The call through the Python method.
    fn fallback(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.proxy.bind(py).clone());
        all.extend(args.iter());
        let all = PyTuple::new(py, all)?;
        Ok(self.method.get().fallback.bind(py).call(all, kwargs)?.unbind())
    }
}
