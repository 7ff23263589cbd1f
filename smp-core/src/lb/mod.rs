//! Load balancing at sync points (Charm++'s `AtSync`): elements of an array of a
//! migratable chare type call [`crate::Ctx::at_sync`]; once all of them have, the
//! balancer chosen with `+balancer` moves some of them, then every element's
//! `resume_from_sync` entry method runs.
//!
//! **Load** is the time each element spent in its entry methods since the last step
//! (measured for migratable chare types only: two clock reads per method). An element
//! that called `set_migratable(false)` counts but stays.
//!
//! **A step**, for array `A` and epoch `e` (each element counts its syncs):
//! 1. `at_sync` is a contribution to reduction `Sync(e)` of `A`; it completes on the
//!    array's reduction root R, where the step starts. Without a balancer, R broadcasts
//!    `resume_from_sync` at once.
//! 2. R sends `Start` down the tree of all PEs; each PE lists the elements of `A` that
//!    live on it, with their loads (and zeroes them).
//! 3. A *central* balancer (GreedyLB, RefineLB, GreedyRefineLB, RotateLB, RandCentLB) gathers the
//!    lists up the tree (`Loads`); R computes the moves and sends them down (`Plan`).
//!    (RandCentLB places objects at random, for testing.) The *distributed* one (DistributedLB) gathers only sums: R learns the total load
//!    (`Sum`) and sends the average down (`Avg`). PEs below the average announce
//!    themselves to a few random PEs (`Under`, acknowledged; `Gossiped` up the tree
//!    when done). R then opens the transfers (`Transfer`): each PE above the average
//!    plus 5% offers its heaviest objects, one at a time, to the least loaded PEs it
//!    heard of (`Offer`); a PE accepts while it stays under that bound (`Reply`), so
//!    offers from several PEs never overload it. When every PE is done offering
//!    (`Offered` up the tree), R sends `Settle`: every PE now knows how many elements
//!    it will receive. No PE ever holds the loads of the others.
//! 4. Each PE migrates the elements the plan (or its accepted offers) says, and counts
//!    the ones it receives; once all arrived (`Done` up the tree), R broadcasts
//!    `resume_from_sync` to the array. The broadcast reaches every element, moved or
//!    not, through the homes (see `collection::migrate`).
//!
//! Every message goes between PEs of the job's tree, or between one PE and one other:
//! the protocol terminates because each phase waits for a fixed set of answers.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::chare::invoke::fatal;
use crate::collection::{CollId, ElemKey, Index};
use crate::config::Balancer;
use crate::msg::{Envelope, Reply};
use crate::pe::{PeId, PeLocal, SysMsg};

/// Tolerance above the average load before a PE counts as overloaded.
const TOLERANCE: f64 = 1.05;

/// One element's load, as a balancer sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Obj {
    pub(crate) index: Index,
    pub(crate) pe: PeId,
    /// Nanoseconds in entry methods since the last step.
    pub(crate) load: u64,
    pub(crate) migratable: bool,
}

/// The messages of a load-balancing step (see the module doc).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LbMsg {
    Start {
        coll: CollId,
        epoch: u32,
        root: PeId,
    },
    Loads {
        coll: CollId,
        objs: Vec<Obj>,
    },
    Plan {
        coll: CollId,
        root: PeId,
        moves: Vec<(Index, PeId, PeId)>,
    },
    Sum {
        coll: CollId,
        load: u64,
        max: u64,
        objs: u64,
    },
    Avg {
        coll: CollId,
        root: PeId,
        avg: u64,
    },
    Under {
        coll: CollId,
        pe: PeId,
        load: u64,
    },
    UnderAck {
        coll: CollId,
    },
    Gossiped {
        coll: CollId,
    },
    Transfer {
        coll: CollId,
        root: PeId,
    },
    Offer {
        coll: CollId,
        from: PeId,
        load: u64,
        from_load: u64,
    },
    Reply {
        coll: CollId,
        accepted: bool,
        load: u64,
    },
    Offered {
        coll: CollId,
        max: u64,
        moved: u32,
    },
    Settle {
        coll: CollId,
        root: PeId,
    },
    /// A planned move that could not happen (the element cannot move now).
    Skip {
        coll: CollId,
    },
    Done {
        coll: CollId,
    },
}

impl LbMsg {
    fn coll(&self) -> CollId {
        match self {
            LbMsg::Start { coll, .. }
            | LbMsg::Loads { coll, .. }
            | LbMsg::Plan { coll, .. }
            | LbMsg::Sum { coll, .. }
            | LbMsg::Avg { coll, .. }
            | LbMsg::Under { coll, .. }
            | LbMsg::UnderAck { coll }
            | LbMsg::Gossiped { coll }
            | LbMsg::Transfer { coll, .. }
            | LbMsg::Offer { coll, .. }
            | LbMsg::Reply { coll, .. }
            | LbMsg::Offered { coll, .. }
            | LbMsg::Settle { coll, .. }
            | LbMsg::Skip { coll }
            | LbMsg::Done { coll } => *coll,
        }
    }
}

/// A step in progress on one PE.
#[derive(Default)]
struct Step {
    /// When it started here (for `+LBDebug`).
    started: Option<std::time::Instant>,
    root: PeId,
    epoch: u32,
    /// The tree's children of this PE (from the step's root).
    children: Vec<PeId>,
    /// Central: the lists gathered so far; distributed: this PE's own objects.
    objs: Vec<Obj>,
    /// Messages of the current up-the-tree phase received from children.
    up: u32,
    /// Sums of that phase.
    sum_load: u64,
    sum_max: u64,
    sum_objs: u64,
    moved: u32,
    /// Whether this PE's own part of the current phase is done.
    self_ready: bool,
    /// Elements this PE will receive (known once `plan_seen`), and received.
    expect_in: u32,
    arrived: u32,
    plan_seen: bool,
    /// Distributed: this PE's load, the average, gossip acks awaited, the PEs below
    /// the average it heard of (with their loads), and whether an offer is out.
    load: u64,
    avg: u64,
    acks: u32,
    under: Vec<(PeId, u64)>,
    offering: Option<usize>,
}

/// Per-PE state of the balancer.
#[derive(Default)]
pub(crate) struct LbState {
    steps: RefCell<HashMap<CollId, Step>>,
}

fn send(pe: &Rc<PeLocal>, to: PeId, m: LbMsg) {
    pe.send(to, Envelope::Sys(SysMsg::Lb(m)), 0);
}

/// Called on the array's reduction root when every element reached sync `epoch`.
pub(crate) fn start(pe: &Rc<PeLocal>, coll: CollId, epoch: u32) {
    if pe.shared.config.balancer.is_none() {
        if pe.shared.config.lb_debug > 0 {
            println!("charmrs LB: step {epoch} of array {coll}: no +balancer, nothing moves");
        }
        resume(pe, coll);
        return;
    }
    send(pe, pe.id, LbMsg::Start { coll, epoch, root: pe.id });
}

/// Broadcasts the chare type's `resume_from_sync` to the array (if it has one).
fn resume(pe: &Rc<PeLocal>, coll: CollId) {
    let Some(desc) = resume_desc(pe, coll) else { return };
    let args: Arc<dyn std::any::Any + Send + Sync> = Arc::new(());
    let env = Envelope::Bcast { coll, ep: desc.id(), root: pe.id, fwd: true, reply: Reply::None, args };
    pe.send(pe.id, env, 0);
}

fn resume_desc(pe: &Rc<PeLocal>, coll: CollId) -> Option<&'static crate::chare::registry::EntryDesc> {
    let info = pe.coll(coll)?;
    match &info.kind {
        crate::collection::Kind::Array { .. } | crate::collection::Kind::Sparse { .. } => {}
        _ => return None,
    }
    info.ctor?.migrate().and_then(|m| m.resume())
}

/// Notes a planned move that arrived here (called by `collection::migrate`).
pub(crate) fn arrived(pe: &Rc<PeLocal>, coll: CollId) {
    let mut steps = pe.lb.steps.borrow_mut();
    let Some(st) = steps.get_mut(&coll) else { fatal("a balanced element arrived outside a balancing step") };
    st.arrived += 1;
    drop(steps);
    check_done(pe, coll);
}

/// Handles a balancer message.
pub(crate) fn handle(pe: &Rc<PeLocal>, m: LbMsg) {
    let coll = m.coll();
    // Steps start only with a balancer (`start`), the same in every process.
    let Some(balancer) = pe.shared.config.balancer else {
        fatal("a load-balancing message without +balancer")
    };
    match m {
        LbMsg::Start { epoch, root, .. } => {
            let children = pe.shared.span.children(root, pe.id);
            for &c in &children {
                send(pe, c, LbMsg::Start { coll, epoch, root });
            }
            let objs = local_objs(pe, coll);
            let load: u64 = objs.iter().map(|o| o.load).sum();
            let started = Some(std::time::Instant::now());
            let mut st = Step { started, root, epoch, children, ..Default::default() };
            st.load = load;
            if balancer == Balancer::Distributed {
                st.sum_load = load;
                st.sum_max = load;
                st.sum_objs = objs.len() as u64;
            }
            st.objs = objs;
            st.self_ready = true;
            pe.lb.steps.borrow_mut().insert(coll, st);
            if balancer == Balancer::Distributed {
                up_sum(pe, coll);
            } else {
                up_loads(pe, coll);
            }
        }
        LbMsg::Loads { objs, .. } => {
            with_step(pe, coll, |st| {
                st.objs.extend(objs);
                st.up += 1;
            });
            up_loads(pe, coll);
        }
        LbMsg::Plan { root, moves, .. } => {
            for c in pe.shared.span.children(root, pe.id) {
                send(pe, c, LbMsg::Plan { coll, root, moves: moves.clone() });
            }
            let mut out = Vec::new();
            with_step(pe, coll, |st| {
                st.expect_in = moves.iter().filter(|m| m.2 == pe.id).count() as u32;
                st.plan_seen = true;
                st.self_ready = false;
                st.up = 0;
                out = moves.iter().filter(|m| m.1 == pe.id).map(|m| (m.0, m.2)).collect();
            });
            for (index, to) in out {
                move_elem(pe, coll, index, to);
            }
            check_done(pe, coll);
        }
        LbMsg::Sum { load, max, objs, .. } => {
            with_step(pe, coll, |st| {
                st.sum_load += load;
                st.sum_max = st.sum_max.max(max);
                st.sum_objs += objs;
                st.up += 1;
            });
            up_sum(pe, coll);
        }
        LbMsg::Avg { root, avg, .. } => {
            for c in pe.shared.span.children(root, pe.id) {
                send(pe, c, LbMsg::Avg { coll, root, avg });
            }
            let (load, epoch) = with_step(pe, coll, |st| {
                st.avg = avg;
                st.up = 0;
                st.self_ready = false;
                (st.load, st.epoch)
            });
            let mut acks = 0;
            if load < avg {
                for to in gossip_targets(pe.id, pe.num_pes(), epoch) {
                    send(pe, to, LbMsg::Under { coll, pe: pe.id, load });
                    acks += 1;
                }
            }
            with_step(pe, coll, |st| {
                st.acks = acks;
                st.self_ready = acks == 0;
            });
            up_gossiped(pe, coll);
        }
        LbMsg::Under { pe: from, load, .. } => {
            with_step(pe, coll, |st| {
                if !st.under.iter().any(|u| u.0 == from) {
                    st.under.push((from, load));
                }
            });
            send(pe, from, LbMsg::UnderAck { coll });
        }
        LbMsg::UnderAck { .. } => {
            with_step(pe, coll, |st| {
                st.acks -= 1;
                st.self_ready = st.acks == 0;
            });
            up_gossiped(pe, coll);
        }
        LbMsg::Gossiped { .. } => {
            with_step(pe, coll, |st| st.up += 1);
            up_gossiped(pe, coll);
        }
        LbMsg::Transfer { root, .. } => {
            for c in pe.shared.span.children(root, pe.id) {
                send(pe, c, LbMsg::Transfer { coll, root });
            }
            with_step(pe, coll, |st| {
                st.up = 0;
                st.self_ready = false;
                st.sum_max = 0;
                st.moved = 0;
                st.objs.retain(|o| o.migratable);
                st.objs.sort_by(|a, b| b.load.cmp(&a.load).then(a.index.cmp(&b.index)));
            });
            offer_next(pe, coll);
        }
        LbMsg::Offer { from, load, from_load, .. } => {
            let (accepted, now) = with_step(pe, coll, |st| {
                // Taking it must leave this PE below the offerer (the pair improves):
                // offers from several PEs never make this PE the most loaded.
                let ok = st.load < st.avg && st.load + load < from_load;
                if ok {
                    st.load += load;
                    st.expect_in += 1;
                }
                (ok, st.load)
            });
            send(pe, from, LbMsg::Reply { coll, accepted, load: now });
        }
        LbMsg::Reply { accepted, load, .. } => {
            let moving = with_step(pe, coll, |st| {
                let i = st.offering.take().expect("an offer out");
                let obj = st.objs.remove(0);
                let q = st.under[i].0;
                st.under[i].1 = load;
                if accepted {
                    st.load -= obj.load;
                    st.moved += 1;
                    Some((obj.index, q))
                } else {
                    // Full: forget that PE; keep the object for the next one.
                    st.objs.insert(0, obj);
                    st.under.remove(i);
                    None
                }
            });
            if let Some((index, to)) = moving {
                move_elem(pe, coll, index, to);
            }
            offer_next(pe, coll);
        }
        LbMsg::Offered { max, moved, .. } => {
            with_step(pe, coll, |st| {
                st.up += 1;
                st.sum_max = st.sum_max.max(max);
                st.moved += moved;
            });
            up_offered(pe, coll);
        }
        LbMsg::Settle { root, .. } => {
            for c in pe.shared.span.children(root, pe.id) {
                send(pe, c, LbMsg::Settle { coll, root });
            }
            with_step(pe, coll, |st| {
                st.plan_seen = true;
                st.up = 0;
                st.self_ready = false;
            });
            check_done(pe, coll);
        }
        LbMsg::Skip { .. } => {
            with_step(pe, coll, |st| st.arrived += 1);
            check_done(pe, coll);
        }
        LbMsg::Done { .. } => {
            with_step(pe, coll, |st| st.up += 1);
            check_done(pe, coll);
        }
    }
}

/// Runs `f` on the step of `coll`.
fn with_step<R>(pe: &Rc<PeLocal>, coll: CollId, f: impl FnOnce(&mut Step) -> R) -> R {
    let mut steps = pe.lb.steps.borrow_mut();
    let Some(st) = steps.get_mut(&coll) else { fatal("a load-balancing message outside a step") };
    f(st)
}

/// The elements of `coll` living on this PE, with their loads (zeroed).
fn local_objs(pe: &Rc<PeLocal>, coll: CollId) -> Vec<Obj> {
    let mut objs: Vec<Obj> = pe
        .elems
        .borrow()
        .iter()
        .filter(|e| e.0.meta().key.coll == coll)
        .map(|e| {
            let m = e.0.meta();
            Obj { index: m.key.index, pe: pe.id, load: m.load.replace(0), migratable: m.migratable.get() }
        })
        .collect();
    objs.sort_by_key(|o| o.index);
    objs
}

/// Moves an element as a balancer decided; one that cannot move now stays, and its
/// destination is told not to wait for it.
fn move_elem(pe: &Rc<PeLocal>, coll: CollId, index: Index, to: PeId) {
    let key = ElemKey { coll, index };
    match crate::collection::migrate::request_lb(pe, key, to) {
        Ok(()) => {}
        Err(why) => {
            tracing::warn!("load balancer: element {index} stays: {why}");
            send(pe, to, LbMsg::Skip { coll });
        }
    }
}

/// Central phase 1: lists up the tree; the root plans.
fn up_loads(pe: &Rc<PeLocal>, coll: CollId) {
    let ready = with_step(pe, coll, |st| st.self_ready && st.up as usize == st.children.len());
    if !ready {
        return;
    }
    let (root, epoch, objs) = with_step(pe, coll, |st| (st.root, st.epoch, std::mem::take(&mut st.objs)));
    let parent = pe.shared.span.parent(root, pe.id);
    match parent {
        Some(p) => send(pe, p, LbMsg::Loads { coll, objs }),
        None => {
            let balancer = pe.shared.config.balancer.expect("a balancer");
            let moves = plan(balancer, &objs, pe.num_pes(), epoch);
            if pe.shared.config.lb_debug > 0 {
                report(balancer, epoch, coll, &objs, &moves, pe.num_pes(), pe.shared.config.lb_debug);
            }
            send(pe, pe.id, LbMsg::Plan { coll, root, moves });
        }
    }
}

/// Distributed phase 1: sums up the tree; the root sends the average down.
fn up_sum(pe: &Rc<PeLocal>, coll: CollId) {
    let ready = with_step(pe, coll, |st| st.self_ready && st.up as usize == st.children.len());
    if !ready {
        return;
    }
    let (root, epoch, load, max, objs) =
        with_step(pe, coll, |st| (st.root, st.epoch, st.sum_load, st.sum_max, st.sum_objs));
    match pe.shared.span.parent(root, pe.id) {
        Some(p) => send(pe, p, LbMsg::Sum { coll, load, max, objs }),
        None => {
            let avg = load / u64::from(pe.num_pes());
            if pe.shared.config.lb_debug > 0 {
                println!(
                    "charmrs LB [DistributedLB] step {epoch} of array {coll}: {objs} objects, load max/avg before \
                     {:.3}/{:.3} ms",
                    max as f64 / 1e6,
                    avg as f64 / 1e6
                );
            }
            send(pe, pe.id, LbMsg::Avg { coll, root, avg });
        }
    }
}

/// Distributed phase 2: gossip done (acks in) up the tree; the root opens transfers.
fn up_gossiped(pe: &Rc<PeLocal>, coll: CollId) {
    let ready = with_step(pe, coll, |st| st.self_ready && st.up as usize == st.children.len());
    if !ready {
        return;
    }
    let root = with_step(pe, coll, |st| {
        st.self_ready = false;
        st.up = 0;
        st.root
    });
    match pe.shared.span.parent(root, pe.id) {
        Some(p) => send(pe, p, LbMsg::Gossiped { coll }),
        None => send(pe, pe.id, LbMsg::Transfer { coll, root }),
    }
}

/// Distributed phase 3: offers the heaviest remaining object while overloaded.
fn offer_next(pe: &Rc<PeLocal>, coll: CollId) {
    let offer = with_step(pe, coll, |st| {
        let bound = (st.avg as f64 * TOLERANCE) as u64;
        if st.load <= bound || st.objs.is_empty() {
            return None;
        }
        // The heaviest object that fits the excess, else the lightest (objects are
        // sorted heaviest first).
        st.objs.sort_by(|a, b| b.load.cmp(&a.load).then(a.index.cmp(&b.index)));
        let excess = st.load - st.avg;
        let pos = st.objs.iter().position(|o| o.load <= excess).unwrap_or(st.objs.len() - 1);
        let o = st.objs.remove(pos);
        st.objs.insert(0, o);
        let load = st.objs[0].load;
        // The least loaded PE heard of, if moving the object there improves the pair.
        let (i, u) = st.under.iter().enumerate().min_by_key(|(_, u)| u.1)?;
        if u.1 + load >= st.load || load == 0 {
            return None;
        }
        st.offering = Some(i);
        Some((u.0, load, st.load))
    });
    match offer {
        Some((to, load, from_load)) => send(pe, to, LbMsg::Offer { coll, from: pe.id, load, from_load }),
        None => {
            with_step(pe, coll, |st| {
                st.self_ready = true;
                st.sum_max = st.sum_max.max(st.load);
            });
            up_offered(pe, coll);
        }
    }
}

/// Distributed phase 3 done up the tree; the root settles.
fn up_offered(pe: &Rc<PeLocal>, coll: CollId) {
    let ready = with_step(pe, coll, |st| st.self_ready && st.up as usize == st.children.len());
    if !ready {
        return;
    }
    let (root, epoch, max, moved) = with_step(pe, coll, |st| {
        st.self_ready = false;
        st.up = 0;
        (st.root, st.epoch, st.sum_max, st.moved)
    });
    match pe.shared.span.parent(root, pe.id) {
        Some(p) => send(pe, p, LbMsg::Offered { coll, max, moved }),
        None => {
            if pe.shared.config.lb_debug > 0 {
                println!(
                    "charmrs LB [DistributedLB] step {epoch} of array {coll}: moved {moved}, load max after {:.3} ms",
                    max as f64 / 1e6
                );
            }
            send(pe, pe.id, LbMsg::Settle { coll, root })
        }
    }
}

/// The last phase: every expected element arrived here and below; the root resumes.
fn check_done(pe: &Rc<PeLocal>, coll: CollId) {
    let ready = with_step(pe, coll, |st| {
        st.plan_seen && st.arrived == st.expect_in && st.up as usize == st.children.len()
    });
    if !ready {
        return;
    }
    let st = pe.lb.steps.borrow_mut().remove(&coll).expect("a step");
    match pe.shared.span.parent(st.root, pe.id) {
        Some(p) => send(pe, p, LbMsg::Done { coll }),
        None => {
            if pe.shared.config.lb_debug > 0 {
                let ms = st.started.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
                println!(
                    "charmrs LB: step {} of array {coll} done in {ms:.3} ms ({} moved in here)",
                    st.epoch, st.expect_in
                );
            }
            resume(pe, coll)
        }
    }
}

/// The PEs an underloaded PE tells about itself: `2 * ceil(log2 p)` others, chosen
/// by a hash of the PE and the step (the same on every run).
fn gossip_targets(me: PeId, p: u32, epoch: u32) -> Vec<PeId> {
    if p <= 1 {
        return Vec::new();
    }
    let k = (2 * (32 - (p - 1).leading_zeros())).min(p - 1);
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ (u64::from(me.0) << 32 | u64::from(epoch));
    let mut out: Vec<PeId> = Vec::new();
    if k == p - 1 {
        return (0..p).filter(|&q| q != me.0).map(PeId).collect();
    }
    while (out.len() as u32) < k {
        h ^= h << 13;
        h ^= h >> 7;
        h ^= h << 17;
        let q = PeId((h % u64::from(p)) as u32);
        if q != me && !out.contains(&q) {
            out.push(q);
        }
    }
    out
}

/// The moves of a central strategy: `(index, from, to)` for each object that moves.
pub(crate) fn plan(b: Balancer, objs: &[Obj], p: u32, step: u32) -> Vec<(Index, PeId, PeId)> {
    let to: Vec<PeId> = match b {
        Balancer::RandCent => {
            let mut h: u64 = 0x2545_f491_4f6c_dd1d ^ u64::from(step).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            objs.iter()
                .map(|o| {
                    h ^= h << 13;
                    h ^= h >> 7;
                    h ^= h << 17;
                    if o.migratable {
                        PeId((h % u64::from(p)) as u32)
                    } else {
                        o.pe
                    }
                })
                .collect()
        }
        Balancer::Rotate => {
            objs.iter().map(|o| if o.migratable { PeId((o.pe.0 + 1) % p) } else { o.pe }).collect()
        }
        Balancer::Greedy => greedy(objs, p),
        Balancer::GreedyRefine => {
            let now: Vec<PeId> = objs.iter().map(|o| o.pe).collect();
            let g = greedy(objs, p);
            let max = |to: &[PeId]| pe_loads(objs, to, p).into_iter().max().unwrap_or(0);
            // No better than where things are: stay.
            if max(&g) >= max(&now) {
                now
            } else {
                keep_where_harmless(objs, g, p)
            }
        }
        Balancer::Refine => refine(objs, p),
        Balancer::Distributed => unreachable!("not a central strategy"),
    };
    objs.iter().zip(to).filter(|(o, t)| o.pe != *t).map(|(o, t)| (o.index, o.pe, t)).collect()
}

/// Loads per PE of a placement.
fn pe_loads(objs: &[Obj], to: &[PeId], p: u32) -> Vec<u64> {
    let mut l = vec![0u64; p as usize];
    for (o, t) in objs.iter().zip(to) {
        l[t.0 as usize] += o.load;
    }
    l
}

/// Heaviest object first onto the least loaded PE (non-migratable objects stay and
/// count first).
fn greedy(objs: &[Obj], p: u32) -> Vec<PeId> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut to: Vec<PeId> = objs.iter().map(|o| o.pe).collect();
    let mut load = vec![0u64; p as usize];
    for o in objs.iter().filter(|o| !o.migratable) {
        load[o.pe.0 as usize] += o.load;
    }
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = (0..p).map(|q| Reverse((load[q as usize], q))).collect();
    let mut order: Vec<usize> = (0..objs.len()).filter(|&i| objs[i].migratable).collect();
    // Heaviest first; ties by index, so the plan is the same on every run.
    order.sort_by(|&a, &b| objs[b].load.cmp(&objs[a].load).then(objs[a].index.cmp(&objs[b].index)));
    for i in order {
        let Reverse((l, q)) = heap.pop().expect("p >= 1");
        to[i] = PeId(q);
        heap.push(Reverse((l + objs[i].load, q)));
    }
    to
}

/// The greedy placement, but each object stays where it is if its current PE's load
/// (counting it) would not exceed the greedy placement's maximum.
fn keep_where_harmless(objs: &[Obj], mut to: Vec<PeId>, p: u32) -> Vec<PeId> {
    let max = pe_loads(objs, &to, p).into_iter().max().unwrap_or(0);
    for i in 0..objs.len() {
        if to[i] == objs[i].pe {
            continue;
        }
        let mut load = pe_loads(objs, &to, p);
        let here = objs[i].pe.0 as usize;
        if load[here] + objs[i].load <= max {
            load[to[i].0 as usize] -= objs[i].load;
            to[i] = objs[i].pe;
        }
    }
    to
}

/// Moves objects off the most loaded PE, while it is above the average (plus
/// tolerance), onto the least loaded PE, heaviest object that fits first; few moves.
fn refine(objs: &[Obj], p: u32) -> Vec<PeId> {
    let mut to: Vec<PeId> = objs.iter().map(|o| o.pe).collect();
    let mut load = pe_loads(objs, &to, p);
    let total: u64 = load.iter().sum();
    let bound = ((total as f64 / f64::from(p)) * TOLERANCE) as u64;
    loop {
        let (hi, &hl) =
            load.iter().enumerate().max_by_key(|(q, l)| (**l, std::cmp::Reverse(*q))).expect("p >= 1");
        if hl <= bound {
            break;
        }
        let (lo, &ll) = load.iter().enumerate().min_by_key(|(q, l)| (**l, *q)).expect("p >= 1");
        // The heaviest object on `hi` that `lo` can take without going over the bound,
        // else the heaviest whose move still lowers the pair's maximum. Each move
        // lowers the sum of squared loads, so the loop ends.
        let on_hi = |i: &usize| to[*i].0 as usize == hi && objs[*i].migratable && objs[*i].load > 0;
        let heaviest = |fits: &dyn Fn(u64) -> bool| {
            (0..objs.len())
                .filter(on_hi)
                .filter(|&i| fits(objs[i].load))
                .max_by_key(|&i| (objs[i].load, std::cmp::Reverse(objs[i].index)))
        };
        let best = heaviest(&|l| ll + l <= bound).or_else(|| heaviest(&|l| ll + l < hl));
        let Some(i) = best else { break };
        to[i] = PeId(lo as u32);
        load[hi] -= objs[i].load;
        load[lo] += objs[i].load;
    }
    to
}

/// `+LBDebug`: what a central step did.
fn report(
    b: Balancer,
    epoch: u32,
    coll: CollId,
    objs: &[Obj],
    moves: &[(Index, PeId, PeId)],
    p: u32,
    level: u32,
) {
    let before: Vec<PeId> = objs.iter().map(|o| o.pe).collect();
    let mut after = before.clone();
    for (i, o) in objs.iter().enumerate() {
        if let Some(m) = moves.iter().find(|m| m.0 == o.index) {
            after[i] = m.2;
        }
    }
    let lb = pe_loads(objs, &before, p);
    let la = pe_loads(objs, &after, p);
    let avg = lb.iter().sum::<u64>() as f64 / f64::from(p) / 1e6;
    let max = |l: &[u64]| l.iter().copied().max().unwrap_or(0) as f64 / 1e6;
    println!(
        "charmrs LB [{}] step {epoch} of array {coll}: moved {} of {} objects; load max/avg {:.3}/{avg:.3} ms before, \
         {:.3}/{avg:.3} ms after",
        b.name(),
        moves.len(),
        objs.len(),
        max(&lb),
        max(&la)
    );
    if level > 1 {
        for (index, from, to) in moves {
            println!("charmrs LB:   element {index}: PE {from} -> PE {to}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objs(loads: &[(u32, u64)]) -> Vec<Obj> {
        loads
            .iter()
            .enumerate()
            .map(|(i, &(pe, load))| Obj {
                index: Index::from(i as i32),
                pe: PeId(pe),
                load,
                migratable: true,
            })
            .collect()
    }

    fn after(objs: &[Obj], moves: &[(Index, PeId, PeId)], p: u32) -> Vec<u64> {
        let mut to: Vec<PeId> = objs.iter().map(|o| o.pe).collect();
        for m in moves {
            let i = objs.iter().position(|o| o.index == m.0).unwrap();
            assert_eq!(to[i], m.1);
            to[i] = m.2;
        }
        pe_loads(objs, &to, p)
    }

    #[test]
    fn greedy_balances_an_imbalanced_placement() {
        // Everything on PE 0.
        let o = objs(&[(0, 10), (0, 9), (0, 8), (0, 7), (0, 3), (0, 3)]);
        let m = plan(Balancer::Greedy, &o, 3, 0);
        let l = after(&o, &m, 3);
        assert_eq!(l.iter().sum::<u64>(), 40);
        // Heaviest first onto the least loaded: 15 here (the best is 14).
        assert!(*l.iter().max().unwrap() <= 15, "{l:?}");
    }

    #[test]
    fn refine_moves_little_and_keeps_balanced_pes_alone() {
        let o = objs(&[(0, 5), (0, 5), (1, 5), (1, 5), (2, 5), (2, 5), (2, 5), (2, 5)]);
        let m = plan(Balancer::Refine, &o, 3, 0);
        // PE 2 has 20 of 40 (avg 13.3): one object moves to PE 0 or 1, nothing else.
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].1, PeId(2));
        // Already balanced: no moves.
        let b = objs(&[(0, 5), (1, 5), (2, 5)]);
        assert!(plan(Balancer::Refine, &b, 3, 0).is_empty());
    }

    #[test]
    fn greedy_refine_keeps_objects_that_do_no_harm() {
        let o = objs(&[(0, 5), (1, 5), (2, 5), (2, 5)]);
        let m = plan(Balancer::GreedyRefine, &o, 3, 0);
        let l = after(&o, &m, 3);
        assert_eq!(*l.iter().max().unwrap(), 10);
        assert!(m.len() <= 1, "{m:?}");
    }

    #[test]
    fn rotate_moves_every_migratable_object_one_pe_on() {
        let mut o = objs(&[(0, 1), (1, 1), (2, 1)]);
        o[1].migratable = false;
        let m = plan(Balancer::Rotate, &o, 3, 0);
        assert_eq!(m, vec![(Index::from(0), PeId(0), PeId(1)), (Index::from(2), PeId(2), PeId(0))]);
    }

    #[test]
    fn non_migratable_objects_stay_and_count() {
        let mut o = objs(&[(0, 10), (0, 1), (0, 1)]);
        o[0].migratable = false;
        for b in [Balancer::Greedy, Balancer::Refine, Balancer::GreedyRefine] {
            let m = plan(b, &o, 2, 0);
            assert!(m.iter().all(|m| m.0 != Index::from(0)), "{b:?}: {m:?}");
        }
    }

    #[test]
    fn gossip_targets_are_other_distinct_pes() {
        for p in [1, 2, 3, 8, 100] {
            for me in 0..p {
                let t = gossip_targets(PeId(me), p, 3);
                assert!(t.iter().all(|q| q.0 < p && q.0 != me));
                let mut d = t.clone();
                d.dedup();
                assert_eq!(d.len(), t.len());
                assert!(p == 1 || !t.is_empty());
            }
        }
    }

    proptest::proptest! {
        /// Every central strategy keeps every object exactly once, moves only
        /// migratable ones, and never makes the maximum load worse than before.
        #[test]
        fn plans_are_sound(loads in proptest::collection::vec((0u32..5, 0u64..1000, proptest::bool::ANY), 0..40)) {
            let p = 5;
            let o: Vec<Obj> = loads.iter().enumerate().map(|(i, &(pe, load, m))| {
                Obj { index: Index::from(i as i32), pe: PeId(pe), load, migratable: m }
            }).collect();
            let before = pe_loads(&o, &o.iter().map(|x| x.pe).collect::<Vec<_>>(), p);
            for b in [Balancer::Greedy, Balancer::Refine, Balancer::GreedyRefine, Balancer::RandCent] {
                let m = plan(b, &o, p, 1);
                for mv in &m {
                    let obj = o.iter().find(|x| x.index == mv.0).unwrap();
                    proptest::prop_assert!(obj.migratable);
                    proptest::prop_assert!(mv.2.0 < p);
                }
                let l = after(&o, &m, p);
                proptest::prop_assert_eq!(l.iter().sum::<u64>(), before.iter().sum::<u64>());
                if b != Balancer::Greedy && b != Balancer::RandCent {
                    proptest::prop_assert!(l.iter().max() <= before.iter().max());
                }
            }
        }
    }
}
