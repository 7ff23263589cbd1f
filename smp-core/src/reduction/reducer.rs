//! Reducers: the built-in ones of the Charm4py manual (on scalars and element-wise on
//! vectors) and user-defined ones.

use std::marker::PhantomData;

use crate::msg::Payload;
use crate::Index;

/// Contributions combined so far.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(bound(serialize = "T: serde::Serialize", deserialize = "T: serde::de::DeserializeOwned"))]
pub(crate) enum Acc<T> {
    /// Folded into one value.
    One(T),
    /// Kept with their element index (gather).
    Gathered(Vec<(Index, T)>),
    /// Nothing to keep (nop).
    Nothing,
}

/// How contributions combine.
pub(crate) enum Op<T> {
    /// Associative fold that may fail (e.g. vectors of different lengths).
    Fold(fn(T, T) -> Result<T, String>),
    /// A user's associative fold.
    Custom(fn(T, T) -> T),
    /// Keep all, ordered by index.
    Gather,
    /// Keep nothing: a barrier.
    Nop,
}

impl<T> Clone for Op<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Op<T> {}

/// A reduction operation from contributions `T` to a result `R` (Charm4py's `Reducer`).
///
/// ```
/// use charmrs::Reducer;
/// let _sum = Reducer::<f64>::sum();
/// let _max = Reducer::<Vec<i64>>::max();            // element-wise
/// let _all = Reducer::<u32, Vec<u32>>::gather();    // ordered by element index
/// let _bar = Reducer::nop();                        // a barrier
/// let _gcd = Reducer::<u64>::custom("gcd", |a, b| if b == 0 { a } else { gcd(b, a % b) });
/// fn gcd(a: u64, b: u64) -> u64 { if b == 0 { a } else { gcd(b, a % b) } }
/// ```
pub struct Reducer<T, R = T> {
    pub(crate) name: &'static str,
    pub(crate) op: Op<T>,
    pub(crate) finish: fn(Acc<T>) -> Result<R, String>,
    _r: PhantomData<fn() -> R>,
}

impl<T, R> Clone for Reducer<T, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, R> Copy for Reducer<T, R> {}

impl<T, R> Reducer<T, R> {
    /// The reducer's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Combines two partial results.
    pub(crate) fn merge(&self, a: Acc<T>, b: Acc<T>) -> Result<Acc<T>, String> {
        Ok(match (a, b) {
            (Acc::Nothing, x) | (x, Acc::Nothing) => x,
            (Acc::One(x), Acc::One(y)) => Acc::One(match self.op {
                Op::Fold(f) => f(x, y)?,
                Op::Custom(f) => f(x, y),
                Op::Gather | Op::Nop => return Err("reducer mismatch".into()),
            }),
            (Acc::Gathered(mut x), Acc::Gathered(y)) => {
                x.extend(y);
                Acc::Gathered(x)
            }
            _ => return Err(format!("contributions of different kinds in one {} reduction", self.name)),
        })
    }

    /// One contribution, as a partial result.
    pub(crate) fn lift(&self, index: Index, v: T) -> Acc<T> {
        match self.op {
            Op::Gather => Acc::Gathered(vec![(index, v)]),
            Op::Nop => Acc::Nothing,
            Op::Fold(_) | Op::Custom(_) => Acc::One(v),
        }
    }
}

fn finish_one<T>(acc: Acc<T>) -> Result<T, String> {
    match acc {
        Acc::One(v) => Ok(v),
        _ => Err("reduction with no contribution".into()),
    }
}

fn finish_gather<T>(acc: Acc<T>) -> Result<Vec<T>, String> {
    match acc {
        Acc::Gathered(mut v) => {
            v.sort_by_key(|a| a.0);
            Ok(v.into_iter().map(|(_, x)| x).collect())
        }
        Acc::Nothing => Ok(Vec::new()),
        Acc::One(_) => Err("gather got a folded value".into()),
    }
}

fn finish_nop(_: Acc<()>) -> Result<(), String> {
    Ok(())
}

impl<T: Payload> Reducer<T> {
    const fn fold(name: &'static str, f: fn(T, T) -> Result<T, String>) -> Self {
        Reducer { name, op: Op::Fold(f), finish: finish_one::<T>, _r: PhantomData }
    }

    /// A user-defined reducer: `f` must be associative and commutative (contributions
    /// combine in tree order). `name` identifies it across processes.
    pub fn custom(name: &'static str, f: fn(T, T) -> T) -> Self {
        Reducer { name, op: Op::Custom(f), finish: finish_one::<T>, _r: PhantomData }
    }
}

impl<T: Numeric> Reducer<T> {
    /// Sum (element-wise on vectors).
    pub fn sum() -> Self {
        Self::fold("sum", T::add)
    }
    /// Product (element-wise on vectors).
    pub fn product() -> Self {
        Self::fold("product", T::mul)
    }
    /// Maximum (element-wise on vectors).
    pub fn max() -> Self {
        Self::fold("max", T::max)
    }
    /// Minimum (element-wise on vectors).
    pub fn min() -> Self {
        Self::fold("min", T::min)
    }
}

impl<T: Logical> Reducer<T> {
    /// Logical and (element-wise on vectors of bools).
    pub fn logical_and() -> Self {
        Self::fold("logical_and", T::and)
    }
    /// Logical or.
    pub fn logical_or() -> Self {
        Self::fold("logical_or", T::or)
    }
    /// Logical xor.
    pub fn logical_xor() -> Self {
        Self::fold("logical_xor", T::xor)
    }
}

impl<T: Bitwise> Reducer<T> {
    /// Bitwise and (element-wise on vectors).
    pub fn bitwise_and() -> Self {
        Self::fold("bitwise_and", T::band)
    }
    /// Bitwise or.
    pub fn bitwise_or() -> Self {
        Self::fold("bitwise_or", T::bor)
    }
    /// Bitwise xor.
    pub fn bitwise_xor() -> Self {
        Self::fold("bitwise_xor", T::bxor)
    }
}

impl<T: Payload> Reducer<T, Vec<T>> {
    /// Every contribution, in a vector ordered by the contributors' indexes.
    pub fn gather() -> Self {
        Reducer { name: "gather", op: Op::Gather, finish: finish_gather::<T>, _r: PhantomData }
    }
}

impl Reducer<(), ()> {
    /// No data: the reduction completes when every element contributed (a barrier).
    pub fn nop() -> Self {
        Reducer { name: "nop", op: Op::Nop, finish: finish_nop, _r: PhantomData }
    }
}

/// Values `sum`, `product`, `max` and `min` apply to. Integer overflow is an error.
pub trait Numeric: Payload {
    /// `a + b`.
    fn add(a: Self, b: Self) -> Result<Self, String>;
    /// `a * b`.
    fn mul(a: Self, b: Self) -> Result<Self, String>;
    /// The larger.
    fn max(a: Self, b: Self) -> Result<Self, String>;
    /// The smaller.
    fn min(a: Self, b: Self) -> Result<Self, String>;
}

/// Values the logical reducers apply to.
pub trait Logical: Payload {
    /// And.
    fn and(a: Self, b: Self) -> Result<Self, String>;
    /// Or.
    fn or(a: Self, b: Self) -> Result<Self, String>;
    /// Xor.
    fn xor(a: Self, b: Self) -> Result<Self, String>;
}

/// Values the bitwise reducers apply to.
pub trait Bitwise: Payload {
    /// `a & b`.
    fn band(a: Self, b: Self) -> Result<Self, String>;
    /// `a | b`.
    fn bor(a: Self, b: Self) -> Result<Self, String>;
    /// `a ^ b`.
    fn bxor(a: Self, b: Self) -> Result<Self, String>;
}

macro_rules! int_impls {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            fn add(a: Self, b: Self) -> Result<Self, String> { a.checked_add(b).ok_or_else(|| format!("{} overflow in sum", stringify!($t))) }
            fn mul(a: Self, b: Self) -> Result<Self, String> { a.checked_mul(b).ok_or_else(|| format!("{} overflow in product", stringify!($t))) }
            fn max(a: Self, b: Self) -> Result<Self, String> { Ok(Ord::max(a, b)) }
            fn min(a: Self, b: Self) -> Result<Self, String> { Ok(Ord::min(a, b)) }
        }
        impl Bitwise for $t {
            fn band(a: Self, b: Self) -> Result<Self, String> { Ok(a & b) }
            fn bor(a: Self, b: Self) -> Result<Self, String> { Ok(a | b) }
            fn bxor(a: Self, b: Self) -> Result<Self, String> { Ok(a ^ b) }
        }
    )*};
}
int_impls!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

macro_rules! float_impls {
    ($($t:ty),*) => {$(
        impl Numeric for $t {
            fn add(a: Self, b: Self) -> Result<Self, String> { Ok(a + b) }
            fn mul(a: Self, b: Self) -> Result<Self, String> { Ok(a * b) }
            fn max(a: Self, b: Self) -> Result<Self, String> { Ok(a.max(b)) }
            fn min(a: Self, b: Self) -> Result<Self, String> { Ok(a.min(b)) }
        }
    )*};
}
float_impls!(f32, f64);

impl Logical for bool {
    fn and(a: Self, b: Self) -> Result<Self, String> {
        Ok(a && b)
    }
    fn or(a: Self, b: Self) -> Result<Self, String> {
        Ok(a || b)
    }
    fn xor(a: Self, b: Self) -> Result<Self, String> {
        Ok(a ^ b)
    }
}

fn zip<T>(a: Vec<T>, b: Vec<T>, f: fn(T, T) -> Result<T, String>) -> Result<Vec<T>, String> {
    if a.len() != b.len() {
        return Err(format!("element-wise reduction of vectors of lengths {} and {}", a.len(), b.len()));
    }
    a.into_iter().zip(b).map(|(x, y)| f(x, y)).collect()
}

impl<T: Numeric> Numeric for Vec<T> {
    fn add(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::add)
    }
    fn mul(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::mul)
    }
    fn max(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::max)
    }
    fn min(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::min)
    }
}

impl<T: Logical> Logical for Vec<T> {
    fn and(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::and)
    }
    fn or(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::or)
    }
    fn xor(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::xor)
    }
}

impl<T: Bitwise> Bitwise for Vec<T> {
    fn band(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::band)
    }
    fn bor(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::bor)
    }
    fn bxor(a: Self, b: Self) -> Result<Self, String> {
        zip(a, b, T::bxor)
    }
}
