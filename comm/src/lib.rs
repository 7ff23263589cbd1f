//! # charmrs-comm: moving bytes between the processes of a job
//!
//! This crate knows nothing of chares, envelopes or Python: it moves byte frames
//! between processes. So far it holds the wire format every byte-stream transport
//! shares ([`frame`]) the authenticated connection handshake ([`handshake`]) and the launcher's
//! command line and nodelist files ([`launcher`]); the shared-memory and TCP transports, the bootstrap and the
//! launcher build on it.
#![deny(unsafe_code)]

pub mod frame;
pub mod handshake;
pub mod launcher;

pub use frame::{Decoder, Frame, FrameError, FrameHeader, FrameKind, HEADER_LEN, MAGIC, WIRE_VERSION};
