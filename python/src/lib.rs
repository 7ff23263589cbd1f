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
//! Work in progress (issue 5): creation of groups and arrays, element and broadcast
//! calls without return values. Futures, `ret=True`, coroutines (greenlets),
//! reductions and the launcher front are the next slices.

use charmrs::prelude::*;
use charmrs::PodVec;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// A method call for a Python chare: the method's name and its pickled arguments.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct PyMsg {
    method: String,
    args: PodVec<u8>,
}

/// A Python chare: the Python object, made by `charmrs._glue.construct`.
pub struct PyChare {
    obj: Py<PyAny>,
}

/// Ends the job with the Python exception's traceback (printed first).
fn raised(py: Python<'_>, what: &str, e: PyErr) -> ! {
    e.print(py);
    panic!("{what} raised {e}")
}

#[chare]
impl PyChare {
    fn new(ctx: &Ctx<Self>, class: String, args: PodVec<u8>) -> Self {
        let index: Vec<i32> = ctx.this_index().as_slice().to_vec();
        let proxy = PyProxy { inner: ctx.this_proxy() };
        Python::attach(|py| {
            let made = py
                .import("charmrs._glue")
                .and_then(|g| g.call_method1("construct", (&class, PyBytes::new(py, &args), index, proxy)));
            match made {
                Ok(obj) => PyChare { obj: obj.unbind() },
                Err(e) => raised(py, &format!("the constructor of {class}"), e),
            }
        })
    }

    /// Calls `msg.method` on the Python object.
    fn call(&mut self, ctx: &Ctx<Self>, msg: PyMsg) {
        let _ = ctx;
        Python::attach(|py| {
            let done = py.import("charmrs._glue").and_then(|g| {
                g.call_method1("invoke", (self.obj.bind(py), &msg.method, PyBytes::new(py, &msg.args)))
            });
            if let Err(e) = done {
                raised(py, &format!("method {}", msg.method), e);
            }
        })
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
    /// proxy, or to the one element of an element proxy).
    fn send(&self, method: String, args: &[u8]) {
        drop(self.inner.call(PyMsg { method, args: args.to_vec().into() }));
    }
}

/// Starts the runtime on this process with `argv` (runtime options included) and runs
/// `main` on PE 0; returns the job's exit code when the job ends.
#[pyfunction]
fn start(py: Python<'_>, main: Py<PyAny>, argv: Vec<String>) -> PyResult<i32> {
    let config = charmrs::Config::parse(argv, |k| std::env::var(k).ok())
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    py.detach(move || {
        charmrs::run_with(config, move |_| async move {
            Python::attach(|py| {
                if let Err(e) = main.call0(py) {
                    raised(py, "main", e);
                }
            })
        })
    })
    .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
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

/// Creates a group of `class` (`module:qualname`) with pickled constructor `args`.
#[pyfunction]
fn create_group(class: String, args: &[u8]) -> PyProxy {
    PyProxy { inner: Group::<PyChare>::new((class, args.to_vec().into())).proxy() }
}

/// Creates an array of `class` of shape `dims` with pickled constructor `args`.
#[pyfunction]
fn create_array(class: String, dims: Vec<i32>, args: &[u8]) -> PyProxy {
    PyProxy { inner: Array::<PyChare>::new(Index::new(&dims), (class, args.to_vec().into())).proxy() }
}

/// Runs a job as `charmrs-run` does, with the launcher's options in `args` (`+p4 ++ppn 2
/// prog.py prog-args...`); the program is a Python script run by `python` (the
/// interpreter running this). Returns the job's exit status (2 for a bad command line).
#[pyfunction]
fn launch(py: Python<'_>, args: Vec<String>, python: String) -> i32 {
    use charmrs_comm::launcher::{local, options::LaunchOptions};
    let mut opts = match LaunchOptions::parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("charmrs.run: {e}");
            return 2;
        }
    };
    let script = std::mem::replace(&mut opts.program, python);
    opts.args.splice(0..0, ["-u".to_string(), script]);
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

/// The module `charmrs._charmrs`.
#[pymodule]
fn _charmrs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyProxy>()?;
    m.add_function(wrap_pyfunction!(start, m)?)?;
    m.add_function(wrap_pyfunction!(launch, m)?)?;
    m.add_function(wrap_pyfunction!(my_pe, m)?)?;
    m.add_function(wrap_pyfunction!(num_pes, m)?)?;
    m.add_function(wrap_pyfunction!(exit, m)?)?;
    m.add_function(wrap_pyfunction!(create_group, m)?)?;
    m.add_function(wrap_pyfunction!(create_array, m)?)?;
    Ok(())
}
