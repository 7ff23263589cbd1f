//! The entry-method registration table.
//!
//! `#[chare]` puts one [`EntryDesc`] per entry method (and constructor) into the
//! link-time slice [`ENTRIES`] (linkme: no life-before-main, a plain static slice). At
//! start-up the table is sorted by stable name, ids are the positions, so every process
//! running the same binary numbers entry methods identically; a duplicate name is a
//! start-up error.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::chare::invoke::Invoke;
use crate::msg::wire::ArgCodec;

/// The id of an entry method: its position in the sorted table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EpId(pub(crate) u32);

/// Id value before registration.
const UNREGISTERED: u32 = u32::MAX;

/// A `when` condition: the element (a `Slot<C>`) and the arguments tuple, type-erased.
pub type WhenFn = fn(&dyn std::any::Any, &dyn std::any::Any) -> bool;

/// One entry method, as registered by `#[chare]`.
pub struct EntryDesc {
    name: &'static str,
    chare: &'static str,
    method: &'static str,
    invoke: fn(Invoke<'_>),
    when: Option<WhenFn>,
    codec: ArgCodec,
    migrate: Option<crate::collection::migrate::MigrateFns>,
    id: AtomicU32,
}

impl EntryDesc {
    /// A descriptor (used by generated code).
    pub const fn new(
        name: &'static str,
        chare: &'static str,
        method: &'static str,
        invoke: fn(Invoke<'_>),
        when: Option<WhenFn>,
        codec: ArgCodec,
    ) -> EntryDesc {
        EntryDesc {
            name,
            chare,
            method,
            invoke,
            when,
            codec,
            migrate: None,
            id: AtomicU32::new(UNREGISTERED),
        }
    }

    /// The constructor's descriptor of a migratable chare type (used by generated code):
    /// how its elements are packed and unpacked.
    pub const fn with_migrate(self, m: crate::collection::migrate::MigrateFns) -> EntryDesc {
        EntryDesc { migrate: Some(m), ..self }
    }

    /// How elements of this constructor's chare type migrate (`None`: they do not).
    #[inline]
    pub(crate) fn migrate(&self) -> Option<&crate::collection::migrate::MigrateFns> {
        self.migrate.as_ref()
    }

    /// Full stable name, `module::Type::method`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Chare type name.
    pub fn chare(&self) -> &'static str {
        self.chare
    }

    /// Method name.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The id assigned at start-up.
    #[inline]
    pub(crate) fn id(&self) -> EpId {
        // Relaxed: ids are written by `init` before any PE thread is spawned; the spawn
        // orders those writes before every read on the PE threads.
        let id = self.id.load(Ordering::Relaxed);
        debug_assert_ne!(id, UNREGISTERED, "entry method {} used before charmrs::start", self.name);
        EpId(id)
    }

    /// Runs the method.
    #[inline]
    pub(crate) fn invoke(&self, inv: Invoke<'_>) {
        (self.invoke)(inv)
    }

    /// How the arguments cross processes.
    #[inline]
    pub(crate) fn codec(&self) -> &ArgCodec {
        &self.codec
    }

    /// The `when` condition, if the method has one.
    #[inline]
    pub(crate) fn when(&self) -> Option<WhenFn> {
        self.when
    }
}

/// Every entry method of the program.
#[linkme::distributed_slice]
pub static ENTRIES: [EntryDesc];

static TABLE: OnceLock<Vec<&'static EntryDesc>> = OnceLock::new();

/// A start-up error of the registration table.
#[derive(Debug, thiserror::Error)]
#[error("entry method {0} is registered twice: two chare types or methods have the same stable name")]
pub(crate) struct DuplicateEntry(String);

/// Sorts the table and assigns ids (idempotent).
pub(crate) fn init() -> Result<(), DuplicateEntry> {
    if TABLE.get().is_some() {
        return Ok(());
    }
    let mut all: Vec<&'static EntryDesc> = ENTRIES.iter().collect();
    sort_unique(&mut all, |d| d.name)?;
    for (i, d) in all.iter().enumerate() {
        // Relaxed: see `EntryDesc::id`.
        d.id.store(i as u32, Ordering::Relaxed);
    }
    let _ = TABLE.set(all);
    Ok(())
}

/// Sorts by stable name; a name seen twice is an error.
fn sort_unique<T>(all: &mut [T], name: impl Fn(&T) -> &'static str) -> Result<(), DuplicateEntry> {
    all.sort_by_key(|d| name(d));
    match all.windows(2).find(|w| name(&w[0]) == name(&w[1])) {
        Some(w) => Err(DuplicateEntry(name(&w[0]).to_string())),
        None => Ok(()),
    }
}

/// A fingerprint of the table (FNV-1a over the sorted names): processes of one job
/// must agree on it, since ids are positions in the table.
pub(crate) fn signature() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for d in TABLE.get().map(Vec::as_slice).unwrap_or_default() {
        for b in d.name.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The descriptor of an id.
#[inline]
pub(crate) fn entry(id: EpId) -> Option<&'static EntryDesc> {
    TABLE.get()?.get(id.0 as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_sorted_names() {
        let mut names = ["b::W::m", "a::W::new", "b::W::new"];
        sort_unique(&mut names, |n| n).expect("unique");
        assert_eq!(names, ["a::W::new", "b::W::m", "b::W::new"]);
    }

    #[test]
    fn a_duplicate_name_is_an_error() {
        let mut names = ["a::W::m", "b::V::new", "a::W::m"];
        let e = sort_unique(&mut names, |n| n).expect_err("duplicate");
        assert_eq!(
            e.to_string(),
            "entry method a::W::m is registered twice: two chare types or methods have the same stable name"
        );
    }
}
