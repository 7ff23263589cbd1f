//! Message queues of a PE. `inbox::Inbox` is the lock-free MPSC inbox every PE
//! drains in its scheduler loop; its design and correctness argument are in
//! [`README.md`](./README.md).

pub(crate) mod inbox;
