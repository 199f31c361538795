//! Fault injection between the loop and the kernel (feature `faults`).
//!
//! With a seed, the driver perturbs what the loop sees, always within what
//! the kernel may really do: reads and writes shorter than asked (down to
//! one byte), `WouldBlock` where data or room was there (on an
//! edge-triggered backend the missed edge is owed and comes with a later
//! wait, as it would after the socket emptied and filled), resets and
//! broken pipes at any read or write, waits that return early, spurious
//! readiness, `ECONNABORTED` and `EMFILE` on accept, connects refused at
//! once or failed once under way; on `uring`, sends shorter than asked, completions held back to a
//! later turn and reordered across operations (never within one), and
//! submissions refused with `EBUSY`. The same seed gives the same fault
//! schedule for the same sequence of calls.
//!
//! ```
//! use iomux::faults::FaultPlan;
//!
//! let plan: FaultPlan = "42:0.1".parse()?;
//! assert_eq!((plan.seed, plan.rate), (42, 0.1));
//! let mut config = iomux::Config::default();
//! config.faults = Some(plan); // or IOMUX_FAULTS=42:0.1 in the environment
//! # Ok::<(), String>(())
//! ```

use std::io;
use std::str::FromStr;
use std::time::Duration;

use crate::selector::{Event, Events, Ready, Token};

/// A fault schedule: its seed, and the share of calls that fail or are
/// cut short (0 to 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultPlan {
    /// The schedule's seed; the same seed, the same schedule.
    pub seed: u64,
    /// The chance that one call is perturbed.
    pub rate: f64,
}

impl FaultPlan {
    /// The rate when only a seed is given.
    pub const DEFAULT_RATE: f64 = 0.05;

    /// `IOMUX_FAULTS`, if set: `SEED` or `SEED:RATE`.
    ///
    /// # Errors
    /// The variable is set but is not `SEED[:RATE]`.
    pub fn from_env() -> Option<Result<FaultPlan, String>> {
        let text = std::env::var("IOMUX_FAULTS").ok()?;
        Some(text.parse())
    }
}

/// `SEED` or `SEED:RATE`, as in `IOMUX_FAULTS`.
impl FromStr for FaultPlan {
    type Err = String;
    fn from_str(s: &str) -> Result<FaultPlan, String> {
        let (seed, rate) = match s.split_once(':') {
            Some((seed, rate)) => (seed, Some(rate)),
            None => (s, None),
        };
        let seed = seed
            .trim()
            .parse()
            .map_err(|e| format!("IOMUX_FAULTS: {s:?}: the seed is not a number: {e}"))?;
        let rate = match rate {
            None => FaultPlan::DEFAULT_RATE,
            Some(r) => match r.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(format!(
                        "IOMUX_FAULTS: {s:?}: the rate must be between 0 and 1"
                    ));
                }
            },
        };
        Ok(FaultPlan { seed, rate })
    }
}

impl std::fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seed, self.rate)
    }
}

/// One fault stream: a seeded generator and what it still owes.
pub(crate) struct Faults {
    plan: FaultPlan,
    state: u64,
    /// Edges the loop missed because of an injected `WouldBlock`: each
    /// comes back as an event with a later wait.
    owed: Vec<Token>,
    /// A token seen lately, for a spurious event.
    recent: Option<Token>,
    /// Faults injected so far.
    pub(crate) injected: u64,
}

impl Faults {
    /// The faults a loop runs with: its config's plan, else
    /// `IOMUX_FAULTS` (an unreadable one is logged and ignored).
    pub(crate) fn for_loop(configured: Option<FaultPlan>) -> Option<Faults> {
        let plan = match configured {
            Some(plan) => plan,
            None => match FaultPlan::from_env()? {
                Ok(plan) => plan,
                Err(e) => {
                    log::error!(target: "iomux::faults", "{e}; no faults injected");
                    return None;
                }
            },
        };
        log::warn!(target: "iomux::faults", "injecting faults: IOMUX_FAULTS={plan}");
        Some(Faults::new(plan, 0))
    }

    /// A stream of `plan`'s faults; `stream` tells apart two streams of one
    /// loop (the driver's, the ring's).
    pub(crate) fn new(plan: FaultPlan, stream: u64) -> Faults {
        Faults {
            plan,
            state: plan.seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x853c_49e6_748f_ea9b,
            owed: Vec::new(),
            recent: None,
            injected: 0,
        }
    }

    pub(crate) fn plan(&self) -> FaultPlan {
        self.plan
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True for one call in `1 / rate`, counted.
    fn strike(&mut self) -> bool {
        let hit = (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= self.plan.rate
            && self.plan.rate > 0.0;
        self.injected += u64::from(hit);
        hit
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// What a read of up to `len` bytes on `token` may take: fewer bytes
    /// (`Ok(n)`, n ≥ 1), or an error (a reset, or `WouldBlock`); a cut read
    /// owes an edge-triggered backend its next edge.
    pub(crate) fn read(&mut self, token: Token, len: usize, edge: bool) -> io::Result<usize> {
        if len == 0 || !self.strike() {
            return Ok(len);
        }
        let cut = match self.below(8) {
            0 => return Err(io::ErrorKind::ConnectionReset.into()),
            1 | 2 => Err(io::ErrorKind::WouldBlock.into()),
            _ => Ok(1 + self.below(len)),
        };
        log::debug!(target: "iomux::faults", "read on {token:?} of {len}: {cut:?}");
        // The loop takes a short read as "the socket is empty now": then
        // more came, and on an edge-triggered backend that is an edge.
        if edge {
            self.owed.push(token);
        }
        cut
    }

    /// What a write of `len` bytes on `token` may put in the socket now:
    /// fewer bytes (0: the socket is full), or an error (a reset, a broken
    /// pipe); a cut write owes an edge-triggered backend its next edge.
    pub(crate) fn write(&mut self, token: Token, len: usize, edge: bool) -> io::Result<usize> {
        if len == 0 || !self.strike() {
            return Ok(len);
        }
        let cut = match self.below(10) {
            0 => return Err(io::ErrorKind::ConnectionReset.into()),
            1 => return Err(io::ErrorKind::BrokenPipe.into()),
            2 | 3 => 0,
            _ => 1 + self.below(len),
        };
        log::debug!(target: "iomux::faults", "write on {token:?} of {len}: {cut}");
        // The socket was full: room comes back, an edge on an
        // edge-triggered backend.
        if edge {
            self.owed.push(token);
        }
        Ok(cut)
    }

    /// An accept that fails although a connection waits: aborted (the
    /// loop tries the next), or out of descriptors (it backs off).
    pub(crate) fn accept(&mut self) -> Option<rustix::io::Errno> {
        if !self.strike() {
            return None;
        }
        Some(match self.below(4) {
            0 => rustix::io::Errno::MFILE,
            _ => rustix::io::Errno::CONNABORTED,
        })
    }

    /// A connect refused at once.
    pub(crate) fn connect(&mut self) -> Option<io::Error> {
        self.strike()
            .then(|| io::Error::from(io::ErrorKind::ConnectionRefused))
    }

    /// A connect that was under way (`EINPROGRESS`) and failed: what the
    /// socket's error says when it turns writable (refused, reset, timed
    /// out).
    pub(crate) fn connect_outcome(&mut self) -> Option<io::Error> {
        if !self.strike() {
            return None;
        }
        Some(io::Error::from(match self.below(3) {
            0 => io::ErrorKind::ConnectionRefused,
            1 => io::ErrorKind::ConnectionReset,
            _ => io::ErrorKind::TimedOut,
        }))
    }

    /// The wait's timeout, or zero: a wait that returns early, with
    /// nothing (or only what was owed).
    pub(crate) fn wait_timeout(&mut self, timeout: Option<Duration>) -> Option<Duration> {
        // An owed edge comes with the next wait, not after a sleep that
        // nothing else would end.
        if !self.owed.is_empty() || self.strike() {
            Some(Duration::ZERO)
        } else {
            timeout
        }
    }

    /// After a wait: the owed edges, and now and then a spurious event
    /// for a token seen lately (which may be stale by now).
    pub(crate) fn after_wait(&mut self, events: &mut Events) {
        // An edge reports the socket's whole state, the peer's end of
        // stream included if it came: say it may have (the loop then reads
        // on past a short read, which costs one read if it did not).
        let owed = Ready::READABLE | Ready::WRITABLE | Ready::READ_CLOSED;
        for token in std::mem::take(&mut self.owed) {
            let pushed = events.push(Event::new(token, owed));
            log::debug!(target: "iomux::faults", "owed edge for {token:?} (given: {pushed})");
        }
        if let Some(first) = events.iter().next() {
            self.recent = Some(first.token);
        } else if let Some(token) = self.recent
            && self.strike()
        {
            events.push(Event::new(token, Ready::READABLE | Ready::WRITABLE));
        }
    }

    /// How many of a send's `len` bytes go to the kernel (the rest is
    /// sent after its completion, as after any short send).
    pub(crate) fn send_len(&mut self, len: usize) -> usize {
        if len <= 1 || !self.strike() {
            len
        } else {
            1 + self.below(len - 1)
        }
    }

    /// Whether to skip this turn's `io_uring_enter` as if the kernel had
    /// said `EBUSY` (what was queued goes with the next one).
    pub(crate) fn busy(&mut self) -> bool {
        self.strike()
    }

    /// Of a batch of completions, which to hold back to a later turn, and
    /// in what order to give the rest: shuffled across operations (`op`
    /// names an item's), in order within one. `held` (from earlier turns)
    /// goes first, and an operation with a completion held keeps its later
    /// ones behind it.
    pub(crate) fn reorder<T>(
        &mut self,
        batch: &mut Vec<T>,
        held: &mut Vec<T>,
        op: impl Fn(&T) -> u64,
    ) {
        let mut out: Vec<T> = std::mem::take(held);
        let mut late: Vec<T> = Vec::new();
        for item in batch.drain(..) {
            let behind = late.iter().any(|l| op(l) == op(&item));
            if behind || self.strike() {
                late.push(item);
            } else {
                out.push(item);
            }
        }
        // Swap neighbours of different operations, now and then: equal
        // ones never pass each other.
        for i in 1..out.len() {
            if op(&out[i - 1]) != op(&out[i]) && self.strike() {
                out.swap(i - 1, i);
            }
        }
        *batch = out;
        *held = late;
    }
}
