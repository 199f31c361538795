//! What an app sees of the loop: [`Ctx`], handed to every callback.
//! (Over 600 lines because it is the app's whole API, each method with
//! its documentation and examples; the work is in `shared.rs`.)
//!
//! `Ctx` is a view over the part of the loop apps may touch (`Shared`, in
//! shared.rs): connections' buffers and flags, timers, counters, the pool,
//! the app's own sources. Never a connection's file descriptor to read or
//! write: output goes through the connection's buffer, so flow control and
//! ordering hold.

use std::any::Any;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::conn::{Conn, ConnId, Flags, Origin, Phase};
use crate::driver::Driver;
use crate::pool::{JobId, JobResult, Pool};
use crate::reason::{CloseReason, Limit, SendError};
use crate::selector::{Interest, Token};
use crate::shared::{Shared, TimerKind};
use crate::source::SourceId;
use crate::stats::Stats;
use crate::stream::Addr;
use crate::timer::TimerId;

/// The handle an [`crate::App`] gets in every callback.
pub struct Ctx<'a> {
    pub(crate) shared: &'a mut Shared,
    /// For the app's own sources ([`Ctx::watch`]), connects, and pushed
    /// output offered to the socket; connections' interest is the loop's
    /// business.
    pub(crate) driver: &'a mut Driver,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("loop_index", &self.loop_index())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    /// Queues `data` for `conn`; it is written before the loop sleeps.
    ///
    /// Sent from `conn`'s own `on_data`, `on_job_done`, `on_drain` or
    /// `on_limit`, `data` is a reply: flow control bounds it (check
    /// [`Ctx::output_full`] between requests). Sent from anywhere else
    /// (another connection's callback, a timer, a wake-up) it is pushed
    /// output, and [`crate::Config::max_output`] guards against a peer
    /// that does not read it.
    ///
    /// ```
    /// use iomux::{App, ConnId, Ctx, SendError};
    ///
    /// /// Copies what one client says to another, if that one is still there.
    /// struct Relay {
    ///     to: Option<ConnId>,
    /// }
    ///
    /// impl App for Relay {
    ///     type State = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         match self.to.map(|to| ctx.send(to, input)) {
    ///             Some(Ok(())) => {}
    ///             Some(Err(SendError::OverLimit)) => {} // it will be closed; told in on_limit
    ///             Some(Err(why)) => ctx.close_because(conn, format!("relay: {why}")),
    ///             None => ctx.close_because(conn, "nobody to relay to"),
    ///         }
    ///         input.len()
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// [`SendError`] says why nothing was queued: the connection is gone,
    /// closing, or its write side shut; or that this data was queued and
    /// took it over its output limit, so it will be closed.
    pub fn send(&mut self, conn: ConnId, data: &[u8]) -> Result<(), SendError> {
        let reply = self.shared.serving == Some(conn);
        let (high, hard, soft) = {
            let c = &self.shared.config;
            (c.high_water, c.max_output, c.max_output_soft)
        };
        let now = self.shared.now;
        // Not `live_in`: a connection scheduled for close is closing, not
        // gone.
        let Some(c) = self
            .shared
            .conns
            .get_mut(conn.index())
            .filter(|c| c.is(conn))
        else {
            return Err(SendError::Gone);
        };
        if !c.is_active() || (c.phase == Phase::Draining && !reply) {
            // Scheduled for close, lingering, over a limit, or closing
            // after its last reply.
            return Err(SendError::Closing);
        }
        if c.write_closed() {
            return Err(SendError::WriteShut);
        }
        c.queue(data, high, now);
        if c.raise(Flags::DIRTY) {
            self.shared.dirty.push(conn);
        }
        if reply || c.pending() <= soft.map_or(hard, |(s, _)| s) {
            return Ok(());
        }
        // Pushed output over a limit. One turn can push more than the limit
        // to a peer that reads promptly (a chat burst of short lines); the
        // limit is for output the peer does not take, so offer it to the
        // socket before judging (through the driver: never past a send in
        // flight).
        match self.driver.offer_now(c, conn, now) {
            Ok(n) => self.shared.stats.bytes_out += n as u64,
            Err(e) => {
                self.shared.schedule_close(conn, CloseReason::Error(e));
                return Err(SendError::Closing);
            }
        }
        let pending = c.pending();
        if pending > hard {
            self.shared.note_limit(conn, Limit::Output { max: hard });
            return Err(SendError::OverLimit);
        }
        if let Some((soft, period)) = soft
            && pending > soft
        {
            let io = c.io_or_new(now);
            if io.over_soft_since.is_none() {
                io.over_soft_since = Some(now);
            }
            if c.raise(Flags::SOFT_TIMER) {
                self.shared.add_timer(period, TimerKind::SoftLimit(conn));
            }
        }
        Ok(())
    }

    /// Queues `data` for every open connection except `except` (pushed
    /// output: see [`Ctx::send`]).
    pub fn broadcast(&mut self, data: &[u8], except: Option<ConnId>) {
        // A list kept in `Shared`, so a chat line allocates nothing.
        let mut ids = std::mem::take(&mut self.shared.broadcast_ids);
        ids.extend(
            self.shared
                .conns
                .iter()
                .filter(|(_, c)| c.is_active())
                .map(|(i, c)| c.id(i))
                .filter(|&id| Some(id) != except),
        );
        for &id in &ids {
            // One that cannot take it is closing or over its limit, and
            // hears of that itself.
            let _ = self.send(id, data);
        }
        ids.clear();
        self.shared.broadcast_ids = ids;
    }

    /// True while `conn`'s pending output is over the high-water mark: a
    /// request loop should stop between requests and return what it
    /// consumed; the rest is offered again once the output drains.
    pub fn output_full(&self, conn: ConnId) -> bool {
        self.shared.live(conn).is_some_and(|c| c.has(Flags::FULL))
    }

    /// True once the peer has shut down its write side: the input offered
    /// now is all there will be (a final request may lack its terminator).
    pub fn input_ended(&self, conn: ConnId) -> bool {
        // A window of a backlog is not the end, even after the peer's.
        let partial = self.shared.partial_offer && self.shared.serving == Some(conn);
        !partial
            && self
                .shared
                .live(conn)
                .is_some_and(|c| matches!(c.phase, Phase::EofPending | Phase::ReadClosed))
    }

    /// Closes `conn` now, dropping any output not yet written.
    pub fn close(&mut self, conn: ConnId) {
        self.shared.schedule_close(conn, CloseReason::App);
    }

    /// Closes `conn` now and logs `why` (a protocol violation, say).
    pub fn close_because(&mut self, conn: ConnId, why: impl Into<String>) {
        self.shared
            .schedule_close(conn, CloseReason::AppError(why.into()));
    }

    /// Once `conn`'s pending output is written, shuts its write side (the
    /// peer sees end of stream: a half-close) and goes on reading. Nothing
    /// more can be sent to it. A proxy passes a client's half-close on this
    /// way.
    pub fn shutdown_after_flush(&mut self, conn: ConnId) {
        if let Some(c) = self.shared.active_mut(conn)
            && c.raise(Flags::SHUT_AFTER_FLUSH)
        {
            self.shared.mark_dirty(conn);
        }
    }

    /// Keeps `conn` open after its peer's end of stream (normally it
    /// closes once it owes nothing), for output other connections still
    /// produce: it closes when the app closes it or its write side is shut
    /// ([`Ctx::shutdown_after_flush`]).
    pub fn keep_open(&mut self, conn: ConnId) {
        if let Some(c) = self.shared.active_mut(conn) {
            c.set(Flags::KEEP_OPEN, true);
        }
    }

    /// Closes `conn` once its pending output is written; nothing more is
    /// read from it. A connect still in progress closes at once if nothing
    /// waits to be sent, else once it is established and has sent it.
    pub fn close_after_flush(&mut self, conn: ConnId) {
        let Some(c) = self.shared.active_mut(conn) else {
            return;
        };
        match c.phase {
            Phase::Connecting if c.pending() == 0 => {
                self.shared.schedule_close(conn, CloseReason::App);
            }
            Phase::Connecting => c.set(Flags::DRAIN_WHEN_CONNECTED, true),
            _ => {
                c.phase = Phase::Draining;
                self.shared.mark_dirty(conn);
            }
        }
    }

    /// Stops reading `conn` (and handing it input) until
    /// [`Ctx::resume_reading`]. Its output still goes out; it is not
    /// counted as idle meanwhile. Input it left unconsumed stays, and is
    /// offered again when reading resumes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use iomux::{App, ConnId, Ctx, Origin, TimerId};
    ///
    /// /// Takes at most one line a second from each client (the rest waits
    /// /// in the client's socket: TCP's own back-pressure slows it down).
    /// struct OneLineASecond;
    ///
    /// impl App for OneLineASecond {
    ///     type State = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         let Some(end) = input.iter().position(|&b| b == b'\n') else {
    ///             return 0; // not a whole line yet
    ///         };
    ///         let _ = ctx.send(conn, &input[..=end]);
    ///         ctx.pause_reading(conn);
    ///         ctx.set_conn_timer(conn, Duration::from_secs(1), 0);
    ///         end + 1
    ///     }
    ///     fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: TimerId) {
    ///         ctx.resume_reading(conn); // the next line, if one waits, comes at once
    ///     }
    /// }
    /// ```
    pub fn pause_reading(&mut self, conn: ConnId) {
        if let Some(c) = self.shared.active_mut(conn)
            && c.raise(Flags::APP_PAUSED)
        {
            self.shared.mark_dirty(conn);
        }
    }

    /// Reads `conn` again; input it left unconsumed is offered at once
    /// (next turn), without waiting for new bytes.
    pub fn resume_reading(&mut self, conn: ConnId) {
        let now = self.shared.now;
        if let Some(c) = self.shared.active_mut(conn)
            && c.has(Flags::APP_PAUSED)
        {
            c.set(Flags::APP_PAUSED, false);
            if c.has_input() {
                c.set(Flags::REOFFER, true);
            }
            if let Some(io) = c.io_mut() {
                // The peer could not be heard while paused.
                io.last_read = now;
            }
            self.shared.unfinished.push(Token(conn.0));
            self.shared.mark_dirty(conn);
        }
    }

    /// The peer's TCP address (`None` for a Unix-domain connection: see
    /// [`Ctx::peer`]). Still known in `conn`'s `on_close`.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.peer_of(conn, |peer| peer.tcp())
    }

    /// The peer, TCP or Unix-domain, for logs and protocols
    /// (`127.0.0.1:40112`, `unix:#3`). Still known in `conn`'s `on_close`.
    pub fn peer(&self, conn: ConnId) -> Option<Addr> {
        self.peer_of(conn, |peer| Some(peer.addr()))
    }

    /// How `conn` came to be (accepted, connected and for whom, adopted).
    /// Still known in `conn`'s `on_close`, so a connect that failed can be
    /// paired with the connection that asked for it.
    pub fn origin(&self, conn: ConnId) -> Option<Origin> {
        match &self.shared.closed {
            Some(closed) if closed.id == conn => Some(closed.origin),
            _ => self.shared.live(conn).map(Conn::origin),
        }
    }

    fn peer_of<R>(
        &self,
        conn: ConnId,
        f: impl FnOnce(&crate::stream::Peer) -> Option<R>,
    ) -> Option<R> {
        match &self.shared.closed {
            Some(closed) if closed.id == conn => f(&closed.peer),
            _ => f(self.shared.live(conn)?.peer()),
        }
    }

    /// The local TCP address the connection arrived on (one system call).
    pub fn local_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.shared.live(conn)?.stream.tcp()?.local_addr().ok()
    }

    /// The TCP socket, for options (`set_nodelay`, `set_ttl`, and through
    /// `AsFd` any `setsockopt`: linger, keepalive, buffer sizes). Do not
    /// read or write it: the loop owns its data. `None` for Unix-domain
    /// connections (see [`Ctx::fd`]).
    pub fn socket(&self, conn: ConnId) -> Option<&TcpStream> {
        self.shared.live(conn)?.stream.tcp()
    }

    /// The connection's descriptor, TCP or Unix-domain, for options.
    pub fn fd(&self, conn: ConnId) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.shared.live(conn).map(|c| c.stream.as_fd())
    }

    /// Bytes queued for `conn` and not yet written.
    pub fn pending_output(&self, conn: ConnId) -> usize {
        self.shared.live(conn).map_or(0, Conn::pending)
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.conns.len()
    }

    /// Calls [`crate::App::on_timer`] with the returned id after `after`;
    /// `tag` comes back with it ([`TimerId::tag`]), to tell an app's kinds
    /// of timers apart. `None` if the deadline is not representable.
    pub fn set_timer(&mut self, after: Duration, tag: u64) -> Option<TimerId> {
        let timer = self.shared.add_timer(after, TimerKind::App(tag))?;
        Some(timer.tagged(tag))
    }

    /// Calls [`crate::App::on_conn_timer`] for `conn` with the returned id
    /// (and its `tag`) after `after`; the timer is dropped if `conn` closes
    /// first. `None` if `conn` is gone (or the deadline is not
    /// representable).
    ///
    /// ```
    /// use std::time::Duration;
    /// use iomux::{App, ConnId, Ctx, TimerId};
    ///
    /// /// Closes a client that has not said `hello` within a second.
    /// struct Greeting;
    ///
    /// #[derive(Default)]
    /// struct Client {
    ///     deadline: Option<TimerId>,
    /// }
    ///
    /// impl App for Greeting {
    ///     type State = Client;
    ///     fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, c: &mut Client, _: iomux::Origin) {
    ///         c.deadline = ctx.set_conn_timer(conn, Duration::from_secs(1), 0);
    ///     }
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, c: &mut Client, input: &[u8]) -> usize {
    ///         if input.starts_with(b"hello") {
    ///             if let Some(t) = c.deadline.take() {
    ///                 ctx.cancel_timer(t);
    ///             }
    ///         }
    ///         input.len()
    ///     }
    ///     fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, c: &mut Client, t: TimerId) {
    ///         if c.deadline == Some(t) {
    ///             ctx.close_because(conn, "no greeting within a second");
    ///         }
    ///     }
    /// }
    /// ```
    pub fn set_conn_timer(&mut self, conn: ConnId, after: Duration, tag: u64) -> Option<TimerId> {
        let now = self.shared.now;
        self.shared.active_mut(conn)?;
        let timer = self.shared.add_timer(after, TimerKind::Conn(conn, tag))?;
        if let Some(c) = self.shared.active_mut(conn) {
            c.io_or_new(now).timers += 1;
        }
        Some(timer.tagged(tag))
    }

    /// Disarms a timer set with [`Ctx::set_timer`] or
    /// [`Ctx::set_conn_timer`]; false if it already fired or was
    /// cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        match self.shared.timers.get(timer) {
            Some(TimerKind::App(_)) => {}
            Some(&TimerKind::Conn(conn, _)) => {
                if let Some(io) = self.shared.live_mut(conn).and_then(Conn::io_mut) {
                    io.timers = io.timers.saturating_sub(1);
                }
            }
            // Gone, or not an app's timer.
            _ => return false,
        }
        self.shared.timers.cancel(timer).is_some()
    }

    /// Watches `fd` (a pipe, a UDP socket, stdin, a timerfd...) for
    /// `interest`; readiness comes to [`crate::App::on_ready`]. The loop
    /// owns `fd` from now on: reach it with [`Ctx::source`], take it back
    /// with [`Ctx::unwatch`]; it is closed with the loop.
    ///
    /// # Errors
    /// The backend refused the descriptor (epoll refuses regular files;
    /// select refuses descriptors at or above `FD_SETSIZE`).
    pub fn watch<T: AsFd + 'static>(&mut self, fd: T, interest: Interest) -> io::Result<SourceId> {
        self.shared
            .watch_source(&mut *self.driver, Box::new(fd), interest)
    }

    /// Changes what `source` is watched for.
    ///
    /// # Errors
    /// `NotFound` if `source` is not watched; what the backend says.
    pub fn set_interest(&mut self, source: SourceId, interest: Interest) -> io::Result<()> {
        self.shared
            .set_source_interest(&mut *self.driver, source, interest)
    }

    /// Stops watching `source` and hands its descriptor back, deregistered
    /// (drop it to close it). `None`, and still watched, if it is not a
    /// `T`; `None` if it is gone.
    pub fn unwatch<T: AsFd + 'static>(&mut self, source: SourceId) -> Option<T> {
        self.shared.unwatch_source(&mut *self.driver, source)
    }

    /// The descriptor `source` watches, as the type it was given as
    /// (`None` if it is gone or of another type).
    pub fn source<T: AsFd + 'static>(&self, source: SourceId) -> Option<&T> {
        self.shared
            .sources
            .get(source)?
            .owner
            .as_any()
            .downcast_ref()
    }

    /// Connects to `addr`, TCP or Unix-domain (`Addr::Unix`,
    /// `Addr::Abstract`), without blocking the loop: the id is returned at
    /// once, [`crate::App::on_open`] runs when the connection is
    /// established, with [`Origin::Connected`] naming the connection whose
    /// callback asked (`by`), and [`crate::App::on_close`] with the error
    /// when it is not (refused, unreachable, or
    /// [`crate::Config::connect_timeout`] passed). Data sent before it is
    /// established waits in its buffer. Then it is a connection like an
    /// accepted one.
    ///
    /// ```
    /// use iomux::{App, ConnId, Ctx, Origin};
    ///
    /// /// Opens one upstream connection per client and pairs the two.
    /// struct Pairing {
    ///     upstream: std::net::SocketAddr,
    /// }
    ///
    /// #[derive(Default)]
    /// struct Side {
    ///     other: Option<ConnId>,
    /// }
    ///
    /// impl App for Pairing {
    ///     type State = Side;
    ///     fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, side: &mut Side, origin: Origin) {
    ///         match origin {
    ///             Origin::Connected { by } => side.other = by, // the client that asked
    ///             _ => match ctx.connect(self.upstream) {
    ///                 Ok(up) => side.other = Some(up),
    ///                 Err(e) => ctx.close_because(conn, format!("upstream: {e}")),
    ///             },
    ///         }
    ///     }
    ///     fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut Side, input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// Errors known at once come back here rather than in `on_close`: no
    /// descriptors left, an address of the wrong family; for a
    /// Unix-domain server the usual ones (no such file, nobody listening),
    /// and a full accept queue is an error of kind `WouldBlock` (try again
    /// later; a Unix-domain connect is never left in progress).
    pub fn connect(&mut self, addr: impl Into<Addr>) -> io::Result<ConnId> {
        let by = self.shared.current;
        self.shared.connect(&mut *self.driver, &addr.into(), by)
    }

    /// This loop's index in its group (0 for a loop on its own).
    pub fn loop_index(&self) -> usize {
        self.shared.group.as_ref().map_or(0, |(_, i)| *i)
    }

    /// Loops in this loop's group (1 for a loop on its own).
    pub fn loops(&self) -> usize {
        self.shared.group.as_ref().map_or(1, |(g, _)| g.len())
    }

    /// Sends `message` to loop `to` of the group; it arrives in
    /// [`crate::App::on_message`] on that loop's thread, after the
    /// messages this loop posted to it before. False if there is no such
    /// loop (or this loop is on its own).
    pub fn post<M: Any + Send>(&self, to: usize, message: M) -> bool {
        self.shared
            .group
            .as_ref()
            .is_some_and(|(g, _)| g.post(to, Box::new(message)))
    }

    /// Sends a clone of `message` to every other loop of the group.
    pub fn post_to_others<M: Any + Send + Clone>(&self, message: M) {
        if let Some((group, me)) = &self.shared.group {
            for to in (0..group.len()).filter(|to| to != me) {
                group.post(to, Box::new(message.clone()));
            }
        }
    }

    /// The time this turn started (cheaper than `Instant::now`).
    pub fn now(&self) -> Instant {
        self.shared.now
    }

    /// Starts a graceful shutdown of the loop.
    pub fn stop(&mut self) {
        self.shared.stop_requested = true;
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats
    }

    /// Faults injected so far by this loop's fault layer (feature
    /// `faults`; 0 without a plan).
    #[cfg(feature = "faults")]
    pub fn faults_injected(&self) -> u64 {
        self.driver.faults_injected()
    }

    /// Counts one request served (for the stats line's rate).
    pub fn record_request(&mut self) {
        self.shared.stats.requests += 1;
    }

    /// Worker threads in the offload pool (0: none, run work inline).
    pub fn workers(&self) -> usize {
        self.shared.pool.as_ref().map_or(0, Pool::workers)
    }

    /// True if `conn` may hand another job to the pool now (there is a
    /// pool and the connection is under [`crate::Config::max_jobs_per_conn`]).
    /// When it may not, leave the request unconsumed: the input is offered
    /// again once one of its jobs is back.
    pub fn can_offload(&self, conn: ConnId) -> bool {
        let max = self.shared.config.max_jobs_per_conn;
        self.shared.pool.is_some() && self.shared.live(conn).is_some_and(|c| c.jobs() < max)
    }

    /// Runs `job` on the offload pool; its result comes back to
    /// [`crate::App::on_job_done`] on the loop thread. The connection stays
    /// open (even after its peer shuts down, or during a graceful stop)
    /// until its jobs are done. `None` if there is no pool or `conn` is
    /// gone.
    ///
    /// ```
    /// use iomux::pool::{JobId, JobResult};
    /// use iomux::{App, ConnId, Ctx};
    ///
    /// /// Counts the primes below each number a client sends, off the loop.
    /// struct Primes;
    ///
    /// fn primes_below(n: u64) -> u64 {
    ///     (2..n).filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0)).count() as u64
    /// }
    ///
    /// impl App for Primes {
    ///     type State = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         let Some(end) = input.iter().position(|&b| b == b'\n') else {
    ///             return 0;
    ///         };
    ///         if !ctx.can_offload(conn) {
    ///             return 0; // offered again once one of its jobs is back
    ///         }
    ///         let n: u64 = std::str::from_utf8(&input[..end]).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    ///         ctx.offload(conn, move || Box::new(primes_below(n)) as JobResult);
    ///         end + 1
    ///     }
    ///     fn on_job_done(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: JobId, result: JobResult) {
    ///         if let Ok(count) = result.downcast::<u64>() {
    ///             let _ = ctx.send(conn, format!("{count}\n").as_bytes());
    ///         }
    ///     }
    /// }
    /// ```
    pub fn offload<F>(&mut self, conn: ConnId, job: F) -> Option<JobId>
    where
        F: FnOnce() -> JobResult + Send + 'static,
    {
        self.shared.pool.as_ref()?;
        let now = self.shared.now;
        self.shared.active_mut(conn)?.io_or_new(now).jobs += 1;
        let pool = self.shared.pool.as_mut()?;
        Some(pool.submit(conn, Box::new(job)))
    }
}
