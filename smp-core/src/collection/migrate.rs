//! Migration of array elements between PEs (and processes), with nothing lost,
//! duplicated or reordered.
//!
//! **Homes.** Every element has a *home*: for a dense array the PE its map placed it
//! on, for a sparse array the PE it was inserted on (calls reach that PE through the
//! index's hash home, see `collection::sparse`). Senders always address the home
//! (they need no location table, and the fast path of an element that never moved is
//! unchanged). The home runs the call if the element is
//! there, and otherwise forwards it to where the element lives, or keeps it while the
//! element is in transit. Each home knows where its migrated elements are
//! (`CollInfo::locs`).
//!
//! **Moving an element from PE A to PE B** (A is not its home H):
//! 1. A sends `Moving` to H. H starts keeping the element's messages and answers `Ack`.
//!    Everything H forwarded to A before reached A before the `Ack` (messages between
//!    two PEs stay in order), so A runs them first.
//! 2. On the `Ack`, A packs the element (serde) and sends it to B, then the messages
//!    still waiting for a `when` condition.
//! 3. B unpacks it, runs its `migrated` hook, and sends `Arrived` to H, which forwards
//!    what it kept, in order, and from then on forwards to B.
//!
//! When A is the home, step 1 is local; when B is the home, B runs what it kept itself.
//! A call from one sender to one element thus always travels sender → H (→ the
//! element's PE), and H handles them in order: per-sender order holds across moves.
//!
//! **Collectives keep their membership.** A broadcast reaches each element through its
//! home (a migrated element gets it as a forwarded call), and a migrated element's
//! contributions go to its home PE, where they count as that PE's own: the reduction
//! tree over the home PEs never changes (see `reduction::contribute_away`).
//!
//! Not supported (refused with a clear message): migrating elements of groups and
//! single chares, members of sections (as in Charm4py), and elements with an `async`
//! method suspended (its task holds the element).

use std::cell::RefCell;
use std::rc::Rc;

use rustc_hash::FxHashMap as HashMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::chare::invoke::{fatal, Invoke, Target};
use crate::chare::proxy::Home;
use crate::chare::registry::EntryDesc;
use crate::chare::{Chare, Ctx, ElemMeta, Slot};
use crate::collection::{AnyElem, CollId, CollInfo, ElemEntry, ElemKey, Index, Kind};
use crate::msg::{Args, Envelope, Reply};
use crate::pe::{PeId, PeLocal, SysMsg};

/// Rebuilds an element from its serialized state.
type UnpackFn = fn(&[u8], ElemMeta) -> Result<Rc<dyn AnyElem>, String>;

/// How the elements of a migratable chare type are packed and unpacked (made by
/// `#[chare(migratable)]`).
#[derive(Clone, Copy)]
pub struct MigrateFns {
    pack: fn(&dyn AnyElem) -> Result<Vec<u8>, String>,
    unpack: UnpackFn,
    migrated: Option<&'static EntryDesc>,
    resume: Option<&'static EntryDesc>,
}

impl MigrateFns {
    /// The functions of chare type `C`; `migrated` is its entry method run after each
    /// move, `resume` the one run after a load-balancing step (`resume_from_sync`).
    pub const fn of<C: Chare + Serialize + DeserializeOwned>(
        migrated: Option<&'static EntryDesc>,
        resume: Option<&'static EntryDesc>,
    ) -> MigrateFns {
        MigrateFns { pack: pack::<C>, unpack: unpack::<C>, migrated, resume }
    }

    /// The entry method run on each element after a load-balancing step.
    pub(crate) fn resume(&self) -> Option<&'static EntryDesc> {
        self.resume
    }
}

fn pack<C: Chare + Serialize>(elem: &dyn AnyElem) -> Result<Vec<u8>, String> {
    let slot = elem.as_any().downcast_ref::<Slot<C>>().ok_or("an element of another chare type")?;
    let mut out = Vec::new();
    crate::msg::wire::encode(&*slot.state.borrow(), &mut out)?;
    Ok(out)
}

fn unpack<C: Chare + DeserializeOwned>(bytes: &[u8], meta: ElemMeta) -> Result<Rc<dyn AnyElem>, String> {
    let state: C = crate::msg::wire::decode(bytes)?;
    Ok(Rc::new(Slot { ctx: Ctx::<C>::new(meta), state: RefCell::new(state) }))
}

/// Where a home PE's migrated element is.
pub(crate) enum Loc {
    /// Lives on this PE.
    At(PeId),
    /// In transit: its messages, kept in arrival order.
    Moving(Vec<Envelope>),
}

/// The messages of the migration protocol (see the module doc).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum MigMsg {
    /// To the home: the element is about to leave `from`.
    Moving { coll: CollId, index: Index, from: PeId },
    /// From the home: nothing more for the element will come; ship it.
    Ack { coll: CollId, index: Index },
    /// To the home: the element now lives on `at`.
    Arrived { coll: CollId, index: Index, at: PeId },
}

/// A PE's migrations in progress.
#[derive(Default)]
pub(crate) struct MigState {
    /// Elements waiting for their home's `Ack`, where they go, and whether the load
    /// balancer moves them.
    leaving: RefCell<HashMap<ElemKey, (PeId, bool)>>,
    /// Elements that arrived here, and that left.
    pub(crate) arrived: std::cell::Cell<u64>,
    pub(crate) left: std::cell::Cell<u64>,
}

/// A packed element on its way (never dispatched as is: [`on_migrant`] unpacks it).
pub(crate) struct Migrant {
    pub(crate) key: ElemKey,
    pub(crate) ctor: &'static EntryDesc,
    pub(crate) meta: MetaWire,
    pub(crate) state: Vec<u8>,
}

/// The runtime's bookkeeping of an element that travels with it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct MetaWire {
    red_seq: u32,
    sync_epoch: u32,
    load: u64,
    migratable: bool,
    /// Moved by the load balancer (its destination counts it).
    lb: bool,
    /// Its home PE.
    home: PeId,
}

/// Why an element cannot migrate, if it cannot.
fn refusal(pe: &PeLocal, info: &CollInfo, key: &ElemKey, elem: &Rc<dyn AnyElem>) -> Option<String> {
    let chare = elem.ctor().chare();
    if !matches!(info.kind, Kind::Array { .. } | Kind::Sparse { .. }) {
        return Some(format!("{chare}: only elements of arrays migrate"));
    }
    if elem.ctor().migrate().is_none() {
        return Some(format!("{chare} is not migratable: declare it with #[chare(migratable)]"));
    }
    // The table's reference and the caller's: more means a suspended task holds it.
    if Rc::strong_count(elem) > 2 {
        return Some(format!(
            "element {} of {chare} cannot migrate while an async method of it is suspended",
            key.index
        ));
    }
    let in_section = pe.colls.borrow().values().any(|c| c.members.contains(key));
    if in_section {
        return Some(format!("element {} of {chare} is a member of a section: it cannot migrate", key.index));
    }
    None
}

/// Moves element `key` (on this PE) to PE `to` (a local request, after the method that
/// asked returned).
pub(crate) fn request(pe: &Rc<PeLocal>, key: ElemKey, to: PeId) {
    let Some(elem) = pe.elem(&key) else {
        // Already gone (asked twice): the first request wins.
        tracing::debug!(index = %key.index, "migration request for an element no longer here");
        return;
    };
    if to == pe.id || pe.mig.leaving.borrow().contains_key(&key) {
        return;
    }
    if to.0 >= pe.num_pes() {
        fatal(&format!("migrate of element {} to PE {to}: the job has {} PEs", key.index, pe.num_pes()));
    }
    if let Err(why) = start_move(pe, key, elem, to, false) {
        fatal(&why);
    }
}

/// Moves element `key` (on this PE) to PE `to` for the load balancer, or says why it
/// cannot move now.
pub(crate) fn request_lb(pe: &Rc<PeLocal>, key: ElemKey, to: PeId) -> Result<(), String> {
    let Some(elem) = pe.elem(&key) else { return Err("it is no longer on this PE".into()) };
    if pe.mig.leaving.borrow().contains_key(&key) {
        return Err("it is already moving".into());
    }
    start_move(pe, key, elem, to, true)
}

fn start_move(
    pe: &Rc<PeLocal>,
    key: ElemKey,
    elem: Rc<dyn AnyElem>,
    to: PeId,
    lb: bool,
) -> Result<(), String> {
    let Some(info) = pe.coll(key.coll) else { fatal("migration of an element of an unknown collection") };
    if let Some(why) = refusal(pe, &info, &key, &elem) {
        return Err(why);
    }
    let home = elem.meta().away.get().unwrap_or(pe.id);
    if home == pe.id {
        info.locs.borrow_mut().insert(key.index, Loc::Moving(Vec::new()));
        ship(pe, key, elem, to, lb);
    } else {
        pe.mig.leaving.borrow_mut().insert(key, (to, lb));
        let m = MigMsg::Moving { coll: key.coll, index: key.index, from: pe.id };
        pe.send(home, Envelope::Sys(SysMsg::Mig(m)), 0);
    }
    Ok(())
}

/// Packs the element and sends it, then its `when`-buffered messages, to `to`.
fn ship(pe: &Rc<PeLocal>, key: ElemKey, elem: Rc<dyn AnyElem>, to: PeId, lb: bool) {
    pe.elems.borrow_mut().remove(&key);
    let ctor = elem.ctor();
    let fns = ctor.migrate().expect("checked migratable");
    let state = (fns.pack)(&*elem).unwrap_or_else(|e| {
        fatal(&format!("element {} of {} does not serialize for migration: {e}", key.index, ctor.chare()))
    });
    let meta = elem.meta();
    let buffered = meta.take_buffered();
    tracing::debug!(index = %key.index, to = %to, bytes = state.len(), "element leaves");
    pe.mig.left.set(pe.mig.left.get() + 1);
    let wire = MetaWire {
        red_seq: meta.red_seq.get(),
        sync_epoch: meta.sync_epoch.get(),
        load: meta.load.get(),
        migratable: meta.migratable.get(),
        lb,
        home: meta.away.get().unwrap_or(pe.id),
    };
    let m = Migrant { key, ctor, meta: wire, state };
    pe.send(to, Envelope::Sys(SysMsg::Migrant(Box::new(m))), 0);
    for env in buffered {
        forward(pe, to, env);
    }
}

/// A packed element arrives: install it, run its `migrated` hook, tell its home.
pub(crate) fn on_migrant(pe: &Rc<PeLocal>, m: Migrant) {
    let Some(info) = pe.coll(m.key.coll) else {
        // The array's creation has not reached this PE yet (it travels another path
        // than the element did): install the element once it has, in order with the
        // calls forwarded after it.
        pe.hold_for_coll(m.key.coll, Envelope::Sys(SysMsg::Migrant(Box::new(m))));
        return;
    };
    let Some(fns) = m.ctor.migrate() else { fatal("an element of a non-migratable chare type migrated in") };
    let home = m.meta.home;
    let meta = ElemMeta::new(m.key, Home::Array);
    meta.red_seq.set(m.meta.red_seq);
    meta.sync_epoch.set(m.meta.sync_epoch);
    meta.load.set(m.meta.load);
    meta.migratable.set(m.meta.migratable);
    meta.away.set((home != pe.id).then_some(home));
    let elem = (fns.unpack)(&m.state, meta).unwrap_or_else(|e| {
        fatal(&format!(
            "element {} of {} does not deserialize after migration: {e}",
            m.key.index,
            m.ctor.chare()
        ))
    });
    pe.elems.borrow_mut().insert(ElemEntry(Rc::clone(&elem)));
    pe.mig.arrived.set(pe.mig.arrived.get() + 1);
    if let Some(desc) = fns.migrated {
        run_hook(pe, &elem, desc);
    }
    if home == pe.id {
        let kept = info.locs.borrow_mut().remove(&m.key.index);
        if let Some(Loc::Moving(kept)) = kept {
            for env in kept {
                crate::pe::worker::handle(pe, env);
            }
        }
    } else {
        let msg = MigMsg::Arrived { coll: m.key.coll, index: m.key.index, at: pe.id };
        pe.send(home, Envelope::Sys(SysMsg::Mig(msg)), 0);
    }
    if m.meta.lb {
        crate::lb::arrived(pe, m.key.coll);
    }
}

/// Runs an argument-less entry method (a hook) on a local element.
pub(crate) fn run_hook(pe: &Rc<PeLocal>, elem: &Rc<dyn AnyElem>, desc: &'static EntryDesc) {
    let args: crate::msg::ArgBox = smallbox::smallbox!(());
    desc.invoke(Invoke { pe, target: Target::Elem(elem), desc, args: Args::Owned(args), reply: Reply::None });
    crate::chare::invoke::after_state_change(elem.meta());
}

/// Handles a migration protocol message.
pub(crate) fn handle(pe: &Rc<PeLocal>, m: MigMsg) {
    match m {
        MigMsg::Moving { coll, index, from } => {
            let Some(info) = pe.coll(coll) else {
                fatal("a migration of an element of an unknown collection")
            };
            info.locs.borrow_mut().insert(index, Loc::Moving(Vec::new()));
            pe.send(from, Envelope::Sys(SysMsg::Mig(MigMsg::Ack { coll, index })), 0);
        }
        MigMsg::Ack { coll, index } => {
            let key = ElemKey { coll, index };
            let to = pe.mig.leaving.borrow_mut().remove(&key);
            let (Some((to, lb)), Some(elem)) = (to, pe.elem(&key)) else {
                fatal(&format!("a migration acknowledgement for element {index}, which is not leaving"))
            };
            ship(pe, key, elem, to, lb);
        }
        MigMsg::Arrived { coll, index, at } => {
            let Some(info) = pe.coll(coll) else {
                fatal("an arrival of an element of an unknown collection")
            };
            let before = info.locs.borrow_mut().insert(index, Loc::At(at));
            if let Some(Loc::Moving(kept)) = before {
                for env in kept {
                    forward(pe, at, env);
                }
            }
        }
    }
}

/// Sends a call from the element's home to where the element lives: marked as
/// forwarded, so that it is delivered there and never routed again.
fn forward(pe: &Rc<PeLocal>, to: PeId, env: Envelope) {
    pe.send(to, Envelope::Sys(SysMsg::Forwarded(Box::new(env))), 0);
}

/// A forwarded call arrives: the element is here (its home forwards to where it lives
/// only after it arrived, and it leaves only after its home stopped forwarding).
pub(crate) fn on_forwarded(pe: &Rc<PeLocal>, env: Envelope) {
    let Envelope::Call { coll, index, ep, .. } = &env else {
        fatal("a forwarded message that is not a call")
    };
    if pe.coll(*coll).is_none() {
        // Behind its element, held until the array's creation arrives (`on_migrant`).
        let coll = *coll;
        pe.hold_for_coll(coll, Envelope::Sys(SysMsg::Forwarded(Box::new(env))));
        return;
    }
    let Some(elem) = pe.elem(&ElemKey { coll: *coll, index: *index }) else {
        fatal(&format!(
            "a forwarded call for element {index} of collection {coll}, which is not on PE {}",
            pe.id
        ))
    };
    let Some(desc) = crate::chare::registry::entry(*ep) else {
        fatal(&format!("message for an unknown entry method id {}", ep.0))
    };
    crate::chare::invoke::deliver(pe, &elem, desc, env);
    if elem.meta().has_buffered() {
        crate::chare::invoke::retry_when(pe, &elem);
    }
}

/// A call for an element that is not on this PE: on its home, forward it to where the
/// element lives, or keep it while the element moves. `Err` gives the call back when
/// this PE knows no migration of the element.
pub(crate) fn try_route(info: &CollInfo, pe: &Rc<PeLocal>, env: Envelope) -> Result<(), Envelope> {
    let Envelope::Call { index, .. } = &env else { unreachable!("calls only") };
    let mut locs = info.locs.borrow_mut();
    match locs.get_mut(index) {
        Some(Loc::At(at)) => {
            let at = *at;
            drop(locs);
            forward(pe, at, env);
            Ok(())
        }
        Some(Loc::Moving(kept)) => {
            kept.push(env);
            Ok(())
        }
        None => Err(env),
    }
}

/// A call for an element of a dense array that is not on this PE: [`try_route`], or
/// the job ends (nobody can run it).
pub(crate) fn route(pe: &Rc<PeLocal>, info: &CollInfo, env: Envelope) {
    let Err(env) = try_route(info, pe, env) else { return };
    let Envelope::Call { coll, index, .. } = &env else { unreachable!("calls only") };
    let (coll, index) = (*coll, *index);
    if pe.failed_ctors.borrow().contains(&ElemKey { coll, index }) {
        fatal(&format!("message for element {index} of collection {coll}, whose constructor failed"))
    }
    fatal(&format!("message for element {index} of collection {coll}, which is not on PE {}", pe.id))
}
