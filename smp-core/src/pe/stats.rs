//! Per-PE counters (`+stats`): messages and bytes sent and received, time in each entry
//! method (for an async method, until its first suspension), idle time (idle periods
//! shorter than one spin batch, a few hundred nanoseconds, are not counted). Counting is a plain `Cell` increment, so it stays compiled in;
//! timing each entry method costs two clock reads and only happens under `+stats`.

use std::cell::{Cell, RefCell};
// Fx: the keys are the runtime's own ids, never attacker-controlled, and SipHash
// would cost more than the rest of a local message dispatch.
use rustc_hash::FxHashMap as HashMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::chare::registry::{self, EpId};
use crate::pe::PeId;

/// Live counters of one PE.
pub(crate) struct Stats {
    timed: bool,
    msgs_sent: Cell<u64>,
    bytes_sent: Cell<u64>,
    msgs_recv: Cell<u64>,
    bytes_recv: Cell<u64>,
    idle: Cell<Duration>,
    parks: Cell<u64>,
    per_ep: RefCell<HashMap<EpId, EpTime>>,
    started: Instant,
}

/// Calls of one entry method and the time spent in them.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EpTime {
    /// Number of calls.
    pub(crate) calls: u64,
    /// Total time in the method (synchronous part).
    pub(crate) time: Duration,
}

/// The counters of one PE at the end of the job.
#[derive(Debug, Default)]
pub(crate) struct PeStats {
    /// The PE.
    pub(crate) pe: u32,
    /// Messages sent.
    pub(crate) msgs_sent: u64,
    /// Payload bytes sent (shallow size: in-process messages move, they are not copied).
    pub(crate) bytes_sent: u64,
    /// Messages received.
    pub(crate) msgs_recv: u64,
    /// Payload bytes received.
    pub(crate) bytes_recv: u64,
    /// Time spent idle (spinning or parked).
    pub(crate) idle: Duration,
    /// Times the PE parked.
    pub(crate) parks: u64,
    /// Times another thread had to wake it from a park (a syscall).
    pub(crate) wakes: u64,
    /// Wall time of the PE's loop.
    pub(crate) wall: Duration,
    /// Per entry method.
    pub(crate) per_ep: Vec<(EpId, EpTime)>,
    /// Errors delivered to futures that nobody awaited.
    pub(crate) unobserved_errors: Vec<String>,
}

impl Stats {
    /// Fresh counters; `timed` turns on per-entry-method timing.
    pub(crate) fn new(timed: bool) -> Stats {
        Stats {
            timed,
            msgs_sent: Cell::new(0),
            bytes_sent: Cell::new(0),
            msgs_recv: Cell::new(0),
            bytes_recv: Cell::new(0),
            idle: Cell::new(Duration::ZERO),
            parks: Cell::new(0),
            per_ep: RefCell::new(HashMap::default()),
            started: Instant::now(),
        }
    }

    /// A message left.
    #[inline]
    pub(crate) fn sent(&self, bytes: u64) {
        self.msgs_sent.set(self.msgs_sent.get() + 1);
        self.bytes_sent.set(self.bytes_sent.get() + bytes);
    }

    /// A message arrived.
    #[inline]
    pub(crate) fn received(&self) {
        self.msgs_recv.set(self.msgs_recv.get() + 1);
    }

    /// An entry method took arguments of this (shallow) size.
    #[inline]
    pub(crate) fn received_bytes(&self, bytes: u64) {
        self.bytes_recv.set(self.bytes_recv.get() + bytes);
    }

    /// Starts timing an entry method (`None` unless `+stats`).
    #[inline]
    pub(crate) fn start_ep(&self) -> Option<Instant> {
        self.timed.then(Instant::now)
    }

    /// Ends timing an entry method.
    #[inline]
    pub(crate) fn end_ep(&self, ep: EpId, started: Option<Instant>) {
        if let Some(t0) = started {
            let mut m = self.per_ep.borrow_mut();
            let e = m.entry(ep).or_default();
            e.calls += 1;
            e.time += t0.elapsed();
        }
    }

    /// Adds an idle period.
    #[inline]
    pub(crate) fn idle(&self, d: Duration, parked: bool) {
        self.idle.set(self.idle.get() + d);
        if parked {
            self.parks.set(self.parks.get() + 1);
        }
    }

    /// The counters so far.
    pub(crate) fn snapshot(&self, pe: PeId) -> PeStats {
        let mut per_ep: Vec<_> = self.per_ep.borrow().iter().map(|(k, v)| (*k, *v)).collect();
        per_ep.sort_by_key(|(k, _)| k.0);
        PeStats {
            pe: pe.0,
            msgs_sent: self.msgs_sent.get(),
            bytes_sent: self.bytes_sent.get(),
            msgs_recv: self.msgs_recv.get(),
            bytes_recv: self.bytes_recv.get(),
            idle: self.idle.get(),
            parks: self.parks.get(),
            wakes: 0,
            wall: self.started.elapsed(),
            per_ep,
            unobserved_errors: Vec::new(),
        }
    }
}

/// Prints the `+stats` table: one row per PE, then one row per entry method and PE.
pub(crate) fn print_table(out: &mut impl Write, all: &[PeStats], whose: Option<&str>) -> io::Result<()> {
    match whose {
        Some(w) => writeln!(out, "charmrs stats of {w}")?,
        None => writeln!(out, "charmrs stats")?,
    }
    writeln!(
        out,
        "{:>4} {:>12} {:>14} {:>12} {:>14} {:>10} {:>7} {:>8} {:>8}",
        "PE", "msgs sent", "bytes sent*", "msgs recv", "bytes recv*", "idle ms", "idle %", "parks", "wakes"
    )?;
    for s in all {
        let pct = if s.wall.is_zero() { 0.0 } else { 100.0 * s.idle.as_secs_f64() / s.wall.as_secs_f64() };
        writeln!(
            out,
            "{:>4} {:>12} {:>14} {:>12} {:>14} {:>10.3} {:>7.1} {:>8} {:>8}",
            s.pe,
            s.msgs_sent,
            s.bytes_sent,
            s.msgs_recv,
            s.bytes_recv,
            s.idle.as_secs_f64() * 1e3,
            pct,
            s.parks,
            s.wakes
        )?;
    }
    writeln!(
        out,
        "* payload bytes, shallow: messages inside a process move their payload, nothing is copied"
    )?;
    writeln!(out, "{:>4} {:<40} {:>10} {:>12} {:>10}", "PE", "entry method", "calls", "total ms", "avg us")?;
    for s in all {
        for (ep, t) in &s.per_ep {
            let name = registry::entry(*ep).map(|d| d.name()).unwrap_or("?");
            let avg = if t.calls == 0 { 0.0 } else { t.time.as_secs_f64() * 1e6 / t.calls as f64 };
            writeln!(
                out,
                "{:>4} {:<40} {:>10} {:>12.3} {:>10.3}",
                s.pe,
                name,
                t.calls,
                t.time.as_secs_f64() * 1e3,
                avg
            )?;
        }
    }
    Ok(())
}
