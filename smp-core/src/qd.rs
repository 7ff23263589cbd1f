//! Quiescence detection: the counting algorithm with two waves. Every PE counts the
//! messages it sent and processed (QD's own waves and the runtime's wake-ups are not
//! counted). The root (PE 0) sends a wave down the spanning tree; each PE adds its
//! counters to its children's and answers up. When two consecutive waves return the
//! same totals with sent == processed, no message was in flight or processed between
//! them: the job was quiescent at the end of the first wave, and stays so since only
//! a message could start work again. Otherwise the root starts another wave after a
//! short pause.

use std::cell::{Cell, RefCell};
// Fx: the keys are the runtime's own ids, never attacker-controlled, and SipHash
// would cost more than the rest of a local message dispatch.
use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::future::Future;
use crate::msg::Envelope;
use crate::pe::{with_pe, PeId, PeLocal, SysMsg};
use crate::reduction::RedTarget;

/// Pause between two waves that did not find quiescence.
const WAVE_PAUSE: Duration = Duration::from_micros(200);

/// A QD message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum QdMsg {
    /// To the root: tell PE `origin` (with `token`) at quiescence. The target itself
    /// stays on its PE: it may be a closure, which cannot travel.
    Start {
        /// The PE that keeps the target.
        origin: PeId,
        /// Which of its targets.
        token: u64,
    },
    /// Root to the origin of a `Start`: the job is quiescent.
    Done {
        /// The target to call.
        token: u64,
    },
    /// Root to all: report your counters for wave `wave`.
    Wave(u64),
    /// Child to parent: the counters of a subtree.
    Reply {
        /// The wave.
        wave: u64,
        /// Messages sent in the subtree.
        sent: u64,
        /// Messages processed in the subtree.
        processed: u64,
    },
}

/// Counters and wave state of one PE.
pub(crate) struct QdState {
    sent: Cell<u64>,
    processed: Cell<u64>,
    /// Per wave in progress: totals so far and children heard from.
    gather: RefCell<HashMap<u64, (u64, u64, u32)>>,
    /// Root only: the requests to answer at quiescence (origin PE, token).
    waiting: RefCell<Vec<(PeId, u64)>>,
    /// Targets of the requests this PE made, by token.
    targets: RefCell<HashMap<u64, RedTarget<()>>>,
    /// Next token.
    next_token: Cell<u64>,
    /// Root only: a wave is under way.
    active: Cell<bool>,
    /// Root only: the last wave's totals, when they were balanced.
    last: Cell<Option<(u64, u64)>>,
    wave: Cell<u64>,
}

impl QdState {
    /// Zero counters.
    pub(crate) fn new() -> QdState {
        QdState {
            sent: Cell::new(0),
            processed: Cell::new(0),
            gather: RefCell::new(HashMap::default()),
            waiting: RefCell::new(Vec::new()),
            targets: RefCell::new(HashMap::default()),
            next_token: Cell::new(0),
            active: Cell::new(false),
            last: Cell::new(None),
            wave: Cell::new(0),
        }
    }

    /// A counted message was sent.
    #[inline]
    pub(crate) fn sent(&self) {
        self.sent.set(self.sent.get() + 1);
    }

    /// A counted message was processed.
    #[inline]
    pub(crate) fn processed(&self) {
        self.processed.set(self.processed.get() + 1);
    }
}

/// Calls `target` when the job is quiescent (Charm4py's `charm.startQD(callback)`):
/// a [`Future`] of `()`, or an entry method taking `()` through
/// [`RedTarget::call`].
pub fn start_qd(target: impl Into<RedTarget<()>>) {
    let target = target.into();
    with_pe(|pe| {
        let token = pe.qd.next_token.get();
        pe.qd.next_token.set(token + 1);
        pe.qd.targets.borrow_mut().insert(token, target);
        pe.send(PeId(0), Envelope::Sys(SysMsg::Qd(QdMsg::Start { origin: pe.id, token })), 0)
    });
}

/// Waits until the job is quiescent (Charm4py's `charm.waitQD()`).
pub async fn wait_qd() -> crate::Result<()> {
    let f = Future::<()>::new();
    start_qd(&f);
    f.await
}

/// Handles a QD message.
pub(crate) fn handle(pe: &Rc<PeLocal>, msg: QdMsg) {
    match msg {
        QdMsg::Done { token } => match pe.qd.targets.borrow_mut().remove(&token) {
            Some(t) => t.deliver(Ok(())),
            None => {
                crate::chare::invoke::fatal(&format!("quiescence reported for an unknown request {token}"))
            }
        },
        QdMsg::Start { origin, token } => {
            pe.qd.waiting.borrow_mut().push((origin, token));
            if !pe.qd.active.replace(true) {
                pe.qd.last.set(None);
                start_wave(pe);
            }
        }
        QdMsg::Wave(w) => {
            let root = PeId(0);
            let children: Vec<PeId> = pe.shared.span.children(root, pe.id);
            for &c in &children {
                pe.send(c, Envelope::Sys(SysMsg::Qd(QdMsg::Wave(w))), 0);
            }
            pe.qd.gather.borrow_mut().insert(w, (pe.qd.sent.get(), pe.qd.processed.get(), 0));
            maybe_reply(pe, w, children.len() as u32);
        }
        QdMsg::Reply { wave, sent, processed } => {
            if let Some(g) = pe.qd.gather.borrow_mut().get_mut(&wave) {
                g.0 += sent;
                g.1 += processed;
                g.2 += 1;
            }
            let n = pe.shared.span.num_children(PeId(0), pe.id) as u32;
            maybe_reply(pe, wave, n);
        }
    }
}

fn start_wave(pe: &Rc<PeLocal>) {
    let w = pe.qd.wave.get() + 1;
    pe.qd.wave.set(w);
    pe.send(pe.id, Envelope::Sys(SysMsg::Qd(QdMsg::Wave(w))), 0);
}

fn maybe_reply(pe: &Rc<PeLocal>, wave: u64, children: u32) {
    let done = {
        let g = pe.qd.gather.borrow();
        matches!(g.get(&wave), Some(&(_, _, got)) if got == children)
    };
    if !done {
        return;
    }
    let Some((sent, processed, _)) = pe.qd.gather.borrow_mut().remove(&wave) else { return };
    match pe.shared.span.parent(PeId(0), pe.id) {
        Some(parent) => pe.send(parent, Envelope::Sys(SysMsg::Qd(QdMsg::Reply { wave, sent, processed })), 0),
        None => at_root(pe, sent, processed),
    }
}

fn at_root(pe: &Rc<PeLocal>, sent: u64, processed: u64) {
    let balanced = sent == processed;
    if balanced && pe.qd.last.get() == Some((sent, processed)) {
        pe.qd.active.set(false);
        pe.qd.last.set(None);
        let waiting = std::mem::take(&mut *pe.qd.waiting.borrow_mut());
        for (origin, token) in waiting {
            pe.send(origin, Envelope::Sys(SysMsg::Qd(QdMsg::Done { token })), 0);
        }
        return;
    }
    pe.qd.last.set(balanced.then_some((sent, processed)));
    let pe2 = Rc::clone(pe);
    pe.timers.add(Instant::now() + WAVE_PAUSE, Box::new(move || start_wave(&pe2)));
}
