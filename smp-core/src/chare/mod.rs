//! Chares: the trait that `#[chare]` implements, the context an entry method gets,
//! proxies and calls, the registration table and the dispatch helpers.

mod ctx;
pub(crate) mod invoke;
pub(crate) mod proxy;
pub(crate) mod registry;

pub use ctx::{Ctx, Handle};
pub(crate) use ctx::{ElemMeta, Slot};
pub use proxy::{Call, Proxy};

use crate::msg::Payload;

/// A chare type. Implemented by `#[chare]` on the type's `impl` block; not by hand.
pub trait Chare: Sized + 'static {
    /// The generated proxy type, `<Type>Proxy`.
    type Proxy: Proxy<Chare = Self>;
    /// The constructor's arguments, as a tuple.
    type Args: Payload;
    /// The constructor's registration.
    #[doc(hidden)]
    fn __ctor() -> &'static registry::EntryDesc;
}
