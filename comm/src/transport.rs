//! The interface every transport offers the runtime, split by capability: sending a
//! message to a process ([`Transport`]) and receiving ([`Receiver`], called by the
//! transport). The runtime builds one message per destination process into a buffer
//! made by [`crate::frame::open_frame`] and hands it over; which transport carries it
//! (TCP today; shared memory, libfabric and UCX to come) it does not know.

/// Where a transport delivers what arrives. Called on the transport's own threads.
pub trait Receiver: Send + Sync + 'static {
    /// A message from process `from` (the frame's payload; it may point into shared
    /// memory, valid for the call only).
    fn deliver(&self, from: u32, msg: &[u8]);
    /// A message from process `from` whose last `tail.len()` bytes are still being
    /// written (a large message through shared memory: the sender copies them in while
    /// this process copies them out). `msg` is the rest, all there. The default waits
    /// for the whole message and calls [`Receiver::deliver`] with a copy of it; a
    /// receiver that copies the tail where it needs it ([`Tail::copy_to`]) overlaps its
    /// copy with the sender's.
    #[allow(unsafe_code)] // one `set_len` after the copy: see the SAFETY comment
    fn deliver_streamed(&self, from: u32, msg: &[u8], tail: &dyn Tail) {
        let mut all = Vec::with_capacity(msg.len() + tail.len());
        all.extend_from_slice(msg);
        let at = all.len();
        if tail.copy_to(0, &mut all.spare_capacity_mut()[..tail.len()]).is_ok() {
            // SAFETY: `copy_to` succeeded: it initialized the `tail.len()` bytes after
            // the `at` already there, within the capacity reserved above.
            unsafe { all.set_len(at + tail.len()) };
            self.deliver(from, &all);
        }
        // Otherwise the sender is gone: the transport reports it (`closed`).
    }
    /// The connection to process `from` ended: in order (it said goodbye first) or not.
    fn closed(&self, from: u32, how: Closed);
}

/// The end of a message that is still arriving: bytes that can be copied out, each as
/// soon as the sender has written it (see [`Receiver::deliver_streamed`]).
pub trait Tail {
    /// How many bytes.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies bytes `at..at + dst.len()` into `dst`, waiting for each to be written;
    /// when it returns `Ok`, all of `dst` is initialized.
    ///
    /// # Errors
    /// The range is out of bounds, or the sender is gone before it wrote them (they
    /// never come).
    fn copy_to(&self, at: usize, dst: &mut [std::mem::MaybeUninit<u8>]) -> Result<(), String>;
}

/// How a connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The peer said goodbye: it is ending with the job.
    Goodbye,
    /// The peer vanished (it died, or the link broke), or sent bytes that are not frames.
    Lost(String),
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No such process, or this process itself.
    #[error("no connection to process {0}")]
    NoPeer(u32),
    /// The message does not fit a frame.
    #[error(transparent)]
    Frame(#[from] crate::frame::FrameError),
    /// The connection failed.
    #[error("sending to process {to} failed: {err}")]
    Io {
        /// The destination.
        to: u32,
        /// What failed.
        err: std::io::Error,
    },
}

/// Sends messages to the other processes of the job.
pub trait Transport: Send + Sync {
    /// The transport's name, for logs (`tcp`, `shm`, ...).
    fn name(&self) -> &'static str;

    /// Sends one message to process `to`. `msg` was made by
    /// [`crate::frame::open_frame`] and holds the payload after the header room. Messages
    /// from one thread to one process arrive in the order they were sent. Blocks while the
    /// connection cannot take more (back-pressure), never buffers without bound.
    ///
    /// # Errors
    /// See [`SendError`].
    fn send(&self, to: u32, msg: Vec<u8>) -> Result<(), SendError>;

    /// Sends one message made of `msg` (as for [`Transport::send`]) followed by the bytes
    /// of `tail`, in order, as if they had been appended to `msg`: the receiver gets one
    /// contiguous message. Transports that can copy the tail straight to its destination
    /// (shared memory, a socket) do so; the default appends it to `msg` first.
    ///
    /// # Errors
    /// See [`SendError`].
    fn send_parts(&self, to: u32, mut msg: Vec<u8>, tail: &[&[u8]]) -> Result<(), SendError> {
        for t in tail {
            msg.extend_from_slice(t);
        }
        self.send(to, msg)
    }

    /// Ends every connection in order: the peers learn that this process is ending with
    /// the job, not dying. Later sends fail.
    fn goodbye(&self);

    /// Receives on the calling thread what is waiting, if this transport can (shared
    /// memory can; TCP receives on its own threads): delivers it to the receiver and
    /// returns whether anything came. Idle PEs call it between looks at their inbox, so
    /// that a message that arrives while they spin costs no thread hand-off. Never
    /// blocks: a receive in progress on another thread makes it return `false`.
    fn poll(&self) -> bool {
        false
    }

    /// Hint: the PEs of this process are awake and poll (called while they spin).
    fn pes_active(&self) {}

    /// Hint: a PE of this process is about to sleep; the transport's own threads should
    /// receive until the PEs poll again.
    fn pes_sleeping(&self) {}
}

/// Whether the PEs of a process sleep (then a transport's own threads receive) or poll
/// (then those threads wait here and cost nothing). Shared by the transports that PEs
/// drive ([`crate::tcp`], `shm`).
pub(crate) struct Quiet {
    flag: std::sync::atomic::AtomicBool,
    /// Changes each time PEs poll (`active`): a thread receiving for them sees that
    /// they are polling now, not only that they said so once.
    polls: std::sync::atomic::AtomicU32,
    lock: std::sync::Mutex<()>,
    cv: std::sync::Condvar,
}

impl Quiet {
    /// Longest a transport thread waits for a hint before it receives anyway.
    pub(crate) const REARM: std::time::Duration = std::time::Duration::from_millis(20);

    /// Starts "asleep": until PEs say they poll, the transport's threads receive (so a
    /// transport used without a runtime, in tests and benchmarks, works on its own).
    pub(crate) fn new() -> Quiet {
        Quiet {
            flag: std::sync::atomic::AtomicBool::new(true),
            polls: std::sync::atomic::AtomicU32::new(0),
            lock: std::sync::Mutex::new(()),
            cv: std::sync::Condvar::new(),
        }
    }

    /// PEs poll (called while they spin): a load first, so spinning PEs do not keep
    /// writing a shared line.
    pub(crate) fn active(&self) {
        use std::sync::atomic::Ordering;
        // Not a read-modify-write: a lost count among PEs polling at once is harmless.
        self.polls.store(self.polls.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        if self.flag.load(Ordering::Relaxed) {
            self.flag.store(false, Ordering::Relaxed);
        }
    }

    /// A PE is about to park: wakes the waiting threads.
    pub(crate) fn sleeping(&self) {
        use std::sync::atomic::Ordering;
        if !self.flag.swap(true, Ordering::AcqRel) {
            let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.cv.notify_all();
        }
    }

    /// The poll count (see `polls`).
    pub(crate) fn polls(&self) -> u32 {
        self.polls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the PEs said they poll (since one last went to sleep) and polled since
    /// the count was `seen`: a PE blocked in a send (a full ring) does not poll, and the
    /// thread must go on receiving for it.
    pub(crate) fn polled_since(&self, seen: u32) -> bool {
        !self.flag.load(std::sync::atomic::Ordering::Relaxed) && self.polls() != seen
    }

    /// A transport thread: returns at once if the PEs sleep, otherwise when one goes to
    /// sleep or after [`Quiet::REARM`].
    pub(crate) fn wait(&self) {
        use std::sync::atomic::Ordering;
        let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.flag.load(Ordering::Acquire) {
            let _ = self.cv.wait_timeout(g, Self::REARM);
        }
    }
}
