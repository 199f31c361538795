//! The part of the loop apps may touch, behind [`crate::Ctx`]: the
//! connection table, timers, counters, the pool, the app's own sources, the
//! group. The loop holds it beside the selector, the listeners and the
//! per-connection app state, so a callback can borrow it and its own
//! connection's state at once.

use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::config::Config;
use crate::conn::{Conn, ConnId, Flags, Origin, Phase};
use crate::driver::Driver;
use crate::mailbox::Group;
use crate::pool::Pool;
use crate::reason::{CloseReason, Limit};
use crate::selector::{Interest, Token};
use crate::source::{Owned, SourceId, Sources};
use crate::stats::Stats;
use crate::stream::{Addr, Peer, Stream};
use crate::timer::{TimerId, Timers};
use crate::token;

/// What a timer of the loop is for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// Check a connection's silence.
    Idle(ConnId),
    /// Check that a connection with pending output takes some of it.
    Write(ConnId),
    /// Check that pushed output is still over the soft limit.
    SoftLimit(ConnId),
    /// A lingering or draining connection gives up waiting for its peer.
    Linger(ConnId),
    /// An outbound connect gives up.
    Connect(ConnId),
    /// A TLS handshake gives up.
    #[cfg(feature = "tls")]
    Handshake(ConnId),
    ResumeAccept,
    Stats,
    /// [`Ctx::set_timer`], with the app's tag.
    App(u64),
    /// [`Ctx::set_conn_timer`], with the app's tag.
    Conn(ConnId, u64),
}

impl TimerKind {
    /// The connection a timer belongs to, if any.
    pub(crate) fn owner(&self) -> Option<ConnId> {
        match *self {
            TimerKind::Idle(id)
            | TimerKind::Write(id)
            | TimerKind::SoftLimit(id)
            | TimerKind::Linger(id)
            | TimerKind::Connect(id)
            | TimerKind::Conn(id, _) => Some(id),
            #[cfg(feature = "tls")]
            TimerKind::Handshake(id) => Some(id),
            TimerKind::ResumeAccept | TimerKind::Stats | TimerKind::App(_) => None,
        }
    }
}

/// What is left of a connection while the app is told of its close.
pub(crate) struct Closed {
    pub id: ConnId,
    pub peer: Peer,
    pub origin: Origin,
}

/// The part of the loop apps may touch: everything but the selector, the
/// listeners and the per-connection app state.
pub(crate) struct Shared {
    pub conns: Slab<Conn>,
    pub config: Config,
    pub stats: Stats,
    /// When this turn's work started.
    pub now: Instant,
    /// Connections with new output or a changed interest, flushed before
    /// the loop sleeps.
    pub dirty: Vec<ConnId>,
    /// Connections to close, with why.
    pub closing: Vec<(ConnId, CloseReason)>,
    /// Connections over a limit, to be told to the app and then closed.
    pub over_limit: Vec<(ConnId, Limit)>,
    /// Why connections that close later than it was decided (lingering,
    /// writing a last reply) will close.
    pub close_reasons: HashMap<ConnId, CloseReason>,
    /// Served next turn without a new event: connections with input to
    /// offer again, edge-triggered fds left unfinished by a budget.
    pub unfinished: Vec<Token>,
    pub timers: Timers<TimerKind>,
    /// Timers of connections that closed with them still armed; swept
    /// once they add up.
    pub orphan_timers: usize,
    pub stop_requested: bool,
    pub pool: Option<Pool>,
    /// The backend's name, for stall lines.
    pub backend: &'static str,
    /// The connection whose own callback runs now: what is sent to it
    /// is a reply (bounded by flow control), not pushed output.
    pub serving: Option<ConnId>,
    /// The connection whose callback runs now, reply or not (the `by` of
    /// a connect it asks for).
    pub current: Option<ConnId>,
    /// The connection whose `on_close` runs now: gone from the table, but
    /// its peer and origin are still asked for.
    pub closed: Option<Closed>,
    /// The app's own descriptors.
    pub sources: Sources,
    /// Generation of the newest connection id.
    generation: u32,
    /// The group this loop belongs to, and its index there.
    pub group: Option<(std::sync::Arc<Group>, usize)>,
    /// Scratch for [`Ctx::broadcast`].
    pub broadcast_ids: Vec<ConnId>,
    /// The app is offered part of a backlog (more input follows): the end
    /// of stream is not told yet (`Ctx::input_ended`).
    pub partial_offer: bool,
}

/// The connection `id` names in `conns`, if live (see [`Shared::live`]);
/// borrowing only the table, so other fields stay usable.
pub(crate) fn live_in(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(id.index())
        .filter(|c| c.is(id) && c.is_live())
}

impl Shared {
    pub(crate) fn new(config: Config, pool: Option<Pool>, backend: &'static str) -> Shared {
        Shared {
            conns: Slab::new(),
            config,
            stats: Stats::default(),
            now: Instant::now(),
            dirty: Vec::new(),
            closing: Vec::new(),
            over_limit: Vec::new(),
            close_reasons: HashMap::new(),
            unfinished: Vec::new(),
            timers: Timers::default(),
            orphan_timers: 0,
            stop_requested: false,
            pool,
            backend,
            serving: None,
            current: None,
            closed: None,
            group: None,
            generation: 0,
            sources: Sources::default(),
            broadcast_ids: Vec::new(),
            partial_offer: false,
        }
    }

    /// The one lookup: the connection `id` names, if it is still in its
    /// slot and not scheduled for close.
    pub(crate) fn live(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index())
            .filter(|c| c.is(id) && c.is_live())
    }

    /// [`Shared::live`], mutable.
    pub(crate) fn live_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        live_in(&mut self.conns, id)
    }

    /// A connection the app may send to and act on (live, not lingering).
    pub(crate) fn active_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.live_mut(id).filter(|c| c.is_active())
    }

    /// Schedules `id` for close (once; later reasons are dropped).
    pub(crate) fn schedule_close(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(c) = self.live_mut(id) {
            c.phase = Phase::Closing;
            self.closing.push((id, reason));
        }
    }

    /// A name for a Unix-domain peer that bound none: numbered so log
    /// lines tell clients apart.
    pub(crate) fn unnamed_unix_peer(&self) -> Peer {
        Peer::UnnamedUnix(self.stats.accepted.wrapping_add(1) as u32)
    }

    /// Records why `id` will close when it closes later (the first reason
    /// given stands: a limit is not renamed by the shutdown that follows).
    pub(crate) fn note_close_reason(&mut self, id: ConnId, reason: CloseReason) {
        self.close_reasons.entry(id).or_insert(reason);
    }

    /// Lists `id` for the end-of-turn flush (and interest update).
    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(c) = self.live_mut(id)
            && c.raise(Flags::DIRTY)
        {
            self.dirty.push(id);
        }
    }

    /// Puts a stream in the table and watches it: `Open`, or
    /// `Connecting` for an outbound connect in progress. Its app state
    /// slot is already `Default`: a closing connection's state is taken.
    pub(crate) fn insert_conn(
        &mut self,
        driver: &mut Driver,
        stream: Stream,
        peer: Peer,
        origin: Origin,
    ) -> io::Result<ConnId> {
        self.generation = (self.generation + 1) & 0x7fff_ffff;
        let entry = self.conns.vacant_entry();
        let id = ConnId::new(entry.key(), self.generation);
        let mut conn = Conn::new(stream, peer, id);
        match origin {
            Origin::Accepted => {}
            Origin::Adopted => conn.set(Flags::ADOPTED, true),
            Origin::Connected { by } => {
                conn.phase = Phase::Connecting;
                conn.set(Flags::CONNECTED, true);
                if by.is_some() {
                    conn.io_or_new(self.now).opened_by = by;
                }
            }
        }
        let connecting = conn.phase == Phase::Connecting;
        driver.add_conn(&mut conn, id)?;
        entry.insert(conn);
        // Its first flush, before the loop sleeps, sets up what the driver
        // watches next (the completion driver's receive).
        self.mark_dirty(id);
        self.stats.accepted += 1;
        if let Some((group, _)) = &self.group {
            group
                .clients
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(timeout) = self.config.idle_timeout {
            self.add_timer(timeout, TimerKind::Idle(id));
        }
        if connecting && let Some(timeout) = self.config.connect_timeout {
            self.add_timer(timeout, TimerKind::Connect(id));
        }
        Ok(id)
    }

    /// Starts a non-blocking connect to `addr`, for connection `by`: the
    /// connection is `Connecting` until its socket turns writable. Even a
    /// connect that finished at once (a Unix-domain one always does) is
    /// told through the writable event, so every outcome takes one path.
    pub(crate) fn connect(
        &mut self,
        driver: &mut Driver,
        addr: &Addr,
        by: Option<ConnId>,
    ) -> io::Result<ConnId> {
        #[cfg(feature = "faults")]
        if let Some(refused) = driver.refuse_connect() {
            return Err(refused);
        }
        let stream = match addr {
            Addr::Tcp(tcp) => {
                let stream = crate::net::tcp_connect_started(*tcp)?;
                if self.config.nodelay {
                    let _ = stream.set_nodelay(true);
                }
                Stream::Tcp(stream)
            }
            _ => Stream::Unix(crate::net::unix_connect_started(addr)?),
        };
        self.insert_conn(
            driver,
            stream,
            addr.clone().into(),
            Origin::Connected { by },
        )
    }

    /// Arms a timer relative to this turn's start.
    pub(crate) fn add_timer(&mut self, after: Duration, kind: TimerKind) -> Option<TimerId> {
        let at = self.now.checked_add(after)?;
        Some(self.timers.add(at, kind))
    }

    /// Tells the loop a connection went over `limit`; it stops taking
    /// part in the protocol until the app has been told.
    pub(crate) fn note_limit(&mut self, id: ConnId, limit: Limit) {
        if let Some(c) = self.active_mut(id)
            && c.phase != Phase::Draining
        {
            c.phase = Phase::Draining;
            self.over_limit.push((id, limit));
        }
    }

    /// Adds `owner` to the app's sources and watches it for `interest`.
    pub(crate) fn watch_source(
        &mut self,
        driver: &mut Driver,
        owner: Box<dyn Owned>,
        interest: Interest,
    ) -> io::Result<SourceId> {
        let id = self.sources.insert(owner, interest);
        let entry = self
            .sources
            .get_mut(id)
            .ok_or_else(|| io::Error::other("lost a source"))?;
        match driver
            .selector()
            .register(entry.owner.fd(), token::source(id), interest)
        {
            Ok(()) => Ok(id),
            Err(e) => {
                self.sources.remove(id);
                Err(e)
            }
        }
    }

    /// Changes what source `id` is watched for.
    pub(crate) fn set_source_interest(
        &mut self,
        driver: &mut Driver,
        id: SourceId,
        interest: Interest,
    ) -> io::Result<()> {
        let entry = self
            .sources
            .get_mut(id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such source"))?;
        if entry.interest != interest {
            driver
                .selector()
                .reregister(entry.owner.fd(), token::source(id), interest)?;
            entry.interest = interest;
        }
        Ok(())
    }

    /// Stops watching source `id` and gives its descriptor back as the
    /// `T` it was given as (deregistered before it can be closed: epoll
    /// watches open descriptions); one of another type stays watched.
    pub(crate) fn unwatch_source<T: Any>(
        &mut self,
        driver: &mut Driver,
        id: SourceId,
    ) -> Option<T> {
        if !self.sources.get(id)?.owner.as_any().is::<T>() {
            return None;
        }
        let entry = self.sources.remove(id)?;
        let _ = driver.selector().deregister(entry.owner.fd());
        entry.owner.into_any().downcast::<T>().ok().map(|b| *b)
    }
}
