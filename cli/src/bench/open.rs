//! How the load threads open their connections: each on its own loop, with
//! non-blocking connects ([`iomux::Ctx::connect`]), none of them
//! blocking a thread.
//!
//! - **The plan.** The run's connections are the idle ones first, then the
//!   active ones (light, then heavy), dealt round robin to the threads, so
//!   thread `t` opens idle `t`, `t + T`, ... and then active `t`, `t + T`,
//!   .... Each keeps its place in the whole order, which is what
//!   `--connect-rate` paces: connection `n` is due `n / R` seconds after
//!   the run started, on whichever thread opens it. The run's rate is the
//!   same as one thread opening them one after another at `R` per second.
//! - **The address.** Of several addresses (a name resolving to `::1` and
//!   `127.0.0.1`) the first that accepts is used for every connection. The
//!   first thread decides it with its first connection, trying them in
//!   order, before anything else is opened; the other threads start once
//!   it is known.
//! - **The gates** ([`Gates`]). Every thread's idle connections are open
//!   before any thread opens an active one (so [`super::Phase::IdleOpen`]
//!   means what it says), and every connection of every thread is open
//!   before any load starts: the connect time is reported on its own and
//!   stays out of the window. A thread waiting at a gate sleeps in its
//!   loop; the last one to arrive rings the others' wakers.
//!
//! A Unix-domain connect whose server's accept queue is full fails at once
//! with `WouldBlock`: it is tried again every millisecond until the connect
//! timeout, counted from its first try.

use iomux::{Addr, ConnId, Waker};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Connects a thread has in progress at most: a burst of thousands would
/// only queue up in the server's backlog (and drop SYNs once it is full).
const MAX_CONNECTING: usize = 64;

/// What a planned connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Idle,
    Light,
    Heavy,
}

impl Kind {
    /// Its name in messages, as `iomux bench` has always said it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Idle => "idle",
            Kind::Light => "active",
            Kind::Heavy => "heavy",
        }
    }
}

/// One connection of the run's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub kind: Kind,
    /// Its number among the run's connections of its kind (from 0)...
    pub number: usize,
    /// ...and how many of that kind the run has.
    pub of: usize,
    /// Its place in the run's whole order (idle first): what
    /// `--connect-rate` paces.
    pub order: usize,
}

/// The run's connections, dealt round robin to `threads` threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub idle: usize,
    pub light: usize,
    pub heavy: usize,
    pub threads: usize,
}

/// How many of `total` things dealt round robin to `threads` go to `t`.
fn share(total: usize, threads: usize, t: usize) -> usize {
    total / threads + usize::from(t < total % threads)
}

impl Plan {
    pub(crate) fn idle_of(&self, t: usize) -> usize {
        share(self.idle, self.threads, t)
    }

    pub(crate) fn active_of(&self, t: usize) -> usize {
        share(self.light + self.heavy, self.threads, t)
    }

    /// Light connections of thread `t` (the active ones come light first,
    /// so these are its active ones numbered below `light`).
    pub(crate) fn light_of(&self, t: usize) -> usize {
        share(self.light, self.threads, t)
    }

    /// Thread `t`'s `k`-th idle connection.
    fn idle(&self, t: usize, k: usize) -> Planned {
        let number = k * self.threads + t;
        Planned {
            kind: Kind::Idle,
            number,
            of: self.idle,
            order: number,
        }
    }

    /// Thread `t`'s `k`-th active connection.
    fn active(&self, t: usize, k: usize) -> Planned {
        let i = k * self.threads + t;
        let (kind, number, of) = if i < self.light {
            (Kind::Light, i, self.light)
        } else {
            (Kind::Heavy, i - self.light, self.heavy)
        };
        Planned {
            kind,
            number,
            of,
            order: self.idle + i,
        }
    }
}

/// One try at opening a planned connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub planned: Planned,
    /// When its first try started: a Unix-domain connect tried again
    /// after `WouldBlock` gives up a connect timeout after it.
    pub since: Instant,
}

/// Where a thread is in opening its share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Opening its idle connections.
    Idle,
    /// Its idle connections are open; the other threads' are not all.
    WaitIdle,
    /// Opening its active connections.
    Active,
    /// All its connections are open; the other threads' are not all.
    WaitOpen,
    /// Every thread's connections are open: the load runs.
    Done,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Start this connect now.
    Start(Attempt),
    /// The next connect is due then (`--connect-rate`).
    At(Instant),
    /// Nothing to start until a connect in progress ends, or a gate opens.
    Wait,
}

/// One thread's progress through its share of the plan; `K` names a
/// connect in progress (the loop's `ConnId`).
pub(crate) struct Opener<K = ConnId> {
    plan: Plan,
    thread: usize,
    pub(crate) stage: Stage,
    /// The next connection of the stage to start, and how many of the
    /// stage's connections are neither open nor given up yet.
    next: usize,
    unresolved: usize,
    in_flight: HashMap<K, Attempt>,
    /// Unix-domain connects that found the accept queue full.
    retry: VecDeque<Attempt>,
    addrs: Vec<Addr>,
    /// The address tried now; final once `chosen`.
    current: usize,
    chosen: bool,
    /// `--connect-rate`, and when the run started.
    rate: Option<f64>,
    origin: Instant,
}

impl<K: Eq + std::hash::Hash> Opener<K> {
    /// Thread `thread`'s opener. With `chosen`, `addrs` holds the one
    /// address every connection uses; without, they are tried in order.
    pub(crate) fn new(
        plan: Plan,
        thread: usize,
        addrs: Vec<Addr>,
        chosen: bool,
        rate: Option<f64>,
        origin: Instant,
    ) -> Opener<K> {
        Opener {
            plan,
            thread,
            stage: Stage::Idle,
            next: 0,
            unresolved: plan.idle_of(thread),
            in_flight: HashMap::new(),
            retry: VecDeque::new(),
            addrs,
            current: 0,
            chosen,
            rate,
            origin,
        }
    }

    /// The address connects go to now. `addrs` is never empty: the run's
    /// configuration is validated first.
    pub(crate) fn addr(&self) -> &Addr {
        &self.addrs[self.current.min(self.addrs.len() - 1)]
    }

    /// The addresses tried, for a message when none accepts.
    pub(crate) fn addrs(&self) -> &[Addr] {
        &self.addrs
    }

    pub(crate) fn chosen(&self) -> bool {
        self.chosen
    }

    fn stage_len(&self) -> usize {
        match self.stage {
            Stage::Idle => self.plan.idle_of(self.thread),
            Stage::Active => self.plan.active_of(self.thread),
            _ => 0,
        }
    }

    /// The next connect to start, if one may start at `now`.
    pub(crate) fn next(&mut self, now: Instant) -> Next {
        let in_progress = self.in_flight.len() + self.retry.len();
        let opening = matches!(self.stage, Stage::Idle | Stage::Active);
        // Until an address accepted, one connect at a time finds it.
        let room = if self.chosen { MAX_CONNECTING } else { 1 };
        if !opening || self.next >= self.stage_len() || in_progress >= room {
            return Next::Wait;
        }
        let planned = if self.stage == Stage::Idle {
            self.plan.idle(self.thread, self.next)
        } else {
            self.plan.active(self.thread, self.next)
        };
        if let Some(rate) = self.rate {
            // At most a year ahead: far beyond any run, never an overflow.
            let secs = (planned.order as f64 / rate).clamp(0.0, 31_536_000.0);
            let due = self.origin + Duration::from_secs_f64(secs);
            if due > now {
                return Next::At(due);
            }
        }
        self.next += 1;
        Next::Start(Attempt {
            planned,
            since: now,
        })
    }

    /// `attempt`'s connect is in progress as `id`.
    pub(crate) fn started(&mut self, id: K, attempt: Attempt) {
        self.in_flight.insert(id, attempt);
    }

    /// `id` is established: what it was planned as, and whether it decided
    /// the address (the first to open).
    pub(crate) fn opened(&mut self, id: K) -> Option<(Planned, bool)> {
        let attempt = self.in_flight.remove(&id)?;
        self.unresolved = self.unresolved.saturating_sub(1);
        let first = !self.chosen;
        self.chosen = true;
        Some((attempt.planned, first))
    }

    /// `id` was a connect in progress that failed: its attempt, for the
    /// caller to try again or give up on.
    pub(crate) fn failed(&mut self, id: K) -> Option<Attempt> {
        self.in_flight.remove(&id)
    }

    /// The connect is given up (and counted as a failure).
    pub(crate) fn give_up(&mut self) {
        self.unresolved = self.unresolved.saturating_sub(1);
    }

    /// Before an address accepted: moves on to the next one, if any.
    pub(crate) fn next_addr(&mut self) -> bool {
        if self.chosen || self.current + 1 >= self.addrs.len() {
            return false;
        }
        self.current += 1;
        true
    }

    /// Tries `attempt` again at the next retry tick.
    pub(crate) fn retry_later(&mut self, attempt: Attempt) {
        self.retry.push_back(attempt);
    }

    /// The connects to try again now.
    pub(crate) fn take_retries(&mut self) -> VecDeque<Attempt> {
        std::mem::take(&mut self.retry)
    }

    /// Connects in progress or waiting to be tried again (once the load
    /// runs, the replacements of connections closed after a timeout).
    pub(crate) fn connecting(&self) -> usize {
        self.in_flight.len() + self.retry.len()
    }

    /// Every connection of the stage is open or given up.
    pub(crate) fn stage_complete(&self) -> bool {
        matches!(self.stage, Stage::Idle | Stage::Active) && self.unresolved == 0
    }

    /// On to the next stage.
    pub(crate) fn advance(&mut self) {
        self.stage = match self.stage {
            Stage::Idle => Stage::WaitIdle,
            Stage::WaitIdle => {
                self.next = 0;
                self.unresolved = self.plan.active_of(self.thread);
                Stage::Active
            }
            Stage::Active => Stage::WaitOpen,
            Stage::WaitOpen | Stage::Done => Stage::Done,
        };
    }
}

/// Where the load threads of one run meet while they open their
/// connections (see the module's documentation).
pub(crate) struct Gates {
    state: Mutex<GateState>,
    started: Instant,
}

struct GateState {
    wakers: Vec<Waker>,
    /// Threads still opening their idle connections, and whether the
    /// last one has let the others on.
    idle_left: usize,
    idle_passed: bool,
    /// Threads still opening connections.
    open_left: usize,
    /// When the last connection was open (from the run's start).
    connect_time: Option<Duration>,
    /// Connections open when their thread passed its gate.
    idle_open: usize,
    active_open: usize,
    /// Why the run ends before its load (the first reason stands).
    failure: Option<(io::ErrorKind, String)>,
}

impl Gates {
    /// The gates of a run of `threads` threads and `idle` idle
    /// connections. Without idle connections the first gate is open from
    /// the start (the first thread's first connection, which finds the
    /// address, is then an active one: it must not wait for threads that
    /// start only once the address is known).
    pub(crate) fn new(threads: usize, idle: usize, started: Instant) -> Gates {
        let no_idle = idle == 0;
        Gates {
            state: Mutex::new(GateState {
                wakers: Vec::with_capacity(threads),
                idle_left: if no_idle { 0 } else { threads },
                idle_passed: no_idle,
                open_left: threads,
                connect_time: None,
                idle_open: 0,
                active_open: 0,
                failure: None,
            }),
            started,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_all(state: &GateState) {
        for w in &state.wakers {
            // A loop that is gone needs no wake-up.
            let _ = w.wake();
        }
    }

    /// A thread's loop, to be woken when a gate opens. Joined before the
    /// loop runs; a gate that opened earlier is seen in `on_start`.
    pub(crate) fn join(&self, waker: Waker) {
        self.lock().wakers.push(waker);
    }

    /// This thread's `open` idle connections are open (the rest given
    /// up). True for the last thread to arrive: it runs what must happen
    /// before any active connection opens, then calls [`Gates::pass_idle`].
    /// Never true when the gate was open from the start.
    pub(crate) fn idle_done(&self, open: usize) -> bool {
        let mut s = self.lock();
        s.idle_open += open;
        let left = s.idle_left;
        s.idle_left = left.saturating_sub(1);
        left == 1
    }

    /// Lets every thread on to its active connections.
    pub(crate) fn pass_idle(&self) {
        let mut s = self.lock();
        s.idle_passed = true;
        Self::wake_all(&s);
    }

    pub(crate) fn idle_passed(&self) -> bool {
        self.lock().idle_passed
    }

    /// This thread's `active` active connections are open. When it is the
    /// last thread, the connect time is taken, and the load may start
    /// unless no active connection opened at all (then the run fails,
    /// naming `addr`).
    pub(crate) fn all_done(&self, active: usize, addr: &Addr) {
        let mut s = self.lock();
        s.active_open += active;
        s.open_left = s.open_left.saturating_sub(1);
        if s.open_left > 0 {
            return;
        }
        s.connect_time = Some(self.started.elapsed());
        if s.active_open == 0 {
            s.failure.get_or_insert((
                io::ErrorKind::Other,
                format!("could not connect to {addr}: no active connection opened"),
            ));
        }
        Self::wake_all(&s);
    }

    /// Every thread's connections are open: the load may start.
    pub(crate) fn all_open(&self) -> bool {
        let s = self.lock();
        s.open_left == 0 && s.failure.is_none()
    }

    /// Ends the run before its load, for every thread.
    pub(crate) fn fail(&self, kind: io::ErrorKind, message: String) {
        let mut s = self.lock();
        s.failure.get_or_insert((kind, message));
        Self::wake_all(&s);
    }

    pub(crate) fn failure(&self) -> Option<io::Error> {
        let s = self.lock();
        s.failure
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    pub(crate) fn failed(&self) -> bool {
        self.lock().failure.is_some()
    }

    pub(crate) fn connect_time(&self) -> Duration {
        self.lock().connect_time.unwrap_or_default()
    }

    pub(crate) fn idle_open(&self) -> usize {
        self.lock().idle_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> u64 {
        n
    }

    #[test]
    fn the_plan_deals_idle_then_active_round_robin() {
        let plan = Plan {
            idle: 5,
            light: 4,
            heavy: 1,
            threads: 2,
        };
        assert_eq!((plan.idle_of(0), plan.idle_of(1)), (3, 2));
        assert_eq!((plan.active_of(0), plan.active_of(1)), (3, 2));
        assert_eq!((plan.light_of(0), plan.light_of(1)), (2, 2));
        assert_eq!(
            plan.idle(1, 1),
            Planned {
                kind: Kind::Idle,
                number: 3,
                of: 5,
                order: 3
            }
        );
        // Thread 0's active: light 0, light 2, heavy 0 (run order 5, 7, 9).
        let active: Vec<Planned> = (0..3).map(|k| plan.active(0, k)).collect();
        assert_eq!(
            active
                .iter()
                .map(|p| (p.kind, p.number, p.order))
                .collect::<Vec<_>>(),
            vec![
                (Kind::Light, 0, 5),
                (Kind::Light, 2, 7),
                (Kind::Heavy, 0, 9)
            ]
        );
        assert_eq!(active[2].of, 1);
    }

    #[test]
    fn one_connect_finds_the_address_then_many_follow() {
        let plan = Plan {
            idle: 0,
            light: 3,
            heavy: 0,
            threads: 1,
        };
        let addrs = vec![
            Addr::Tcp(([0, 0, 0, 0, 0, 0, 0, 1], 1).into()),
            Addr::Tcp(([127, 0, 0, 1], 1).into()),
        ];
        let now = Instant::now();
        let mut o: Opener<u64> = Opener::new(plan, 0, addrs.clone(), false, None, now);
        // No idle connections: that stage is complete at once.
        assert!(o.stage_complete());
        o.advance();
        assert_eq!(o.stage, Stage::WaitIdle);
        o.advance();
        let Next::Start(first) = o.next(now) else {
            panic!("the first connect starts");
        };
        o.started(id(1), first);
        assert_eq!(o.next(now), Next::Wait, "one at a time until one opens");
        assert_eq!(o.failed(id(1)), Some(first));
        assert!(o.next_addr());
        assert_eq!(o.addr(), &addrs[1]);
        o.started(id(2), first);
        assert_eq!(o.opened(id(2)), Some((first.planned, true)));
        assert!(!o.next_addr(), "chosen for good");
        let Next::Start(second) = o.next(now) else {
            panic!("the second connect starts");
        };
        o.started(id(3), second);
        let Next::Start(third) = o.next(now) else {
            panic!("and the third at once");
        };
        assert_eq!(third.planned.number, 2);
        o.started(id(4), third);
        assert_eq!(o.next(now), Next::Wait, "all started");
        assert!(o.failed(id(3)).is_some());
        o.give_up();
        assert!(!o.stage_complete());
        assert_eq!(o.opened(id(4)), Some((third.planned, false)));
        assert!(o.stage_complete());
    }

    #[test]
    fn the_connect_rate_paces_by_the_run_order() {
        let plan = Plan {
            idle: 2,
            light: 2,
            heavy: 0,
            threads: 2,
        };
        let origin = Instant::now();
        let addrs = vec![Addr::Tcp(([127, 0, 0, 1], 1).into())];
        let mut o: Opener<u64> = Opener::new(plan, 1, addrs, true, Some(10.0), origin);
        // Thread 1's idle connection is the run's second: due at 100 ms.
        assert_eq!(
            o.next(origin),
            Next::At(origin + Duration::from_millis(100))
        );
        let later = origin + Duration::from_millis(100);
        let Next::Start(a) = o.next(later) else {
            panic!("due now");
        };
        assert_eq!((a.planned.kind, a.planned.order), (Kind::Idle, 1));
        o.started(id(1), a);
        assert_eq!(o.next(later), Next::Wait, "its only idle connection");
        o.opened(id(1));
        o.advance();
        o.advance();
        // Its active connection is the run's fourth: due at 300 ms.
        assert_eq!(o.next(later), Next::At(origin + Duration::from_millis(300)));
    }
}
