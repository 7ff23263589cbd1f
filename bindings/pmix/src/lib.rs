//! The PMIx client calls charmrs's bootstrap needs when `mpirun` or `srun` starts a
//! job's processes without `charmrs-run`: who this process is (namespace and rank),
//! and publishing one string for the others to read (`Put`, `Commit`, `Fence`, `Get`).
//! PMIx is the interface Open MPI 4+, Slurm and PRRTE serve their processes.
//!
//! The library is loaded at run time (`dlopen` of `libpmix.so.2`, then `libpmix.so`):
//! building charmrs (and its Python wheel) needs no PMIx, and a process that no PMIx
//! launcher started never loads it. Only the structures these calls take are declared,
//! as PMIx 4's `pmix_common.h` lays them out (`pmix_proc_t`, `pmix_value_t`).
//!
//! Written by hand: no maintained Rust binding of PMIx is on crates.io, and the five
//! calls are all the bootstrap needs.

#![allow(unsafe_code)] // FFI into libpmix: see the SAFETY comments

use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// `PMIX_MAX_NSLEN`.
const NSLEN: usize = 255;
/// `PMIX_STRING`.
const PMIX_STRING: u16 = 3;
/// `PMIX_UINT32`.
const PMIX_UINT32: u16 = 14;
/// `PMIX_GLOBAL`: share with all processes of the job, local and remote.
const PMIX_GLOBAL: u8 = 3;
/// `PMIX_RANK_WILDCARD`: the job as a whole (for its attributes).
const RANK_WILDCARD: u32 = u32::MAX - 1;

/// `pmix_proc_t`.
#[repr(C)]
struct Proc {
    nspace: [c_char; NSLEN + 1],
    rank: u32,
}

/// `pmix_value_t` (its union is 24 bytes on 64-bit targets: `pmix_envar_t`).
#[repr(C)]
struct Value {
    kind: u16,
    data: ValueData,
}

#[repr(C)]
union ValueData {
    string: *mut c_char,
    uint32: u32,
    _size: [u64; 3],
}

type InitFn = unsafe extern "C" fn(*mut Proc, *const c_void, usize) -> c_int;
type PutFn = unsafe extern "C" fn(u8, *const c_char, *mut Value) -> c_int;
type CommitFn = unsafe extern "C" fn() -> c_int;
type FenceFn = unsafe extern "C" fn(*const Proc, usize, *const c_void, usize) -> c_int;
type GetFn = unsafe extern "C" fn(*const Proc, *const c_char, *const c_void, usize, *mut *mut Value) -> c_int;
type FinalizeFn = unsafe extern "C" fn(*const c_void, usize) -> c_int;
type DestructFn = unsafe extern "C" fn(*mut Value);
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;

/// A PMIx call that failed, or a library that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// This process as a PMIx client, from [`Pmix::init`] until it is dropped
/// (`PMIx_Finalize`).
pub struct Pmix {
    me: Box<Proc>,
    put: PutFn,
    commit: CommitFn,
    fence: FenceFn,
    get: GetFn,
    finalize: FinalizeFn,
    destruct: DestructFn,
    error_string: ErrorStringFn,
    /// Keeps the functions above loaded.
    _lib: libloading::Library,
}

impl std::fmt::Debug for Pmix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pmix").field("namespace", &self.namespace()).field("rank", &self.rank()).finish()
    }
}

/// Whether a PMIx server seems to have started this process (its launcher set
/// `PMIX_RANK` or `PMIX_NAMESPACE`).
pub fn launched_by_pmix() -> bool {
    std::env::var_os("PMIX_RANK").is_some() || std::env::var_os("PMIX_NAMESPACE").is_some()
}

impl Pmix {
    /// Loads libpmix and connects to the PMIx server of the launcher that started this
    /// process (`PMIx_Init`).
    ///
    /// # Errors
    /// No libpmix on this machine, or no server to connect to.
    pub fn init() -> Result<Pmix, Error> {
        // SAFETY: loading libpmix runs its initialisers, which have no requirements.
        let lib = ["libpmix.so.2", "libpmix.so"]
            .iter()
            .find_map(|n| unsafe { libloading::Library::new(n) }.ok())
            .ok_or_else(|| Error("cannot load libpmix (libpmix.so.2; Debian: libpmix2)".into()))?;
        fn sym<T: Copy>(lib: &libloading::Library, name: &[u8]) -> Result<T, Error> {
            // SAFETY: each `T` below is the C signature PMIx 4 gives the symbol.
            unsafe { lib.get::<T>(name) }.map(|s| *s).map_err(|e| Error(format!("libpmix: {e}")))
        }
        let init: InitFn = sym(&lib, b"PMIx_Init\0")?;
        let mut p = Pmix {
            me: Box::new(Proc { nspace: [0; NSLEN + 1], rank: 0 }),
            put: sym(&lib, b"PMIx_Put\0")?,
            commit: sym(&lib, b"PMIx_Commit\0")?,
            fence: sym(&lib, b"PMIx_Fence\0")?,
            get: sym(&lib, b"PMIx_Get\0")?,
            finalize: sym(&lib, b"PMIx_Finalize\0")?,
            destruct: sym(&lib, b"PMIx_Value_destruct\0")?,
            error_string: sym(&lib, b"PMIx_Error_string\0")?,
            _lib: lib,
        };
        // SAFETY: `me` is a `pmix_proc_t` PMIx fills in; no info array.
        let rc = unsafe { init(&mut *p.me, std::ptr::null(), 0) };
        if rc != 0 {
            // Not initialised: nothing to finalize.
            let why = p.why(rc);
            std::mem::forget(p);
            return Err(Error(format!("PMIx_Init: {why}")));
        }
        Ok(p)
    }

    fn why(&self, rc: c_int) -> String {
        // SAFETY: PMIx_Error_string returns a static string for any status.
        let s = unsafe { (self.error_string)(rc) };
        if s.is_null() {
            return format!("status {rc}");
        }
        // SAFETY: non-null, a NUL-terminated static string.
        format!("{} ({rc})", unsafe { CStr::from_ptr(s) }.to_string_lossy())
    }

    fn check(&self, what: &str, rc: c_int) -> Result<(), Error> {
        if rc == 0 {
            Ok(())
        } else {
            Err(Error(format!("{what}: {}", self.why(rc))))
        }
    }

    /// This process's rank in its namespace (its job).
    pub fn rank(&self) -> u32 {
        self.me.rank
    }

    /// This process's namespace (its job, as the launcher names it).
    pub fn namespace(&self) -> String {
        // SAFETY: PMIx wrote a NUL-terminated name into the array, which ends in a NUL
        // byte whatever it wrote (one longer than PMIX_MAX_NSLEN).
        unsafe { CStr::from_ptr(self.me.nspace.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Publishes `value` under `key` for every process of the job (after
    /// [`Pmix::commit`]).
    ///
    /// # Errors
    /// PMIx refused it, or `key`/`value` holds a NUL byte.
    pub fn put(&self, key: &str, value: &str) -> Result<(), Error> {
        let k = CString::new(key).map_err(|_| Error("a key with a NUL byte".into()))?;
        let v = CString::new(value).map_err(|_| Error("a value with a NUL byte".into()))?;
        let mut val = Value { kind: PMIX_STRING, data: ValueData { string: v.as_ptr().cast_mut() } };
        // SAFETY: a string value whose string lives through the call (PMIx copies it).
        let rc = unsafe { (self.put)(PMIX_GLOBAL, k.as_ptr(), &mut val) };
        self.check("PMIx_Put", rc)
    }

    /// Sends what was put to the PMIx server.
    ///
    /// # Errors
    /// PMIx refused it.
    pub fn commit(&self) -> Result<(), Error> {
        // SAFETY: no arguments.
        let rc = unsafe { (self.commit)() };
        self.check("PMIx_Commit", rc)
    }

    /// Waits until every process of the job got here (a barrier over the namespace).
    ///
    /// # Errors
    /// PMIx failed it (a process died, say).
    pub fn fence(&self) -> Result<(), Error> {
        // SAFETY: no process list (all of the namespace), no info.
        let rc = unsafe { (self.fence)(std::ptr::null(), 0, std::ptr::null(), 0) };
        self.check("PMIx_Fence", rc)
    }

    /// The string process `rank` of the job published under `key`.
    ///
    /// # Errors
    /// Not published, not a string, or PMIx failed.
    pub fn get(&self, rank: u32, key: &str) -> Result<String, Error> {
        self.get_value(rank, key, |v| {
            // SAFETY: a PMIx value of type PMIX_STRING holds a NUL-terminated string
            // (or NULL) in `data.string`.
            unsafe {
                (v.kind == PMIX_STRING && !v.data.string.is_null())
                    .then(|| CStr::from_ptr(v.data.string).to_string_lossy().into_owned())
            }
        })
    }

    /// How many processes the job has (`PMIX_JOB_SIZE`).
    ///
    /// # Errors
    /// PMIx does not know it, or failed.
    pub fn job_size(&self) -> Result<u32, Error> {
        self.get_value(RANK_WILDCARD, "pmix.job.size", |v| {
            if v.kind != PMIX_UINT32 {
                return None;
            }
            // SAFETY: a PMIx value of type PMIX_UINT32 holds it in `data.uint32`.
            Some(unsafe { v.data.uint32 })
        })
    }

    /// `PMIx_Get` of `key` of process `rank` (or the job, `RANK_WILDCARD`), read by
    /// `read` (`None`: not of the type it wants).
    fn get_value<T>(&self, rank: u32, key: &str, read: impl FnOnce(&Value) -> Option<T>) -> Result<T, Error> {
        let k = CString::new(key).map_err(|_| Error("a key with a NUL byte".into()))?;
        let who = Proc { nspace: self.me.nspace, rank };
        let mut out: *mut Value = std::ptr::null_mut();
        // SAFETY: `who` names a process (or the job) of our namespace; PMIx allocates
        // `*out`.
        let rc = unsafe { (self.get)(&who, k.as_ptr(), std::ptr::null(), 0, &mut out) };
        self.check(&format!("PMIx_Get({key} of rank {rank})"), rc)?;
        if out.is_null() {
            return Err(Error(format!("PMIx_Get({key} of rank {rank}): no value")));
        }
        // SAFETY: PMIx returned a value it allocated (malloc); we read it, then destruct
        // and free it as PMIX_VALUE_RELEASE does.
        unsafe {
            let r =
                read(&*out).ok_or_else(|| Error(format!("PMIx_Get({key} of rank {rank}): of another type")));
            (self.destruct)(out);
            libc::free(out.cast());
            r
        }
    }
}

impl Drop for Pmix {
    fn drop(&mut self) {
        // SAFETY: initialised (`init` forgets a `Pmix` that is not); no info.
        unsafe { (self.finalize)(std::ptr::null(), 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_structures_have_pmix_4s_sizes() {
        assert_eq!(std::mem::size_of::<Proc>(), 260);
        assert_eq!(std::mem::size_of::<Value>(), 32);
        assert_eq!(std::mem::offset_of!(Value, data), 8);
    }

    #[test]
    fn without_a_server_init_is_an_error_not_a_crash() {
        if launched_by_pmix() {
            return; // under mpirun: a server is there
        }
        match Pmix::init() {
            Ok(p) => panic!("a PMIx client without a server: {p:?}"),
            Err(e) => assert!(e.0.contains("PMIx_Init") || e.0.contains("cannot load libpmix"), "{e}"),
        }
    }
}
