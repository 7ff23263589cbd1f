//! The one error type of the crate.

use crate::pe::PeId;

/// Errors that reach user code: a remote panic delivered to an awaiting future, misuse
/// of a future, a bad configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    /// An entry method or constructor panicked; the panic was caught on its PE and
    /// delivered to the future that awaited it.
    #[error("panic on PE {pe} in {chare}::{method}{}: {message}", .index.as_ref().map(|i| format!(" (element {i})")).unwrap_or_default())]
    RemotePanic {
        /// PE the method ran on.
        pe: PeId,
        /// Chare type name.
        chare: String,
        /// Entry method name.
        method: String,
        /// Element index, for collection elements.
        index: Option<String>,
        /// The panic message.
        message: String,
        /// What a language binding attached to the failure (the Python package: the
        /// pickled exception, re-raised with its own type at the caller); see
        /// `__private::Raised`.
        #[serde(default)]
        detail: Option<Vec<u8>>,
    },
    /// A future was awaited on a PE other than the one that created it.
    #[error(
        "future created on PE {owner} awaited on PE {pe}: a future can only be awaited where it was created"
    )]
    NotOwner {
        /// PE that created the future.
        owner: PeId,
        /// PE that tried to await it.
        pe: PeId,
    },
    /// The future was already awaited to completion (its value was taken).
    #[error("future {0} already consumed")]
    Consumed(String),
    /// The API was used in a way it does not allow (the message says how to fix it).
    #[error("{0}")]
    Usage(String),
    /// A runtime function was called outside a running PE.
    #[error("not on a charmrs PE: call this from an entry method or the main function of charmrs::start")]
    NotOnPe,
    /// A reduction was given contributions it cannot combine.
    #[error("reduction failed: {0}")]
    Reduction(String),
    /// The runtime's configuration is invalid.
    #[error("{0}")]
    Config(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
