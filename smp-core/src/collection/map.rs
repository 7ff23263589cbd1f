//! Placement of array elements on PEs: the default block map and user-defined maps.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::collection::Index;
use crate::msg::Payload;
use crate::pe::PeId;

/// Decides on which PE each element of an array is created (Charm4py's `ArrayMap` with
/// its `procNum`). Elements may move later (migration); the map only sets the start.
///
/// A map must be a pure function of its arguments: every PE evaluates it and must get
/// the same answer. Every process of the job gets a copy of the map: it is a
/// serializable value (`Clone + Serialize + Deserialize`), and its type is registered
/// once with [`register_map!`](crate::register_map) so that other processes can rebuild
/// it (an array with an unregistered map can only be made in a one-process job).
///
/// ```
/// use charmrs::{ArrayMap, Index, PeId};
/// /// Every element on the last PE.
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct LastPe;
/// charmrs::register_map!(LastPe);
/// impl ArrayMap for LastPe {
///     fn pe_of(&self, _index: &Index, _shape: &Index, num_pes: u32) -> PeId {
///         PeId(num_pes - 1)
///     }
/// }
/// assert_eq!(LastPe.pe_of(&Index::from(3), &Index::from(8), 4), PeId(3));
/// ```
pub trait ArrayMap: Send + Sync + 'static {
    /// The PE of element `index` of an array of shape `shape` in a job of `num_pes` PEs.
    /// A result `>= num_pes` is an error reported when the array is created.
    fn pe_of(&self, index: &Index, shape: &Index, num_pes: u32) -> PeId;
}

/// The default map: the elements, in row-major order, are cut into `num_pes` contiguous
/// blocks whose sizes differ by at most one (earlier PEs never get fewer).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct BlockMap;

/// Where [`BlockMap`] puts one element: its PE and its rank among that PE's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSlot {
    /// The PE.
    pub pe: PeId,
    /// Position among the elements of that PE, in row-major order.
    pub offset: u64,
}

impl BlockMap {
    /// First row-major position that PE `pe` holds among `n` elements on `p` PEs.
    #[inline]
    pub fn first(pe: u32, n: u64, p: u32) -> u64 {
        // ceil(pe * n / p): the smallest lin with lin * p / n >= pe.
        (pe as u64 * n).div_ceil(p as u64)
    }

    /// The slot of row-major position `lin` among `n` elements on `p` PEs.
    #[inline]
    pub fn locate(lin: u64, n: u64, p: u32) -> BlockSlot {
        let pe = ((lin as u128 * p as u128) / n as u128) as u32;
        BlockSlot { pe: PeId(pe), offset: lin - Self::first(pe, n, p) }
    }

    /// The row-major position of a slot (the inverse of [`BlockMap::locate`]).
    #[inline]
    pub fn position(slot: BlockSlot, n: u64, p: u32) -> u64 {
        Self::first(slot.pe.0, n, p) + slot.offset
    }
}

impl ArrayMap for BlockMap {
    fn pe_of(&self, index: &Index, shape: &Index, num_pes: u32) -> PeId {
        let lin = index.linearize(shape).unwrap_or(0);
        BlockMap::locate(lin, shape.volume(), num_pes).pe
    }
}

/// How an array's map travels to other processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum MapWire {
    /// [`BlockMap`].
    Block,
    /// [`crate::collection::HashMapping`] (sparse arrays' default).
    Hash,
    /// A registered user map: its type name and its serialized value.
    User {
        /// `std::any::type_name` of the map type.
        name: String,
        /// The map, serialized.
        bytes: Vec<u8>,
    },
    /// A map type that was not registered: it cannot be rebuilt elsewhere.
    Unregistered(String),
}

impl MapWire {
    /// The wire form of `map`.
    pub(crate) fn of<M: ArrayMap + Payload>(map: &M) -> MapWire {
        if std::any::TypeId::of::<M>() == std::any::TypeId::of::<BlockMap>() {
            return MapWire::Block;
        }
        if std::any::TypeId::of::<M>() == std::any::TypeId::of::<crate::collection::HashMapping>() {
            return MapWire::Hash;
        }
        let name = std::any::type_name::<M>();
        if !MAPS.iter().any(|d| (d.name)() == name) {
            return MapWire::Unregistered(name.to_string());
        }
        let mut bytes = Vec::new();
        match crate::msg::wire::encode(map, &mut bytes) {
            Ok(()) => MapWire::User { name: name.to_string(), bytes },
            Err(_) => MapWire::Unregistered(name.to_string()),
        }
    }

    /// Whether another process can rebuild the map; if not, why.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            MapWire::Unregistered(name) => Err(format!(
                "the ArrayMap type {name} is not registered: add `charmrs::register_map!({});` next to it \
                 to use it in a job of several processes",
                name.rsplit("::").next().unwrap_or(name)
            )),
            _ => Ok(()),
        }
    }

    /// Rebuilds the map in this process.
    pub(crate) fn decode(&self) -> Result<Arc<dyn ArrayMap>, String> {
        match self {
            MapWire::Block => Ok(Arc::new(BlockMap)),
            MapWire::Hash => Ok(Arc::new(crate::collection::HashMapping)),
            MapWire::User { name, bytes } => match MAPS.iter().find(|d| (d.name)() == name) {
                Some(d) => (d.decode)(bytes),
                None => Err(format!("the ArrayMap type {name} is not registered in this process")),
            },
            MapWire::Unregistered(_) => Err(self.check().expect_err("unregistered")),
        }
    }
}

/// A registered map type (made by [`register_map!`](crate::register_map)).
pub struct MapDesc {
    name: fn() -> &'static str,
    decode: DecodeMap,
}

/// Rebuilds a map from its bytes.
type DecodeMap = fn(&[u8]) -> Result<Arc<dyn ArrayMap>, String>;

impl MapDesc {
    /// The descriptor of map type `M`.
    pub const fn of<M: ArrayMap + Payload>() -> MapDesc {
        MapDesc { name: std::any::type_name::<M>, decode: decode_map::<M> }
    }
}

fn decode_map<M: ArrayMap + Payload>(bytes: &[u8]) -> Result<Arc<dyn ArrayMap>, String> {
    Ok(Arc::new(crate::msg::wire::decode::<M>(bytes)?))
}

/// Every registered map type.
#[linkme::distributed_slice]
pub static MAPS: [MapDesc];

/// Registers an [`ArrayMap`] type so that arrays placed by it can be created in jobs of
/// several processes: `charmrs::register_map!(MyMap);` at module level.
#[macro_export]
macro_rules! register_map {
    ($t:ty) => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::__private::MAPS)]
            #[linkme(crate = $crate::__private::linkme)]
            static __CHARMRS_MAP: $crate::__private::MapDesc = $crate::__private::MapDesc::of::<$t>();
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// N-d index <-> (PE, offset) is a bijection, and block sizes differ by <= 1.
        #[test]
        fn block_map_is_a_bijection(shape in proptest::collection::vec(1i32..7, 1..=6), p in 1u32..20) {
            let shape = Index::new(&shape);
            let n = shape.volume();
            let mut per_pe = vec![0u64; p as usize];
            for lin in 0..n {
                let idx = Index::delinearize(lin, &shape);
                let slot = BlockMap::locate(idx.linearize(&shape).unwrap(), n, p);
                prop_assert!(slot.pe.0 < p);
                prop_assert_eq!(slot.offset, per_pe[slot.pe.0 as usize]);
                per_pe[slot.pe.0 as usize] += 1;
                prop_assert_eq!(BlockMap::position(slot, n, p), lin);
                prop_assert_eq!(BlockMap.pe_of(&idx, &shape, p), slot.pe);
            }
            let (min, max) = (per_pe.iter().min().unwrap(), per_pe.iter().max().unwrap());
            prop_assert!(max - min <= 1);
        }
    }
}
