//! Reductions of numpy arrays with the built-in `sum`, `product`, `max` and `min`: the
//! contributions travel as raw bytes with their dtype and shape, and are combined here,
//! element by element, without pickling (as Charm4py hands them to Charm++'s typed
//! reducers) and, from 16 KiB of data, without the GIL. Every contribution must have the same dtype and shape;
//! numpy's semantics per element: integers wrap around, `max`/`min` propagate NaN.
//! (Tested through pytest, `tests/progs/reductions.py`: this crate's own test harness
//! cannot link libpython.)

use charmrs::{PodVec, Reducer};

/// A numpy array contributed to a numeric reduction.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PyArr {
    /// numpy's `dtype.str` (native byte order): `<f8`, `<i4`, `|u1`, ...
    pub(crate) typestr: String,
    pub(crate) shape: Vec<i64>,
    pub(crate) data: PodVec<u8>,
}

/// The element-wise operation.
#[derive(Clone, Copy)]
enum Op {
    Sum,
    Product,
    Max,
    Min,
}

/// The dtypes reduced here: the dtype's kind and size, from `typestr`.
pub(crate) fn supported(typestr: &str) -> bool {
    kind(typestr).is_some()
}

fn kind(typestr: &str) -> Option<(u8, usize)> {
    let b = typestr.as_bytes();
    let order_ok = matches!(b.first(), Some(b'|' | b'='))
        || (cfg!(target_endian = "little") && b.first() == Some(&b'<'))
        || (cfg!(target_endian = "big") && b.first() == Some(&b'>'));
    if !order_ok || b.len() < 3 {
        return None;
    }
    let size: usize = typestr[2..].parse().ok()?;
    match (b[1], size) {
        (b'f', 4 | 8) | (b'i' | b'u', 1 | 2 | 4 | 8) => Some((b[1], size)),
        _ => None,
    }
}

trait Elem: bytemuck::Pod {
    fn apply(op: Op, a: Self, b: Self) -> Self;
}

macro_rules! int_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn apply(op: Op, a: Self, b: Self) -> Self {
                match op {
                    Op::Sum => a.wrapping_add(b),
                    Op::Product => a.wrapping_mul(b),
                    Op::Max => a.max(b),
                    Op::Min => a.min(b),
                }
            }
        }
    )*};
}
int_elem!(i8, i16, i32, i64, u8, u16, u32, u64);

macro_rules! float_elem {
    ($($t:ty),*) => {$(
        impl Elem for $t {
            fn apply(op: Op, a: Self, b: Self) -> Self {
                match op {
                    Op::Sum => a + b,
                    Op::Product => a * b,
                    // numpy.maximum / numpy.minimum: NaN wins.
                    Op::Max => if a.is_nan() || b.is_nan() { <$t>::NAN } else { a.max(b) },
                    Op::Min => if a.is_nan() || b.is_nan() { <$t>::NAN } else { a.min(b) },
                }
            }
        }
    )*};
}
float_elem!(f32, f64);

/// `a[i] = op(a[i], b[i])` over the elements of type `T` in the two byte runs.
fn fold_as<T: Elem>(op: Op, a: &mut [u8], b: &[u8]) {
    match (bytemuck::try_cast_slice_mut::<u8, T>(a), bytemuck::try_cast_slice::<u8, T>(b)) {
        (Ok(x), Ok(y)) => x.iter_mut().zip(y).for_each(|(x, y)| *x = T::apply(op, *x, *y)),
        _ => {
            // Not aligned for `T` (bytes from a message): through aligned copies.
            let n = a.len() / size_of::<T>();
            let mut x: Vec<T> = vec![T::zeroed(); n];
            let mut y: Vec<T> = vec![T::zeroed(); n];
            bytemuck::cast_slice_mut::<T, u8>(&mut x).copy_from_slice(&a[..n * size_of::<T>()]);
            bytemuck::cast_slice_mut::<T, u8>(&mut y).copy_from_slice(&b[..n * size_of::<T>()]);
            x.iter_mut().zip(&y).for_each(|(x, y)| *x = T::apply(op, *x, *y));
            a[..n * size_of::<T>()].copy_from_slice(bytemuck::cast_slice(&x));
        }
    }
}

fn combine(op: Op, mut a: PyArr, b: PyArr) -> PyArr {
    if a.typestr != b.typestr || a.shape != b.shape || a.data.len() != b.data.len() {
        panic!(
            "a numpy reduction got contributions of different dtypes or shapes ({} {:?} and {} {:?}): \
             every element must contribute the same dtype and shape",
            a.typestr, a.shape, b.typestr, b.shape
        );
    }
    let (k, size) = kind(&a.typestr).unwrap_or_else(|| panic!("dtype {} is not reduced natively", a.typestr));
    let n = a.shape.iter().try_fold(1usize, |n, &d| usize::try_from(d).ok().and_then(|d| n.checked_mul(d)));
    if n.and_then(|n| n.checked_mul(size)) != Some(a.data.len()) {
        panic!(
            "malformed numpy contribution: {} bytes for dtype {} and shape {:?}",
            a.data.len(),
            a.typestr,
            a.shape
        );
    }
    let x: &mut [u8] = &mut a.data;
    let y: &[u8] = &b.data;
    let mut fold = move || match (k, size) {
        (b'f', 8) => fold_as::<f64>(op, x, y),
        (b'f', 4) => fold_as::<f32>(op, x, y),
        (b'i', 8) => fold_as::<i64>(op, x, y),
        (b'i', 4) => fold_as::<i32>(op, x, y),
        (b'i', 2) => fold_as::<i16>(op, x, y),
        (b'i', 1) => fold_as::<i8>(op, x, y),
        (b'u', 8) => fold_as::<u64>(op, x, y),
        (b'u', 4) => fold_as::<u32>(op, x, y),
        (b'u', 2) => fold_as::<u16>(op, x, y),
        _ => fold_as::<u8>(op, x, y),
    };
    // A PE holds the GIL for its scheduler's turn: large arrays are combined without it
    // (the GIL's hand-over costs more than folding a small one).
    if b.data.len() >= NOGIL_MIN {
        crate::without_turn_gil(fold);
    } else {
        fold();
    }
    a
}

/// From how many bytes of data an array is combined without the GIL.
const NOGIL_MIN: usize = 16 << 10;

fn arr_sum(a: PyArr, b: PyArr) -> PyArr {
    combine(Op::Sum, a, b)
}
fn arr_product(a: PyArr, b: PyArr) -> PyArr {
    combine(Op::Product, a, b)
}
fn arr_max(a: PyArr, b: PyArr) -> PyArr {
    combine(Op::Max, a, b)
}
fn arr_min(a: PyArr, b: PyArr) -> PyArr {
    combine(Op::Min, a, b)
}

impl PyArr {
    /// The array as numpy's, over these bytes (no copy).
    pub(crate) fn into_py(self, py: pyo3::Python<'_>) -> pyo3::PyResult<pyo3::Bound<'_, pyo3::PyAny>> {
        crate::arrays::array_over(py, self.data.into_inner(), &self.typestr, &self.shape)
    }
}

/// The reducer of numpy arrays for a built-in numeric reducer's name.
pub(crate) fn arr_reducer(name: &str) -> Option<Reducer<PyArr>> {
    Some(match name {
        "sum" => Reducer::custom("python-ndarray-sum", arr_sum),
        "product" => Reducer::custom("python-ndarray-product", arr_product),
        "max" => Reducer::custom("python-ndarray-max", arr_max),
        "min" => Reducer::custom("python-ndarray-min", arr_min),
        _ => return None,
    })
}
