//! N-d element indices (1-d to 6-d) and collection ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::pe::PeId;

/// The most dimensions an array may have.
pub const MAX_DIMS: usize = 6;

/// The index of an element of a collection: 1 to 6 integer coordinates. A group
/// element's index is its PE; a single chare's index is `[0]`.
///
/// ```
/// use charmrs::Index;
/// let i = Index::from([3, 4]);
/// assert_eq!(i.dims(), 2);
/// assert_eq!(i[1], 4);
/// assert_eq!(i.to_string(), "(3, 4)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Index {
    len: u8,
    coords: [i32; MAX_DIMS],
}

impl Index {
    /// An index from a slice of coordinates.
    ///
    /// # Panics
    /// If `coords` is empty or longer than [`MAX_DIMS`].
    pub fn new(coords: &[i32]) -> Index {
        assert!(
            !coords.is_empty() && coords.len() <= MAX_DIMS,
            "an index has 1 to {MAX_DIMS} dimensions, got {}",
            coords.len()
        );
        let mut c = [0; MAX_DIMS];
        c[..coords.len()].copy_from_slice(coords);
        Index { len: coords.len() as u8, coords: c }
    }

    /// Number of dimensions.
    #[inline]
    pub fn dims(&self) -> usize {
        self.len as usize
    }

    /// The coordinates.
    #[inline]
    pub fn as_slice(&self) -> &[i32] {
        &self.coords[..self.len as usize]
    }

    /// Number of elements of an array of this shape (the index read as a shape).
    pub fn volume(&self) -> u64 {
        self.as_slice().iter().map(|&d| d.max(0) as u64).product()
    }

    /// Row-major position of `self` in an array of shape `shape`, or `None` when it is
    /// outside the shape or has another number of dimensions.
    pub fn linearize(&self, shape: &Index) -> Option<u64> {
        if self.len != shape.len {
            return None;
        }
        let mut lin = 0u64;
        for (&i, &n) in self.as_slice().iter().zip(shape.as_slice()) {
            if i < 0 || i >= n {
                return None;
            }
            lin = lin * n as u64 + i as u64;
        }
        Some(lin)
    }

    /// The index at row-major position `lin` of an array of shape `shape`.
    pub fn delinearize(mut lin: u64, shape: &Index) -> Index {
        let mut c = [0; MAX_DIMS];
        for d in (0..shape.dims()).rev() {
            let n = shape.coords[d] as u64;
            c[d] = (lin % n) as i32;
            lin /= n;
        }
        Index { len: shape.len, coords: c }
    }

    /// The index of a group element: its PE.
    #[inline]
    pub(crate) fn of_pe(pe: PeId) -> Index {
        Index::from(pe.0 as i32)
    }
}

/// Hashes the coordinates as three words (unused ones are zero), instead of a length
/// and six separate writes: an element lookup is on every message's path.
impl std::hash::Hash for Index {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let c = &self.coords;
        let w = |a: i32, b: i32| (a as u32 as u64) << 32 | b as u32 as u64;
        h.write_u64(w(c[0], c[1]) ^ (self.len as u64) << 60);
        if self.len > 2 {
            h.write_u64(w(c[2], c[3]));
            h.write_u64(w(c[4], c[5]));
        }
    }
}

impl std::ops::Index<usize> for Index {
    type Output = i32;
    fn index(&self, d: usize) -> &i32 {
        &self.as_slice()[d]
    }
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "(")?;
                for (k, c) in many.iter().enumerate() {
                    if k > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{c}")?;
                }
                write!(f, ")")
            }
        }
    }
}

impl From<i32> for Index {
    fn from(i: i32) -> Index {
        Index::new(&[i])
    }
}

impl From<usize> for Index {
    fn from(i: usize) -> Index {
        Index::new(&[i as i32])
    }
}

impl<const N: usize> From<[i32; N]> for Index {
    fn from(c: [i32; N]) -> Index {
        Index::new(&c)
    }
}

impl<const N: usize> From<[usize; N]> for Index {
    fn from(c: [usize; N]) -> Index {
        let v: Vec<i32> = c.iter().map(|&x| x as i32).collect();
        Index::new(&v)
    }
}

impl From<(i32, i32)> for Index {
    fn from((a, b): (i32, i32)) -> Index {
        Index::new(&[a, b])
    }
}

impl From<(i32, i32, i32)> for Index {
    fn from((a, b, c): (i32, i32, i32)) -> Index {
        Index::new(&[a, b, c])
    }
}

/// Identifies a collection (group, array or single chare) in the whole job: the PE that
/// created it and a counter of that PE, so that any PE creates ids without asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct CollId {
    /// Creator PE.
    pub(crate) pe: u32,
    /// Creation counter of that PE.
    pub(crate) seq: u32,
}

impl fmt::Display for CollId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pe, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display() {
        assert_eq!(Index::from(7).to_string(), "7");
        assert_eq!(Index::from([1, 2, 3]).to_string(), "(1, 2, 3)");
    }

    #[test]
    fn outside_shape_is_none() {
        let shape = Index::from([4, 5]);
        assert_eq!(Index::from([4, 0]).linearize(&shape), None);
        assert_eq!(Index::from([-1, 0]).linearize(&shape), None);
        assert_eq!(Index::from(3).linearize(&shape), None);
    }

    proptest! {
        #[test]
        fn linearize_round_trips(shape in proptest::collection::vec(1i32..6, 1..=6), seed in any::<u64>()) {
            let shape = Index::new(&shape);
            let lin = seed % shape.volume();
            let idx = Index::delinearize(lin, &shape);
            prop_assert_eq!(idx.linearize(&shape), Some(lin));
        }
    }
}
