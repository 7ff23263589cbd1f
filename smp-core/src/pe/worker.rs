//! The scheduler loop of a PE and the handling of each kind of message.
//!
//! One turn of the loop: take everything in the inbox (if a plain load says there is
//! something), run up to `LOCAL_BUDGET` of the messages this PE sent to itself, poll
//! ready tasks, fire due timers; with nothing done, idle (spin, then park: see
//! `sched/README.md`).

use std::rc::Rc;

use crate::chare::invoke::{deliver, fatal, retry_when};
use crate::chare::registry;
use crate::collection::{self, ElemKey, Index};
use crate::msg::{Args, Envelope};
use crate::pe::net::Net;
use crate::pe::{PeLocal, SysMsg};
use crate::queue::inbox::Inbox;
use crate::sched::idle::WorkCheck;
use crate::{qd, reduction};

/// How many of its own messages a PE runs before it looks at its inbox again.
const LOCAL_BUDGET: u32 = 64;

/// Every how many turns of its loop a busy PE polls the transport.
const TRANSPORT_EVERY: u32 = 8;

/// Runs PE `pe` until the job exits.
pub(crate) fn run(pe: &Rc<PeLocal>) {
    let shared = Rc::clone(pe).shared.clone();
    let me = shared.pe(pe.id);
    me.sleeper.register_current_thread();
    let mut ran_for: Vec<ElemKey> = Vec::new();
    let net = shared.net.get();
    // The only PE of its process, when busy, also tells the transport that its PE is
    // awake: otherwise, after one park, the transport's threads would go on receiving
    // for it (a thread hand-off and a cross-thread allocation per message: ~20% of a
    // busy receiver's time in glibc's malloc/free). With several PEs in the process a
    // busy one says nothing, since another may sleep and need those threads.
    let sole = shared.pes.len() == 1;
    let mut turn: u32 = 0;
    // A binding's wrapper around each busy turn (the Python package holds the GIL for
    // the turn), for a PE alone in its process only.
    let wrap = if sole { crate::pe::runtime::PE_TURN_WRAPPER.get().copied() } else { None };
    loop {
        if shared.exiting() {
            break;
        }
        let mut worked = false;
        match wrap {
            Some(w) => w(&mut || worked = busy_turn(pe, net, sole, &mut turn, &mut ran_for)),
            None => worked = busy_turn(pe, net, sole, &mut turn, &mut ran_for),
        }
        if !worked && pe.local.borrow().is_empty() && !pe.exec.has_ready() {
            let deadline = match (pe.timers.next_deadline(), pe.pool.deadline(&shared.pool)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let out = me.sleeper.idle(
                shared.config.idle,
                shared.config.spin,
                shared.oversubscribed,
                deadline,
                InboxCheck { inbox: &me.inbox, net: shared.net.get(), pool: &shared.pool },
            );
            pe.stats.idle(out.idle, out.parked);
        }
    }
}

/// One turn of the loop, but its idle wait: polls the transport (every few turns),
/// handles the inbox and up to `LOCAL_BUDGET` of the PE's own messages, polls ready
/// tasks, fires due timers and, with nothing else done, runs a pool task. Whether it
/// did anything.
fn busy_turn(
    pe: &Rc<PeLocal>,
    net: Option<&Net>,
    sole: bool,
    turn: &mut u32,
    ran_for: &mut Vec<ElemKey>,
) -> bool {
    let me = pe.shared.pe(pe.id);
    let mut worked = false;
    // A busy PE never idles, and idle PEs are who poll the transport: so a busy PE
    // polls it too, every few turns (a try-lock and a load per shared-memory ring),
    // and messages from other processes are not left to the transport's threads.
    *turn = turn.wrapping_add(1);
    if let Some(net) = net {
        if *turn % TRANSPORT_EVERY == 0 {
            worked |= if sole { net.poll_active() } else { net.poll() };
        }
    }
    // A plain load first: the swap is a read-modify-write, not worth paying on every
    // turn of a PE busy with its own messages.
    // A coroutine whose future a message set resumes before the next message runs
    // (as in Charm4py): what it does next is not overtaken by later messages.
    if me.inbox.looks_nonempty() {
        for env in me.inbox.take_all() {
            worked = true;
            dispatch(pe, env);
            run_tasks(pe, ran_for);
        }
    }
    // Messages to itself, including those sent meanwhile, up to a budget: the inbox
    // (other PEs) waits at most LOCAL_BUDGET messages.
    for _ in 0..LOCAL_BUDGET {
        let env = pe.local.borrow_mut().pop_front();
        let Some(env) = env else { break };
        worked = true;
        dispatch(pe, env);
        run_tasks(pe, ran_for);
    }
    worked |= run_tasks(pe, ran_for);
    worked |= pe.timers.fire_due();
    // Pool tasks run when nothing else is to be done.
    if !worked && pe.local.borrow().is_empty() && !pe.exec.has_ready() {
        worked = crate::pool::run_one(pe);
    }
    worked
}

/// Polls the PE's ready tasks, then re-delivers the `when`-buffered messages of the
/// elements they ran for. Whether any ran.
#[inline]
fn run_tasks(pe: &Rc<PeLocal>, ran_for: &mut Vec<ElemKey>) -> bool {
    if !pe.exec.has_ready() {
        return false;
    }
    let worked = pe.exec.run_ready(ran_for);
    for key in ran_for.drain(..) {
        if let Some(elem) = pe.elem(&key) {
            if elem.meta().has_buffered() {
                retry_when(pe, &elem);
            }
        }
    }
    worked
}

/// Counts and handles one message.
#[inline]
fn dispatch(pe: &Rc<PeLocal>, env: Envelope) {
    if env.counts_for_qd() {
        pe.qd.processed();
    }
    pe.stats.received();
    handle(pe, env);
}

/// Handles one message (also used to replay messages held for a collection).
pub(crate) fn handle(pe: &Rc<PeLocal>, env: Envelope) {
    match env {
        Envelope::Call { coll, index, ep, .. } => {
            let key = ElemKey { coll, index };
            match pe.elem(&key) {
                // Migrated here from elsewhere: a call from a sender goes through its
                // home (the hash home of a sparse array's index may be where the element
                // now is), which forwards it in order with the others.
                Some(elem) => {
                    if let Some(home) = elem.meta().away.get() {
                        pe.send(home, env, 0);
                        return;
                    }
                    let Some(desc) = registry::entry(ep) else {
                        fatal(&format!("message for an unknown entry method id {}", ep.0))
                    };
                    deliver(pe, &elem, desc, env);
                    if elem.meta().has_buffered() {
                        retry_when(pe, &elem);
                    }
                }
                None => match pe.coll(coll) {
                    Some(info) if info.sparse.is_some() => collection::sparse::route(pe, &info, env),
                    Some(info) => collection::migrate::route(pe, &info, env),
                    None => pe.hold_for_coll(coll, env),
                },
            }
        }
        Envelope::Bcast { coll, ep, root, fwd, reply, args } if coll.is_section() => {
            multicast(pe, Envelope::Bcast { coll, ep, root, fwd, reply, args })
        }
        Envelope::Bcast { coll, ep, root, fwd, reply, args } => {
            if fwd {
                for child in pe.shared.span.children(root, pe.id) {
                    let copy = Envelope::Bcast { coll, ep, root, fwd: true, reply, args: args.clone() };
                    pe.send(child, copy, 0);
                }
            }
            let Some(info) = pe.coll(coll) else {
                pe.hold_for_coll(coll, Envelope::Bcast { coll, ep, root, fwd: false, reply, args });
                return;
            };
            let Some(desc) = registry::entry(ep) else {
                fatal(&format!("broadcast to an unknown entry method id {}", ep.0))
            };
            // A sparse array's elements may be inserted while the broadcast runs: it
            // reaches those that existed when it arrived.
            let dynamic: Vec<Index> = match &info.sparse {
                Some(s) => {
                    let local = s.local.borrow().clone();
                    s.keep_bcast(ep, reply, &args);
                    local
                }
                None => Vec::new(),
            };
            for &index in info.local.iter().chain(&dynamic) {
                let env = Envelope::Call { coll, index, ep, reply, args: Args::Shared(args.clone()) };
                let Some(elem) = pe.elem(&ElemKey { coll, index }) else {
                    // Migrated away from here, its home: forwarded like a call.
                    let _ = collection::migrate::try_route(&info, pe, env);
                    continue;
                };
                deliver(pe, &elem, desc, env);
                if elem.meta().has_buffered() {
                    retry_when(pe, &elem);
                }
            }
        }
        Envelope::SetFuture { fut, value } => pe.futures.set(fut, value.map_err(|e| *e)),
        Envelope::Sys(m) => match m {
            SysMsg::Create { coll, root, spec } => collection::on_create(pe, coll, root, spec),
            SysMsg::Reduce { key, partial, from } => {
                if pe.coll(key.coll).is_some() {
                    reduction::on_child(pe, key, partial, from);
                } else {
                    pe.hold_for_coll(key.coll, Envelope::Sys(SysMsg::Reduce { key, partial, from }));
                }
            }
            SysMsg::AllReduce { key, root, result, down } => {
                reduction::handle_allreduce(pe, key, root, result, down)
            }
            SysMsg::Red(m) => reduction::handle_sys(pe, m),
            SysMsg::Migrate { key, to } => collection::migrate::request(pe, key, to),
            SysMsg::Mig(m) => collection::migrate::handle(pe, m),
            SysMsg::Migrant(m) => collection::migrate::on_migrant(pe, *m),
            SysMsg::Lb(m) => crate::lb::handle(pe, m),
            SysMsg::Forwarded(env) => collection::migrate::on_forwarded(pe, *env),
            SysMsg::Wake(t) => pe.exec.wake(t),
            SysMsg::Run(f) => f(),
            SysMsg::Qd(m) => qd::handle(pe, m),
            SysMsg::Section(m) => collection::section::handle(pe, m),
            SysMsg::Pool(m) => crate::pool::handle(pe, m),
            SysMsg::Sparse(m) => collection::sparse::handle(pe, m),
            SysMsg::InsertLater { coll, index, on, ctor, args } => {
                if let Err(e) = collection::sparse::insert(pe, coll, index, on, ctor, args) {
                    fatal(&format!("an insertion made before the array's creation arrived failed: {e}"));
                }
            }
            SysMsg::Insert { coll, index, ctor, args, home } => {
                collection::sparse::on_insert(pe, coll, index, ctor, args, home)
            }
            SysMsg::Exit => {}
        },
    }
}

/// Delivers a multicast to a section: forwarded down the section's tree, delivered to
/// this PE's members; held until the section is installed here.
fn multicast(pe: &Rc<PeLocal>, env: Envelope) {
    let Envelope::Bcast { coll, ep, root, fwd, reply, args } = env else { unreachable!("a multicast") };
    let Some(info) = pe.coll(coll) else {
        pe.hold_for_coll(coll, Envelope::Bcast { coll, ep, root, fwd, reply, args });
        return;
    };
    if fwd {
        for &child in info.red.iter().flat_map(|r| &r.children) {
            let copy = Envelope::Bcast { coll, ep, root, fwd: true, reply, args: args.clone() };
            pe.send(child, copy, 0);
        }
    }
    let Some(desc) = registry::entry(ep) else {
        fatal(&format!("multicast to an unknown entry method id {}", ep.0))
    };
    let reply = match reply {
        crate::msg::Reply::Bcast { fut, gather } => crate::msg::Reply::SecBcast { sec: coll, fut, gather },
        r => r,
    };
    for key in &info.members {
        let Some(elem) = pe.elem(key) else {
            fatal(&format!("member {} of section {coll} is not on PE {}", key.index, pe.id))
        };
        let env =
            Envelope::Call { coll: key.coll, index: key.index, ep, reply, args: Args::Shared(args.clone()) };
        deliver(pe, &elem, desc, env);
        if elem.meta().has_buffered() {
            retry_when(pe, &elem);
        }
    }
}

/// The idle protocol's view of a PE's inbox: the handshake's ordered check, and a plain
/// load while spinning. In a job of several processes, an idle PE also receives what
/// waits in the transport (shared-memory rings) while it spins, and hands receiving to
/// the transport's threads before it parks.
struct InboxCheck<'a> {
    inbox: &'a Inbox<Envelope>,
    net: Option<&'a Net>,
    pool: &'a crate::pool::PoolShared,
}

impl WorkCheck for InboxCheck<'_> {
    #[inline]
    fn has_work(&self) -> bool {
        if let Some(net) = self.net {
            net.poll();
        }
        !self.inbox.is_empty() || self.pool.confirm_queued()
    }

    #[inline]
    fn looks_busy(&self) -> bool {
        if self.inbox.looks_nonempty() || self.pool.has_queued() {
            return true;
        }
        match self.net {
            Some(net) => net.poll_active(),
            None => false,
        }
    }

    #[inline]
    fn before_park(&self) {
        if let Some(net) = self.net {
            net.pes_sleeping();
        }
    }
}
