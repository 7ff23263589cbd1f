//! Messages between processes: how an [`Envelope`] becomes bytes when its destination
//! PE lives in another process, and back.
//!
//! Serialization is lazy: it happens here, in [`to_wire`], only once a message turns
//! out to leave the process; messages inside the process are moved and never come here.
//!
//! A wire message is a small header ([`WireHead`], bincode with fixed-width integers)
//! followed by the payload's own bytes (the arguments, a future's value, a partial
//! reduction), which run to the end of the frame. Keeping the payload out of the header
//! means a 64 MiB argument is serialized once, straight into the frame buffer.
//!
//! Where the payload's type is known from the message itself (entry-method arguments:
//! the registration table gives each entry method's argument codec) it is decoded when
//! the message arrives, before any PE sees it. Where only the consumer knows the type
//! (a future's value, a partial reduction, an allreduce result), the payload travels
//! as [`Encoded`] bytes and is decoded by the typed code that takes it.
//!
//! Codec: bincode 2 through serde (the `Payload` bound is serde's). DEPS.md measured
//! faster non-serde codecs (wincode, rkyv); they would need their own derive on every
//! user type, which the Charm4py-like API does not ask users for.

use std::any::Any;
use std::sync::Arc;

use charmrs_comm::transport::Tail;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::chare::registry::{self, EpId};
use crate::collection::{CollId, CreateSpec, Index, Kind, MapWire};
use crate::error::Error;
use crate::future::FutureId;
use crate::msg::{oob, Args, Envelope, Reply};
use crate::pe::{PeId, SysMsg};
use crate::qd::QdMsg;
use crate::reduction::{PartialMsg, RedKey, RedResult};

/// The codec's configuration: little-endian, fixed-width integers (cheaper to encode
/// and decode than varints; the bytes saved would not pay on the links we target).
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding()
}

/// The same for decoding, with a limit of 4 GiB (a frame's largest payload) on what one
/// value may claim: bincode allocates a string or vector before it reads it, so without
/// the limit a corrupted length would make the decoder ask for exabytes and abort the
/// process (found by the property test below); within it, an oversized claim is a
/// lazily mapped allocation that fails to fill and is freed. Encoding stays unlimited:
/// with a limit, bincode measures every value in a first pass (measured: +0.4 us per
/// message between processes), and what we encode is ours.
fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding().with_limit::<{ 1 << 32 }>()
}

/// Appends the serialization of `v` to `out`.
pub(crate) fn encode<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(v, out, config()).map(|_| ()).map_err(|e| match e {
        // A payload's own error message (bincode shows it quoted and escaped).
        bincode::error::EncodeError::OtherString(s) => s,
        e => e.to_string(),
    })
}

/// Decodes a `T` that must span all of `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (v, used) = decode_prefix::<T>(bytes)?;
    if used != bytes.len() {
        return Err(format!("{} bytes left over after the value", bytes.len() - used));
    }
    Ok(v)
}

/// Decodes a `T` from the start of `bytes`; returns it and the bytes it used.
fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), String> {
    bincode::serde::decode_from_slice::<T, _>(bytes, decode_config()).map_err(|e| match e {
        bincode::error::DecodeError::OtherString(s) => s,
        e => e.to_string(),
    })
}

/// A payload that crossed processes and is still bytes: decoded by the code that knows
/// its type (see the module doc).
pub(crate) struct Encoded(pub(crate) Box<[u8]>);

impl Encoded {
    /// Decodes the payload as a `T`, or says why it cannot be one.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T, String> {
        decode(&self.0)
    }
}

/// The argument codec of one entry method, made by `#[chare]` for its argument tuple.
pub struct ArgCodec {
    encode: fn(&dyn Any, &mut Vec<u8>) -> Result<(), String>,
    decode_owned: fn(&[u8]) -> Result<crate::msg::ArgBox, String>,
    decode_shared: fn(&[u8]) -> Result<SharedArgs, String>,
}

/// Arguments shared by the copies of a broadcast.
type SharedArgs = Arc<dyn Any + Send + Sync>;

impl ArgCodec {
    /// The codec of argument tuple `A`.
    pub const fn of<A: crate::Payload>() -> ArgCodec {
        ArgCodec {
            encode: encode_any::<A>,
            decode_owned: decode_owned::<A>,
            decode_shared: decode_shared::<A>,
        }
    }

    /// Serializes arguments held as `&dyn Any`.
    pub(crate) fn encode(&self, args: &dyn Any, out: &mut Vec<u8>) -> Result<(), String> {
        (self.encode)(args, out)
    }
}

fn encode_any<A: crate::Payload>(args: &dyn Any, out: &mut Vec<u8>) -> Result<(), String> {
    match args.downcast_ref::<A>() {
        Some(a) => encode(a, out),
        None => Err(format!("arguments are not a {}", std::any::type_name::<A>())),
    }
}

fn decode_owned<A: crate::Payload>(bytes: &[u8]) -> Result<crate::msg::ArgBox, String> {
    let a: A = decode(bytes)?;
    Ok(smallbox::smallbox!(a))
}

fn decode_shared<A: crate::Payload>(bytes: &[u8]) -> Result<SharedArgs, String> {
    Ok(Arc::new(decode::<A>(bytes)?))
}

/// The header of a message between processes; the payload follows it.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum WireHead {
    /// [`Envelope::Call`]; payload: the arguments.
    Call { coll: CollId, index: Index, ep: u32, reply: Reply },
    /// [`SysMsg::Forwarded`] (a call); payload: the arguments.
    Forwarded { coll: CollId, index: Index, ep: u32, reply: Reply },
    /// [`Envelope::Bcast`]; payload: the arguments.
    Bcast { coll: CollId, ep: u32, root: PeId, fwd: bool, reply: Reply },
    /// [`Envelope::SetFuture`] with a value; payload: the value.
    SetFuture { fut: FutureId },
    /// [`Envelope::SetFuture`] with an error; no payload.
    FailFuture { fut: FutureId, error: Error },
    /// [`SysMsg::Create`]; payload: the constructor's arguments.
    Create {
        coll: CollId,
        root: PeId,
        kind: WireKind,
        home: crate::chare::proxy::Home,
        ctor: u32,
        done: FutureId,
    },
    /// [`SysMsg::Reduce`]; payload: the partial result, or the `parts` of a
    /// [`PartialMsg::Raw`] one after the other (these are their lengths).
    Reduce { key: RedKey, from: crate::reduction::RedFrom, parts: Vec<u64> },
    /// [`SysMsg::AllReduce`]; payload: the result.
    AllReduce { key: RedKey, root: PeId, down: bool },
    /// [`SysMsg::Red`].
    Red(crate::reduction::RedSys),
    /// [`SysMsg::Mig`].
    Mig(crate::collection::migrate::MigMsg),
    /// [`SysMsg::Migrant`]; payload: the element's serialized state.
    Migrant { coll: CollId, index: Index, ctor: u32, meta: crate::collection::migrate::MetaWire },
    /// [`SysMsg::Lb`].
    Lb(crate::lb::LbMsg),
    /// [`SysMsg::Qd`].
    Qd(QdMsg),
    /// [`SysMsg::Section`].
    Section(crate::collection::section::SecMsg),
    /// [`SysMsg::Pool`].
    Pool(crate::pool::PoolMsg),
    /// [`SysMsg::Sparse`].
    Sparse(crate::collection::sparse::SparseMsg),
    /// [`SysMsg::Insert`]; payload: the constructor's arguments.
    Insert { coll: CollId, index: Index, ctor: u32, home: PeId },
    /// [`SysMsg::Exit`] with the job's exit code: the process ends.
    Exit(i32),
}

/// The shape of a collection on the wire.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum WireKind {
    Group,
    GroupOn(Vec<PeId>),
    Array { shape: Index, map: MapWire },
    Single(PeId),
    Sparse { dims: usize, map: MapWire },
}

/// A wire message: the destination PE and the envelope.
#[derive(Serialize, Deserialize, Debug)]
struct Routed {
    to: PeId,
    head: WireHead,
}

/// Why a message cannot go to another process (a bug or a payload serde refuses).
#[derive(Debug, thiserror::Error)]
#[error("cannot send {what} to PE {to} in another process: {why}")]
pub(crate) struct EncodeError {
    what: String,
    to: PeId,
    why: String,
}

/// Why bytes from another process are not a message.
#[derive(Debug, thiserror::Error)]
#[error("malformed message: {0}")]
pub(crate) struct DecodeError(pub(crate) String);

fn desc_of(ep: EpId) -> Result<&'static crate::chare::registry::EntryDesc, String> {
    registry::entry(ep).ok_or_else(|| format!("unknown entry method id {}", ep.0))
}

/// Serializes `env` for PE `to` after what `out` already holds (the transport's frame
/// header) and hands the result to `send`: the message, and the out-of-band runs that
/// follow it (see [`crate::msg::oob`]), valid during the call only.
///
/// Layout after the frame header: `n: u32` (how many runs), their `n` lengths (`u64`
/// each), the [`Routed`] header, the payload, then the `n` runs. Everything but the runs
/// comes first, so a receiver can decode the message while the runs are still being
/// written (a streamed rendezvous: see [`crate::msg::oob::streaming`]).
pub(crate) fn to_wire<R>(
    to: PeId,
    env: Envelope,
    mut out: Vec<u8>,
    send: impl FnOnce(Vec<u8>, &[&[u8]]) -> R,
) -> Result<R, EncodeError> {
    let fail = |what: &str, why: String| EncodeError { what: what.to_string(), to, why };
    let head = |out: &mut Vec<u8>, head: WireHead| {
        encode(&Routed { to, head }, out).map_err(|e| fail("a message header", e))
    };
    let base = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut runs = Vec::new();
    let mut args_out = |desc: &crate::chare::registry::EntryDesc, a: &dyn Any, out: &mut Vec<u8>| {
        let (r, set_aside) = oob::collecting(|| encode_args(desc, a, out));
        runs = set_aside;
        r
    };
    // A forwarded call travels as a call with its own header.
    let (env, forwarded) = match env {
        Envelope::Sys(SysMsg::Forwarded(inner)) => (*inner, true),
        env => (env, false),
    };
    match env {
        Envelope::Call { coll, index, ep, reply, args } => {
            let desc = desc_of(ep).map_err(|e| fail("a call", e))?;
            let h = if forwarded {
                WireHead::Forwarded { coll, index, ep: ep.0, reply }
            } else {
                WireHead::Call { coll, index, ep: ep.0, reply }
            };
            head(&mut out, h)?;
            let a: &dyn Any = match &args {
                Args::Owned(b) => &**b,
                Args::Shared(a) => &**a,
            };
            args_out(desc, a, &mut out).map_err(|e| fail(&format!("a call of {}", desc.name()), e))?;
        }
        Envelope::Bcast { coll, ep, root, fwd, reply, args } => {
            let desc = desc_of(ep).map_err(|e| fail("a broadcast", e))?;
            head(&mut out, WireHead::Bcast { coll, ep: ep.0, root, fwd, reply })?;
            args_out(desc, &*args, &mut out)
                .map_err(|e| fail(&format!("a broadcast of {}", desc.name()), e))?;
        }
        Envelope::SetFuture { fut, value } => match value {
            Ok(v) => {
                let Some(enc) = v.downcast_ref::<Encoded>() else {
                    return Err(fail("a future's value", "it was not serialized by its sender".into()));
                };
                head(&mut out, WireHead::SetFuture { fut })?;
                out.extend_from_slice(&enc.0);
            }
            Err(e) => {
                head(&mut out, WireHead::FailFuture { fut, error: *e })?;
            }
        },
        Envelope::Sys(m) => match m {
            SysMsg::Create { coll, root, spec } => {
                let kind = match &spec.kind {
                    Kind::Group => WireKind::Group,
                    Kind::GroupOn(pes) => WireKind::GroupOn(pes.to_vec()),
                    Kind::Single(p) => WireKind::Single(*p),
                    Kind::Array { shape, wire, .. } => WireKind::Array { shape: *shape, map: wire.clone() },
                    Kind::Section => {
                        return Err(fail("a creation", "sections are not created as collections".into()))
                    }
                    Kind::Sparse { dims, wire, .. } => WireKind::Sparse { dims: *dims, map: wire.clone() },
                };
                let ctor = spec.ctor.id().0;
                let sparse = matches!(kind, WireKind::Sparse { .. });
                head(
                    &mut out,
                    WireHead::Create { coll, root, kind, home: spec.home, ctor, done: spec.done },
                )?;
                // A sparse array is created without constructor arguments.
                if !sparse {
                    args_out(spec.ctor, &*spec.args, &mut out).map_err(|e| {
                        fail(&format!("the constructor arguments of {}", spec.ctor.chare()), e)
                    })?;
                }
            }
            SysMsg::Reduce { key, partial, from } => {
                head(&mut out, WireHead::Reduce { key, from, parts: partial.part_lens() })?;
                partial.encode(&mut out).map_err(|e| fail("a partial reduction", e))?;
            }
            SysMsg::AllReduce { key, root, result, down } => {
                let enc = result.encode().map_err(|e| fail("an allreduce result", e))?;
                head(&mut out, WireHead::AllReduce { key, root, down })?;
                out.extend_from_slice(&enc.0);
            }
            SysMsg::Red(m) => {
                head(&mut out, WireHead::Red(m))?;
            }
            SysMsg::Mig(m) => {
                head(&mut out, WireHead::Mig(m))?;
            }
            SysMsg::Lb(m) => {
                head(&mut out, WireHead::Lb(m))?;
            }
            SysMsg::Migrant(m) => {
                let h = WireHead::Migrant {
                    coll: m.key.coll,
                    index: m.key.index,
                    ctor: m.ctor.id().0,
                    meta: m.meta,
                };
                head(&mut out, h)?;
                out.extend_from_slice(&m.state);
            }
            SysMsg::Qd(q) => {
                head(&mut out, WireHead::Qd(q))?;
            }
            SysMsg::Section(m) => {
                head(&mut out, WireHead::Section(m))?;
            }
            SysMsg::Pool(m) => {
                head(&mut out, WireHead::Pool(m))?;
            }
            SysMsg::Sparse(m) => {
                head(&mut out, WireHead::Sparse(m))?;
            }
            SysMsg::Insert { coll, index, ctor, args, home } => {
                head(&mut out, WireHead::Insert { coll, index, ctor: ctor.id().0, home })?;
                args_out(ctor, &*args, &mut out)
                    .map_err(|e| fail(&format!("the constructor arguments of {}", ctor.chare()), e))?;
            }
            SysMsg::Exit => {
                head(&mut out, WireHead::Exit(0))?;
            }
            SysMsg::Forwarded(_) => unreachable!("taken apart above"),
            SysMsg::Wake(_) | SysMsg::Run(_) | SysMsg::InsertLater { .. } | SysMsg::Migrate { .. } => {
                return Err(fail("a message", "wake-ups and closures never leave their process".into()));
            }
        },
    };
    if runs.is_empty() {
        return Ok(send(out, &[]));
    }
    let n =
        u32::try_from(runs.len()).map_err(|_| fail("a message", "too many out-of-band buffers".into()))?;
    out[base..base + 4].copy_from_slice(&n.to_le_bytes());
    // The table goes before the header (moving the header, which is small: the large
    // byte runs are the ones set aside).
    let lens = runs.iter().flat_map(|r| (r.bytes().len() as u64).to_le_bytes());
    out.splice(base + 4..base + 4, lens);
    let parts: Vec<&[u8]> = runs.iter().map(|r| r.bytes()).collect();
    Ok(send(out, &parts))
}

/// The exit message for another process, carrying the job's exit code.
pub(crate) fn exit_to_wire(to: PeId, code: i32, out: &mut Vec<u8>) {
    out.extend_from_slice(&0u32.to_le_bytes());
    encode(&Routed { to, head: WireHead::Exit(code) }, out).expect("an exit message always encodes");
}

fn encode_args(
    desc: &crate::chare::registry::EntryDesc,
    a: &dyn Any,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match a.downcast_ref::<Encoded>() {
        // Forwarded as it came (a broadcast or creation passing through this process).
        Some(enc) => {
            out.extend_from_slice(&enc.0);
            Ok(())
        }
        None => desc.codec().encode(a, out),
    }
}

/// What a wire message turns into on arrival.
pub(crate) enum Arrived {
    /// An envelope for PE `to` of this process.
    Msg(PeId, Envelope),
    /// The job ends with this code.
    Exit(i32),
}

/// Splits a message into its header and payload, and its out-of-band runs (see
/// [`to_wire`] for the layout): at the end of `bytes`, or, if the message has a tail
/// of `tail` bytes still arriving, in it (then the runs are all of the tail).
fn split_runs(bytes: &[u8], tail: Option<usize>) -> Result<(&[u8], Vec<oob::RunIn<'_>>), DecodeError> {
    let bad = |why: &str| DecodeError(format!("out-of-band buffers: {why}"));
    let (n, rest) =
        bytes.split_first_chunk::<4>().ok_or_else(|| bad("a message shorter than its run count"))?;
    let n = u32::from_le_bytes(*n) as usize;
    let table =
        n.checked_mul(8).filter(|&t| t <= rest.len()).ok_or_else(|| bad("a truncated length table"))?;
    let (lens, rest) = rest.split_at(table);
    // The runs' room: the end of `rest`, or the tail.
    let room = tail.unwrap_or(rest.len());
    let mut total = 0usize;
    let lens: Vec<usize> = lens
        .chunks_exact(8)
        .map(|l| {
            let len = usize::try_from(u64::from_le_bytes(l.try_into().expect("8 bytes"))).ok();
            total = len.and_then(|l| total.checked_add(l)).filter(|&t| t <= room)?;
            len
        })
        .collect::<Option<_>>()
        .ok_or_else(|| bad("runs longer than the message"))?;
    if let Some(tail) = tail {
        if total != tail {
            return Err(bad(&format!("runs of {total} bytes in a tail of {tail}")));
        }
        let mut at = 0;
        let runs = lens
            .into_iter()
            .map(|len| {
                at += len;
                oob::RunIn::Tail { at: at - len, len }
            })
            .collect();
        return Ok((rest, runs));
    }
    let (body, mut end) = rest.split_at(rest.len() - total);
    let runs = lens
        .into_iter()
        .map(|len| {
            let (run, after) = end.split_at(len);
            end = after;
            oob::RunIn::Bytes(run)
        })
        .collect();
    Ok((body, runs))
}

/// Decodes a message from another process. Argument payloads are decoded here with the
/// entry method's codec; other payloads stay [`Encoded`] for their typed consumer.
pub(crate) fn from_wire(bytes: &[u8]) -> Result<Arrived, DecodeError> {
    from_wire_with(bytes, None)
}

/// [`from_wire`] of a message whose out-of-band runs are `tail`, still arriving: they
/// are copied out as they come (see [`charmrs_comm::transport::Receiver::deliver_streamed`]).
pub(crate) fn from_wire_streamed(bytes: &[u8], tail: &dyn Tail) -> Result<Arrived, DecodeError> {
    from_wire_with(bytes, Some(tail))
}

fn from_wire_with(bytes: &[u8], tail: Option<&dyn Tail>) -> Result<Arrived, DecodeError> {
    let (bytes, runs) = split_runs(bytes, tail.map(|t| t.len()))?;
    let (routed, used) = decode_prefix::<Routed>(bytes).map_err(|e| DecodeError(format!("header: {e}")))?;
    let payload = &bytes[used..];
    let to = routed.to;
    let args_of = |ep: u32, what: &str| -> Result<&'static crate::chare::registry::EntryDesc, DecodeError> {
        desc_of(EpId(ep)).map_err(|e| DecodeError(format!("{what}: {e}")))
    };
    let bad_args = |desc: &crate::chare::registry::EntryDesc, e: String| {
        DecodeError(format!("arguments of {} do not decode: {e}", desc.name()))
    };
    let env = match routed.head {
        WireHead::Call { coll, index, ep, reply } | WireHead::Forwarded { coll, index, ep, reply } => {
            let forwarded = matches!(routed.head, WireHead::Forwarded { .. });
            let desc = args_of(ep, "call")?;
            let args = oob::with_runs(&runs, tail, || (desc.codec().decode_owned)(payload))
                .map_err(|e| bad_args(desc, e))?;
            let call = Envelope::Call { coll, index, ep: EpId(ep), reply, args: Args::Owned(args) };
            if forwarded {
                Envelope::Sys(SysMsg::Forwarded(Box::new(call)))
            } else {
                call
            }
        }
        WireHead::Bcast { coll, ep, root, fwd, reply } => {
            let desc = args_of(ep, "broadcast")?;
            let args = oob::with_runs(&runs, tail, || (desc.codec().decode_shared)(payload))
                .map_err(|e| bad_args(desc, e))?;
            Envelope::Bcast { coll, ep: EpId(ep), root, fwd, reply, args }
        }
        WireHead::SetFuture { fut } => {
            let v: crate::msg::AnyBox = smallbox::smallbox!(Encoded(payload.into()));
            Envelope::SetFuture { fut, value: Ok(v) }
        }
        WireHead::FailFuture { fut, error } => Envelope::SetFuture { fut, value: Err(Box::new(error)) },
        WireHead::Create { coll, root, kind, home, ctor, done } => {
            let desc = args_of(ctor, "creation")?;
            let args: SharedArgs = if matches!(kind, WireKind::Sparse { .. }) {
                Arc::new(())
            } else {
                oob::with_runs(&runs, tail, || (desc.codec().decode_shared)(payload))
                    .map_err(|e| bad_args(desc, e))?
            };
            let kind = match kind {
                WireKind::Group => Kind::Group,
                WireKind::GroupOn(pes) => {
                    if pes.is_empty() || !pes.windows(2).all(|w| w[0] < w[1]) {
                        return Err(DecodeError("a constrained group's PEs are not sorted".into()));
                    }
                    Kind::GroupOn(pes.into())
                }
                WireKind::Single(p) => Kind::Single(p),
                WireKind::Array { shape, map } => {
                    let m = map.decode().map_err(|e| DecodeError(format!("array map: {e}")))?;
                    Kind::Array { shape, map: m, wire: map }
                }
                WireKind::Sparse { dims, map } => {
                    if !(1..=crate::MAX_DIMS).contains(&dims) {
                        return Err(DecodeError(format!("a sparse array of {dims} dimensions")));
                    }
                    let m = map.decode().map_err(|e| DecodeError(format!("array map: {e}")))?;
                    Kind::Sparse { dims, map: m, wire: map }
                }
            };
            let spec = Arc::new(CreateSpec { kind, home, ctor: desc, args, done });
            Envelope::Sys(SysMsg::Create { coll, root, spec })
        }
        WireHead::Reduce { key, from, parts } => {
            let partial = if parts.is_empty() {
                PartialMsg::Encoded(payload.into())
            } else {
                let mut rest = payload;
                let mut raw = Vec::with_capacity(parts.len());
                for len in parts {
                    let len = usize::try_from(len).ok().filter(|&l| l <= rest.len()).ok_or_else(|| {
                        DecodeError("a partial reduction shorter than its parts say".into())
                    })?;
                    let (part, tail) = rest.split_at(len);
                    raw.push(part.into());
                    rest = tail;
                }
                PartialMsg::Raw(raw)
            };
            Envelope::Sys(SysMsg::Reduce { key, partial, from })
        }
        WireHead::AllReduce { key, root, down } => {
            let result: RedResult = Arc::new(Encoded(payload.into()));
            Envelope::Sys(SysMsg::AllReduce { key, root, result, down })
        }
        WireHead::Red(m) => Envelope::Sys(SysMsg::Red(m)),
        WireHead::Mig(m) => Envelope::Sys(SysMsg::Mig(m)),
        WireHead::Lb(m) => Envelope::Sys(SysMsg::Lb(m)),
        WireHead::Migrant { coll, index, ctor, meta } => {
            let desc = args_of(ctor, "migration")?;
            if desc.migrate().is_none() {
                return Err(DecodeError(format!(
                    "a migrating element of {}, which is not migratable",
                    desc.chare()
                )));
            }
            let m = crate::collection::migrate::Migrant {
                key: crate::collection::ElemKey { coll, index },
                ctor: desc,
                meta,
                state: payload.to_vec(),
            };
            Envelope::Sys(SysMsg::Migrant(Box::new(m)))
        }
        WireHead::Qd(q) => Envelope::Sys(SysMsg::Qd(q)),
        WireHead::Section(m) => Envelope::Sys(SysMsg::Section(m)),
        WireHead::Pool(m) => Envelope::Sys(SysMsg::Pool(m)),
        WireHead::Sparse(m) => Envelope::Sys(SysMsg::Sparse(m)),
        WireHead::Insert { coll, index, ctor, home } => {
            let desc = args_of(ctor, "insertion")?;
            let args = oob::with_runs(&runs, tail, || (desc.codec().decode_shared)(payload))
                .map_err(|e| bad_args(desc, e))?;
            Envelope::Sys(SysMsg::Insert { coll, index, ctor: desc, args, home })
        }
        WireHead::Exit(code) => return Ok(Arrived::Exit(code)),
    };
    Ok(Arrived::Msg(to, env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn routed(head: WireHead, payload: &[u8]) -> Vec<u8> {
        let mut out = 0u32.to_le_bytes().to_vec();
        encode(&Routed { to: PeId(3), head }, &mut out).expect("encodes");
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn payload_free_messages_round_trip() {
        let fut = FutureId { pe: PeId(1), seq: 9 };
        match from_wire(&routed(WireHead::Qd(QdMsg::Wave(4)), &[])) {
            Ok(Arrived::Msg(PeId(3), Envelope::Sys(SysMsg::Qd(QdMsg::Wave(4))))) => {}
            _ => panic!("a QD wave"),
        }
        match from_wire(&routed(WireHead::Exit(7), &[])) {
            Ok(Arrived::Exit(7)) => {}
            _ => panic!("an exit"),
        }
        let err = Error::Usage("no".into());
        match from_wire(&routed(WireHead::FailFuture { fut, error: err.clone() }, &[])) {
            Ok(Arrived::Msg(_, Envelope::SetFuture { fut: f, value: Err(e) })) => {
                assert_eq!((f, *e), (fut, err));
            }
            _ => panic!("a failed future"),
        }
        // A value travels as bytes, decoded by whoever knows its type.
        let mut v = Vec::new();
        encode(&(1.5f64, 7u32), &mut v).expect("encodes");
        match from_wire(&routed(WireHead::SetFuture { fut }, &v)) {
            Ok(Arrived::Msg(_, Envelope::SetFuture { value: Ok(b), .. })) => {
                let enc = b.downcast_ref::<Encoded>().expect("still bytes");
                assert_eq!(enc.decode::<(f64, u32)>(), Ok((1.5, 7)));
                assert!(enc.decode::<String>().is_err(), "another type is an error, not garbage");
            }
            _ => panic!("a future's value"),
        }
    }

    #[test]
    fn a_call_for_an_unknown_entry_method_is_an_error() {
        let head = WireHead::Call {
            coll: CollId { pe: 0, seq: 0 },
            index: Index::from(0),
            ep: u32::MAX - 1,
            reply: Reply::None,
        };
        let e = from_wire(&routed(head, &[1, 2, 3])).err().expect("refused");
        assert!(e.to_string().contains("unknown entry method id"), "{e}");
    }

    #[test]
    fn bad_migration_and_reduction_messages_are_errors() {
        let coll = CollId { pe: 0, seq: 0 };
        // A migrating element of an unknown chare type.
        let meta: crate::collection::migrate::MetaWire = decode(&[0u8; 22]).expect("a MetaWire");
        let head = WireHead::Migrant { coll, index: Index::from(0), ctor: u32::MAX - 1, meta };
        let e = from_wire(&routed(head, &[1, 2, 3])).err().expect("refused");
        assert!(e.to_string().contains("migration: unknown entry method id"), "{e}");
        // Serialized partials that claim more bytes than the message has.
        let key = RedKey { coll, stream: crate::reduction::Stream::User(0) };
        let head = WireHead::Reduce { key, from: Default::default(), parts: vec![2, 9] };
        let e = from_wire(&routed(head, &[1, 2, 3])).err().expect("refused");
        assert!(e.to_string().contains("shorter than its parts say"), "{e}");
        let head = WireHead::Reduce { key, from: Default::default(), parts: vec![1, 2] };
        match from_wire(&routed(head, &[1, 2, 3])) {
            Ok(Arrived::Msg(_, Envelope::Sys(SysMsg::Reduce { partial: PartialMsg::Raw(p), .. }))) => {
                assert_eq!(p, vec![Box::from(&[1u8][..]), Box::from(&[2u8, 3][..])]);
            }
            _ => panic!("a partial of two parts"),
        }
    }

    #[test]
    fn a_bad_out_of_band_table_is_an_error() {
        let whole = routed(WireHead::Qd(QdMsg::Wave(1)), &[]);
        let with = |n: u32, lens: &[u64]| {
            let mut m = n.to_le_bytes().to_vec();
            m.extend(lens.iter().flat_map(|l| l.to_le_bytes()));
            m.extend_from_slice(&whole[4..]);
            m
        };
        for (n, lens) in [(1u32, &[1u64 << 40][..]), (u32::MAX, &[]), (1, &[u64::MAX])] {
            let e = from_wire(&with(n, lens)).err().expect("refused");
            assert!(e.to_string().contains("out-of-band buffers"), "{e}");
        }
        // A table that claims too many runs eats into the header: an error too.
        assert!(from_wire(&with(3, &[1, 1])).is_err());
        // A well-formed table whose run is taken from the end of the message.
        match from_wire(&with(1, &[0])) {
            Ok(Arrived::Msg(PeId(3), Envelope::Sys(SysMsg::Qd(QdMsg::Wave(1))))) => {}
            _ => panic!("a QD wave with an empty run"),
        }
    }

    proptest! {
        /// Bytes from a peer that are not a message (random, or a real one cut short)
        /// give an error and never a panic.
        #[test]
        fn garbage_and_truncated_messages_are_errors(bytes in proptest::collection::vec(any::<u8>(), 0..256), cut in 0usize..64) {
            let _ = from_wire(&bytes);
            let whole = routed(WireHead::Qd(QdMsg::Reply { wave: 1, sent: 2, processed: 3 }), &[]);
            let cut = cut.min(whole.len().saturating_sub(1));
            prop_assert!(from_wire(&whole[..cut]).is_err());
        }
    }
}
