//! # charmrs-comm: moving bytes between the processes of a job
//!
//! This crate knows nothing of chares, envelopes or Python: it moves byte frames
//! between processes. It holds the wire format every byte-stream transport shares
//! ([`frame`]), the authenticated connection handshake ([`handshake`]), the bootstrap
//! that joins a job's processes ([`bootstrap`]), the transport interface
//! ([`transport`]) with its TCP implementation ([`tcp`]), and the launcher
//! ([`launcher`]). Processes of one host talk through shared memory (`shm`, Linux),
//! with TCP to the others.
#![deny(unsafe_code)]

pub mod bootstrap;
pub mod frame;
pub mod handshake;
pub mod launcher;
#[cfg(target_os = "linux")]
pub mod shm;
pub mod tcp;
pub mod transport;

pub use frame::{Decoder, Frame, FrameError, FrameHeader, FrameKind, HEADER_LEN, MAGIC, WIRE_VERSION};
