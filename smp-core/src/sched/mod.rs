//! The PE scheduler's building blocks. `idle` is the idle -> park -> wake protocol
//! of one PE; its states, the lost-wake-up proof and the spin policies are in
//! [`README.md`](./README.md).

pub(crate) mod idle;

pub use idle::IdlePolicy;
