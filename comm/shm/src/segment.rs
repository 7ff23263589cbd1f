//! Shared memory segments backed by files under `/dev/shm`.
//!
//! A segment is named `/dev/shm/charmrs-<job>-<name>` (see [`ShmName`]) and mapped read-write
//! with [`memmap2::MmapMut`] (`MAP_SHARED`), so every process that maps the same file sees the same
//! bytes.
//!
//! # Lifecycle: unlink after open
//!
//! 1. The **creator** calls [`Segment::create`]: the file is created with `O_CREAT | O_EXCL`
//!    (mode `0600`), sized with `ftruncate` (so it reads as zeroes) and mapped. It then
//!    initializes whatever lives inside (e.g. [`crate::ring::initialize`]) and tells the peer the
//!    name over an existing control channel.
//! 2. The **peer** calls [`Segment::open_and_unlink`]: it maps the file and immediately removes
//!    the name. From then on the segment is only reachable through the two mappings; the kernel
//!    frees the memory when the last mapping goes away, **including when a process dies from
//!    `kill -9`**. Nothing can leak in `/dev/shm` any more.
//!
//! The only window in which a crash can leak a file is between step 1 and step 2 (the creator
//! or the peer dies before the peer opened it). A launcher or the runtime's shutdown path closes
//! that window by calling [`Segment::remove_job`], which deletes every `charmrs-<job>-*` file of
//! a job.
//!
//! The creator must not hand out the name before [`Segment::create`] has returned (otherwise the
//! peer may see a zero-length file) and the peer must open a given name only once.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use memmap2::MmapMut;

use crate::region::SharedRegion;

/// Directory holding POSIX shared memory objects on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// Prefix of every file this crate creates in [`SHM_DIR`].
pub const PREFIX: &str = "charmrs";

/// Longest file name accepted (Linux `NAME_MAX`).
const NAME_MAX: usize = 255;

/// Validated name of a segment: `/dev/shm/charmrs-<job>-<name>`.
///
/// `job` may contain ASCII letters, digits, `_` and `.`; `name` may additionally contain `-`.
/// `job` cannot contain `-` so that the prefix `charmrs-<job>-` never matches another job's files
/// (see [`Segment::remove_job`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ShmName {
    job: String,
    name: String,
    path: PathBuf,
}

fn valid_chars(s: &str, allow_dash: bool) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || (allow_dash && b == b'-'))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl ShmName {
    /// Builds and validates the name of segment `name` of job `job`.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if either part is empty, contains a character outside the
    /// allowed set, or the file name would exceed 255 bytes.
    pub fn new(job: &str, name: &str) -> io::Result<Self> {
        if !valid_chars(job, false) {
            return Err(invalid(format!("invalid shm job id {job:?}: use [A-Za-z0-9_.]+")));
        }
        if !valid_chars(name, true) {
            return Err(invalid(format!("invalid shm segment name {name:?}: use [A-Za-z0-9_.-]+")));
        }
        let file = format!("{PREFIX}-{job}-{name}");
        if file.len() > NAME_MAX {
            return Err(invalid(format!("shm file name too long ({} > {NAME_MAX} bytes)", file.len())));
        }
        Ok(ShmName { job: job.to_owned(), name: name.to_owned(), path: Path::new(SHM_DIR).join(file) })
    }

    /// The job part.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The segment name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Full path of the backing file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

impl fmt::Debug for ShmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShmName({})", self.path.display())
    }
}

/// A read-write `MAP_SHARED` mapping of a `/dev/shm` file.
///
/// The mapping stays valid until the `Segment` is dropped, whether or not the file name still
/// exists. `Segment` implements [`SharedRegion`], so a ring can be placed in it.
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    name: ShmName,
    // Kept only to unmap on drop; never dereferenced after `ptr` was taken from it.
    _map: MmapMut,
}

impl Segment {
    /// Creates a new segment of `len` bytes, zero-filled, and maps it.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::AlreadyExists`] if the name is taken (`O_EXCL`),
    /// [`io::ErrorKind::InvalidInput`] if `len` is zero, or any error from `open`, `ftruncate` or
    /// `mmap`. On error no file is left behind.
    pub fn create(name: &ShmName, len: usize) -> io::Result<Segment> {
        if len == 0 {
            return Err(invalid("shm segment length must be > 0".into()));
        }
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(name.path())?;
        let sized_and_mapped = file.set_len(len as u64).and_then(|()| Self::map(&file, len, name));
        if sized_and_mapped.is_err() {
            let _ = fs::remove_file(name.path());
        }
        sized_and_mapped
    }

    /// Maps an existing segment created by [`Segment::create`]. Its length is the file's size.
    ///
    /// Prefer [`Segment::open_and_unlink`], which also removes the name.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] if there is no such segment, [`io::ErrorKind::InvalidData`] if
    /// the file is empty (not yet sized by its creator), or any error from `open`/`mmap`.
    pub fn open(name: &ShmName) -> io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).open(name.path())?;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "shm segment too large"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("shm segment {name} is empty")));
        }
        Self::map(&file, len, name)
    }

    /// Maps an existing segment and immediately unlinks its name (the peer side of the lifecycle
    /// described in the [module docs](self)).
    ///
    /// After this returns `Ok`, no file remains in `/dev/shm`, and the memory lives exactly as long
    /// as the mappings in the creator and in this process.
    ///
    /// # Errors
    ///
    /// As [`Segment::open`], plus any error from `unlink` (in which case the mapping is dropped
    /// and the file is left for [`Segment::remove_job`]).
    pub fn open_and_unlink(name: &ShmName) -> io::Result<Segment> {
        let seg = Self::open(name)?;
        Self::unlink(name)?;
        Ok(seg)
    }

    /// Removes the name of a segment. Existing mappings are unaffected.
    ///
    /// # Errors
    ///
    /// Any error from `unlink`, e.g. [`io::ErrorKind::NotFound`].
    pub fn unlink(name: &ShmName) -> io::Result<()> {
        fs::remove_file(name.path())
    }

    /// Removes every leftover segment file of job `job` (`/dev/shm/charmrs-<job>-*`) and returns
    /// how many were removed. Meant for launchers and shutdown paths; it only reclaims files, never
    /// memory still mapped by live processes.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for an invalid job id, or an error reading [`SHM_DIR`].
    /// Files that vanish concurrently are ignored.
    pub fn remove_job(job: &str) -> io::Result<usize> {
        if !valid_chars(job, false) {
            return Err(invalid(format!("invalid shm job id {job:?}")));
        }
        let prefix = format!("{PREFIX}-{job}-");
        let mut removed = 0;
        for entry in fs::read_dir(SHM_DIR)? {
            let entry = entry?;
            let matches = entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix));
            if matches {
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }

    fn map(file: &File, len: usize, name: &ShmName) -> io::Result<Segment> {
        // SAFETY: `MmapMut::map_mut` is unsafe because other processes may modify the file while
        // it is mapped. We never turn the mapping into Rust references: all accesses go through
        // raw pointers handed out by `SharedRegion::as_ptr`, and the ring protocol synchronizes
        // them with atomics. The file is a /dev/shm object private to this job (mode 0600) that is
        // never truncated after creation, so the mapping cannot SIGBUS.
        let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file)? };
        let ptr =
            NonNull::new(map.as_mut_ptr()).ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Segment { ptr, len, name: name.clone(), _map: map })
    }

    /// The segment's name (the file may already be unlinked).
    pub fn name(&self) -> &ShmName {
        &self.name
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never true for a successfully created or opened segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base address of the mapping (page-aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment").field("name", &self.name).field("len", &self.len).finish()
    }
}

// SAFETY: the mapping is process-wide and not tied to a thread; the `Segment` owns it.
unsafe impl Send for Segment {}
// SAFETY: `&Segment` only exposes the raw pointer and length; all accesses through that pointer
// are synchronized by the protocol of whoever uses the region (e.g. the ring's atomics).
unsafe impl Sync for Segment {}

// SAFETY: the pointer comes from a successful `mmap` of `len` bytes, is page-aligned (so at least
// `REGION_ALIGN`-aligned), stays mapped until `self` is dropped, and a freshly created file reads as
// zeroes. `Segment` never creates references to the mapped bytes.
unsafe impl SharedRegion for Segment {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn len(&self) -> usize {
        self.len
    }
}
