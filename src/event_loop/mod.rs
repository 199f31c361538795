//! The event loop: one thread, many connections, any backend.
//! (Over 600 lines with the runnable examples of the entry points; the
//! turn's work is in the files beside this one.)
//!
//! One turn ([`EventLoop::run_once`]), step by step:
//! 1. Before waiting, write every connection's new output (most replies go
//!    out here in one write; write interest is turned on only for what the
//!    socket did not take), tell the app of limits, close what was
//!    scheduled to close. Start or finish a graceful shutdown if asked.
//! 2. Pick the wait's timeout: zero if connections are left unfinished
//!    (input to offer again, an edge-triggered budget), else until the next
//!    timer, at most the caller's timeout.
//! 3. Wait on the selector.
//! 4. Dispatch each event by token (`token.rs`): a listener accepts (up to a
//!    budget, `accept.rs`), the waker and the signal pipe are drained, a
//!    connection reads and writes (`conn_io.rs`), handing input to the app with
//!    flow control (`deliver.rs`). A token whose generation no longer
//!    matches a live connection is stale and dropped.
//! 5. Serve the connections left unfinished last turn, as if readable.
//! 6. Fire due timers (`timers.rs`); hand finished jobs to the app (`jobs.rs`).
//! 7. Write the new output again (step 1), so a caller of `run_once` sees
//!    replies leave within the turn that caused them.
//!
//! Data flows one way: kernel event → selector → loop (token → connection)
//! → connection buffers → app → connection output → socket.
//!
//! On the completion driver (`Backend::Uring`) step 3 is the ring's one
//! `io_uring_enter` (this turn's sends, receives and cancels go in, the
//! completions come out), and after step 4 the completions are handled
//! (`completion.rs`): received bytes go to the app as in step 4, finished
//! sends to the same decisions as a write (`after_write`). The selector is
//! then the ring's poll requests, for the waker, the signal pipe, sources
//! and connects in progress.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::app::App;
use crate::backend::Backend;
use crate::config::Config;
use crate::conn::ConnId;
use crate::driver::{Done, Driver};
use crate::pool::Pool;
use crate::selector::{Event, Events, Interest, Ready, Token};
use crate::shared::{Shared, TimerKind};
use crate::stats::{Stats, TurnTimes};
use crate::stop::StopHandle;
use crate::token::{self, Source};
use crate::waker::{SignalPipe, Waker};

mod accept;
mod close;
mod completion;
mod conn_io;
mod deliver;
mod jobs;
mod timers;
#[cfg(feature = "tls")]
mod tls;
mod watch;

#[cfg(test)]
mod tests;

use accept::Listener;

/// Size of one read.
const READ_CHUNK: usize = 64 * 1024;

/// Where the loop is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Life {
    /// `run_once` has not been called yet: adopted connections still owe
    /// their `on_open`.
    NotStarted,
    Running,
    /// Not accepting; connections get until the deadline to take their
    /// output.
    ShuttingDown {
        deadline: Instant,
    },
    Stopped,
}

/// What [`EventLoop::run_once`] leaves behind.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The loop goes on: call `run_once` again.
    Running,
    /// The graceful shutdown is over; every connection is closed.
    Stopped,
}

/// A single-threaded event loop over one backend, for an app whose
/// per-connection state is `S` ([`App::State`]).
pub struct EventLoop<S = ()> {
    driver: Driver,
    events: Events,
    listeners: Vec<Listener>,
    shared: Shared,
    /// Per-connection app state, by slot index (beside `shared`, so a
    /// callback can hold its connection's state and the `Ctx` at once).
    states: Vec<S>,
    waker: Waker,
    stop_flag: Arc<AtomicBool>,
    signals: Option<SignalPipe>,
    /// A stop signal came again: the graceful shutdown ends now.
    hurry: bool,
    /// Empty lists swapped with the unfinished and dirty lists, so that
    /// walking them allocates nothing.
    spare_tokens: Vec<Token>,
    spare_ids: Vec<ConnId>,
    /// Where reads land before the app sees them (one per loop, not per
    /// connection).
    scratch: Vec<u8>,
    /// Connections adopted before the first turn, whose `on_open` is due.
    unopened: Vec<ConnId>,
    life: Life,
    emfile_logged: bool,
    /// When the current turn's work started (for the stats line).
    turn_started: Option<Instant>,
    turn_times: TurnTimes,
    last_stats: (Instant, Stats),
    /// Messages taken from this loop's mailbox (reused, no allocation).
    inbox: Vec<crate::mailbox::Message>,
    /// Pending output summed at the last stats tick.
    pending_at_tick: usize,
    /// The completion driver's reports of this turn (reused, no
    /// allocation).
    done: Vec<Done>,
    /// Where a TLS connection's plaintext lands before the app sees it
    /// (one per loop).
    #[cfg(feature = "tls")]
    tls_plain: Vec<u8>,
}

impl<S> std::fmt::Debug for EventLoop<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLoop")
            .field("backend", &self.driver.name())
            .field("listeners", &self.listeners.len())
            .field("connections", &self.shared.conns.len())
            .finish_non_exhaustive()
    }
}

impl<S: Default> EventLoop<S> {
    /// A loop over `backend` with `config`. `S` is the app's per-connection
    /// state ([`App::State`]); a loop for an app with none is `EventLoop`.
    ///
    /// ```
    /// use iomux::{Backend, Config, EventLoop};
    ///
    /// let lp: EventLoop = EventLoop::new(Backend::Auto, Config::default())?;
    /// assert!(["epoll", "uring-poll", "poll"].contains(&lp.backend_name()));
    /// let mut small = Config::default();
    /// small.max_clients = 100;
    /// let lp: EventLoop<u64> = EventLoop::new(Backend::Poll, small)?; // state: a u64 per connection
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// `InvalidInput` for a config [`Config::validate`] refuses; the
    /// backend could not be opened (io_uring unavailable, no descriptors
    /// left: [`Backend::check`] says why); the waker or offload pool could
    /// not be made.
    pub fn new(backend: Backend, config: Config) -> io::Result<EventLoop<S>> {
        config.validate()?;
        let mut driver = Driver::open(backend, &config)?;
        let waker = Waker::new()?;
        driver
            .selector()
            .register(waker.fd(), token::WAKER, Interest::READABLE)?;
        let name = driver.name();
        let pool = match config.workers {
            0 => None,
            n => Some(Pool::new(n, waker.clone())?),
        };
        let shared = Shared::new(config, pool, name);
        Ok(EventLoop {
            driver,
            events: Events::with_capacity(256),
            listeners: Vec::new(),
            shared,
            states: Vec::new(),
            waker,
            stop_flag: Arc::new(AtomicBool::new(false)),
            signals: None,
            hurry: false,
            spare_tokens: Vec::new(),
            spare_ids: Vec::new(),
            scratch: vec![0; READ_CHUNK],
            unopened: Vec::new(),
            life: Life::NotStarted,
            emfile_logged: false,
            turn_started: None,
            turn_times: TurnTimes::default(),
            last_stats: (Instant::now(), Stats::default()),
            inbox: Vec::new(),
            pending_at_tick: 0,
            done: Vec::new(),
            #[cfg(feature = "tls")]
            tls_plain: Vec::new(),
        })
    }

    /// The running backend's name (`auto` resolved).
    pub fn backend_name(&self) -> &'static str {
        self.driver.name()
    }

    /// The config the loop runs with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Accepts connections from `listener`, TCP or Unix-domain (made
    /// non-blocking here); a Unix-domain socket's file is removed when the
    /// loop stops listening.
    ///
    /// ```
    /// use iomux::net::Listener;
    /// use iomux::{Backend, Config, EventLoop};
    ///
    /// let mut lp: EventLoop = EventLoop::new(Backend::Auto, Config::default())?;
    /// let tcp = Listener::bind(&"127.0.0.1:0".parse()?)?; // port 0: the kernel picks
    /// println!("listening on {}", tcp.local_addr()?);
    /// lp.listen(tcp)?;
    /// lp.listen(Listener::bind(&"unix:@iomux-doc-listen".parse()?)?)?;
    /// // or a socket set up by hand (options, inherited, a fixed port):
    /// lp.listen(std::net::TcpListener::bind("127.0.0.1:0")?)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Making the socket non-blocking or watching it failed, or the loop
    /// has its maximum of listeners already.
    pub fn listen(&mut self, listener: impl Into<crate::net::Listener>) -> io::Result<()> {
        let listener = listener.into();
        listener.set_nonblocking()?;
        self.add_listener(listener, None)
    }

    /// Adds an already connected stream, TCP or Unix-domain (a socket
    /// inherited or connected by hand). Its `on_open` runs with
    /// [`crate::Origin::Adopted`] in the loop's next turn.
    ///
    /// # Errors
    /// The stream has no peer (not connected), or making it non-blocking
    /// or watching it failed.
    pub fn adopt(&mut self, stream: impl Into<crate::net::Stream>) -> io::Result<ConnId> {
        let stream = stream.into();
        let peer = match &stream {
            crate::net::Stream::Tcp(s) => {
                s.set_nonblocking(true)?;
                s.peer_addr()?.into()
            }
            crate::net::Stream::Unix(s) => {
                s.set_nonblocking(true)?;
                match s.peer_addr()?.as_pathname() {
                    Some(path) => crate::stream::Peer::from(crate::Addr::Unix(path.to_path_buf())),
                    None => self.shared.unnamed_unix_peer(),
                }
            }
        };
        let id = self.insert(stream, peer, crate::Origin::Adopted)?;
        self.unopened.push(id);
        Ok(id)
    }

    /// Watches `fd` for `interest` (see [`crate::source`]); readiness comes
    /// to [`App::on_ready`]. The loop owns `fd` until [`EventLoop::unwatch`]
    /// (or [`crate::Ctx::unwatch`]) hands it back.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use iomux::{Backend, Config, EventLoop, Interest};
    ///
    /// let mut lp: EventLoop = EventLoop::new(Backend::Poll, Config::default())?;
    /// let (ours, _theirs) = UnixStream::pair()?;
    /// let source = lp.watch(ours, Interest::READABLE)?;
    /// let back: UnixStream = lp.unwatch(source).expect("watched as a UnixStream");
    /// drop(back); // closed here, after it was deregistered
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`crate::Ctx::watch`].
    pub fn watch<T: std::os::fd::AsFd + 'static>(
        &mut self,
        fd: T,
        interest: Interest,
    ) -> io::Result<crate::source::SourceId> {
        self.shared
            .watch_source(&mut self.driver, Box::new(fd), interest)
    }

    /// Stops watching `source` and hands its descriptor back, deregistered
    /// (drop it to close it); as [`crate::Ctx::unwatch`].
    pub fn unwatch<T: std::os::fd::AsFd + 'static>(
        &mut self,
        source: crate::source::SourceId,
    ) -> Option<T> {
        self.shared.unwatch_source(&mut self.driver, source)
    }

    /// Connects to `addr` (TCP or Unix-domain) without blocking; see
    /// [`crate::Ctx::connect`], which this is before the loop runs.
    ///
    /// ```
    /// use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Origin};
    ///
    /// /// Says hello to whoever it connects to, then stops.
    /// struct Hello;
    /// impl App for Hello {
    ///     type State = ();
    ///     fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), origin: Origin) {
    ///         assert_eq!(origin, Origin::Connected { by: None });
    ///         let _ = ctx.send(conn, b"hello\n");
    ///         ctx.close_after_flush(conn);
    ///         ctx.stop();
    ///     }
    ///     fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         input.len()
    ///     }
    /// }
    ///
    /// let server = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut lp = EventLoop::new(Backend::Auto, Config::default())?;
    /// lp.connect(server.local_addr()?)?; // on_open runs once it is established
    /// lp.run(&mut Hello)?;
    /// let mut said = String::new();
    /// std::io::Read::read_to_string(&mut server.accept()?.0, &mut said)?;
    /// assert_eq!(said, "hello\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`crate::Ctx::connect`].
    pub fn connect(&mut self, addr: impl Into<crate::Addr>) -> io::Result<ConnId> {
        self.shared.connect(&mut self.driver, &addr.into(), None)
    }

    /// Shuts down gracefully when one of `signals` arrives (e.g.
    /// [`crate::SIGINT`], [`crate::SIGTERM`]).
    ///
    /// # Errors
    /// A signal that cannot be caught (`SIGKILL`, `SIGSTOP`, not a signal),
    /// or the signal pipe could not be made or watched.
    pub fn stop_on_signals(&mut self, signals: &[i32]) -> io::Result<()> {
        let pipe = SignalPipe::new(signals)?;
        self.driver
            .selector()
            .register(pipe.fd(), token::SIGNALS, Interest::READABLE)?;
        self.signals = Some(pipe);
        Ok(())
    }

    /// Wakes the loop from another thread ([`App::on_wake`] runs).
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Stops the loop from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            target: crate::stop::StopTarget::Loop {
                requested: self.stop_flag.clone(),
                waker: self.waker.clone(),
            },
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.shared.stats
    }

    /// Number of open connections.
    pub fn connections(&self) -> usize {
        self.shared.conns.len()
    }

    /// Runs until stopped (signal, [`StopHandle`], or [`crate::Ctx::stop`])
    /// and the graceful shutdown is over.
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop};
    ///
    /// /// Answers one line, then stops the loop.
    /// struct Once;
    /// impl App for Once {
    ///     type State = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         let _ = ctx.send(conn, b"bye\n");
    ///         ctx.stop(); // the reply is still written: the shutdown is graceful
    ///         input.len()
    ///     }
    /// }
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let mut lp = EventLoop::new(Backend::Auto, Config::default())?;
    /// lp.listen(listener)?;
    /// let client = std::thread::spawn(move || -> std::io::Result<String> {
    ///     let mut c = std::net::TcpStream::connect(addr)?;
    ///     c.write_all(b"hi\n")?;
    ///     let mut reply = String::new();
    ///     c.read_to_string(&mut reply)?; // until the server closes
    ///     Ok(reply)
    /// });
    /// lp.run(&mut Once)?;
    /// assert_eq!(client.join().unwrap()?, "bye\n");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// The backend's wait failed (not `EINTR`, which is retried); the loop
    /// stops where it is.
    pub fn run<A: App<State = S>>(&mut self, app: &mut A) -> io::Result<()> {
        while self.run_once(app, None)? == Status::Running {}
        Ok(())
    }

    /// One turn of the loop, waiting at most `timeout` for events (`None`:
    /// until the next timer or event). For embedding the loop in another;
    /// [`EventLoop::run`] is `run_once` until [`Status::Stopped`].
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::time::Duration;
    /// use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, Status};
    ///
    /// struct Echo;
    /// impl App for Echo {
    ///     type State = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         let _ = ctx.send(conn, input);
    ///         input.len()
    ///     }
    /// }
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
    /// let mut lp = EventLoop::new(Backend::Poll, Config::default())?;
    /// lp.listen(listener)?;
    /// client.write_all(b"ping")?;
    /// client.set_nonblocking(true)?;
    /// let mut got = Vec::new();
    /// for _ in 0..500 {
    ///     // Your own work goes between turns.
    ///     assert_eq!(lp.run_once(&mut Echo, Some(Duration::from_millis(10)))?, Status::Running);
    ///     let mut buf = [0u8; 16];
    ///     if let Ok(n) = client.read(&mut buf) {
    ///         got.extend_from_slice(&buf[..n]);
    ///     }
    ///     if got == b"ping" {
    ///         break;
    ///     }
    /// }
    /// assert_eq!(got, b"ping");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`EventLoop::run`].
    pub fn run_once<A: App<State = S>>(
        &mut self,
        app: &mut A,
        timeout: Option<Duration>,
    ) -> io::Result<Status> {
        match self.life {
            Life::Stopped => return Ok(Status::Stopped),
            Life::NotStarted => self.start(app),
            Life::Running | Life::ShuttingDown { .. } => {}
        }
        self.before_sleep(app);
        if self.shared.stop_requested && self.life == Life::Running {
            self.begin_shutdown(app);
            self.before_sleep(app);
        }
        if self.hurry
            && let Life::ShuttingDown { deadline } = &mut self.life
        {
            *deadline = Instant::now();
        }
        if let Life::ShuttingDown { deadline } = self.life
            && (self.shared.conns.is_empty() || Instant::now() >= deadline)
        {
            self.close_all(app);
            // Sockets whose operations the kernel still holds close once
            // they are over: let them, or no later turn would.
            self.driver.settle();
            self.life = Life::Stopped;
            return Ok(Status::Stopped);
        }
        let wait = match (self.next_timeout(), timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(started) = self.turn_started.take() {
            self.turn_times.record(started.elapsed());
        }
        self.driver.wait(&mut self.events, &mut self.done, wait)?;
        self.shared.now = Instant::now();
        if self.shared.config.stats_interval.is_some() {
            self.turn_started = Some(self.shared.now);
        }
        self.shared.stats.turns += 1;
        // Connections left unfinished by the *last* turn: taken before this
        // turn's events, so one that uses up its budget now waits for the
        // next turn.
        let mut batch = std::mem::take(&mut self.spare_tokens);
        std::mem::swap(&mut batch, &mut self.shared.unfinished);
        for i in 0..self.events.len() {
            if let Some(event) = self.events.get(i) {
                self.dispatch(app, event);
            }
        }
        self.complete(app);
        for token in batch.drain(..) {
            // The edge that raised these may also have told of the peer's
            // end of stream, and was spent while the connection was paused
            // or over budget: read on past a short read (until
            // `WouldBlock`), or that end would never be seen.
            let event = Event::new(token, Ready::READABLE | Ready::READ_CLOSED);
            self.dispatch(app, event);
        }
        self.spare_tokens = batch;
        self.fire_timers(app);
        self.before_sleep(app);
        self.publish_stats();
        Ok(Status::Running)
    }

    /// The first turn: periodic timers start, adopted connections open.
    fn start<A: App<State = S>>(&mut self, app: &mut A) {
        self.life = Life::Running;
        self.shared.now = Instant::now();
        self.last_stats = (self.shared.now, self.shared.stats);
        if let Some(every) = self.shared.config.stats_interval {
            self.shared.add_timer(every, TimerKind::Stats);
        }
        watch::call(&mut self.shared, &mut self.driver, app, |app, ctx| {
            app.on_start(ctx)
        });
        for id in std::mem::take(&mut self.unopened) {
            self.open(app, id);
            self.reap(app);
        }
    }

    fn next_timeout(&mut self) -> Option<Duration> {
        if !self.shared.unfinished.is_empty() {
            return Some(Duration::ZERO);
        }
        // From now, not from the turn's start: a slow turn must not make
        // every timer late by its length.
        let now = Instant::now();
        let timer = self.shared.timers.next_timeout(now);
        let shutdown = match self.life {
            Life::ShuttingDown { deadline } => Some(deadline.saturating_duration_since(now)),
            _ => None,
        };
        match (timer, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn dispatch<A: App<State = S>>(&mut self, app: &mut A, event: Event) {
        match token::decode(event.token) {
            Source::Waker => {
                if self.waker.drain() {
                    watch::call(&mut self.shared, &mut self.driver, app, |app, ctx| {
                        app.on_wake(ctx)
                    });
                }
                if self.stop_flag.load(Ordering::SeqCst) {
                    self.shared.stop_requested = true;
                }
                self.collect_jobs(app);
                self.collect_messages(app);
            }
            Source::Signals => {
                if let Some(arrived) = self.signals.as_mut().and_then(SignalPipe::drain) {
                    self.signalled(arrived);
                }
            }
            Source::Listener(index) => self.accept(app, index),
            Source::Conn(id) => self.conn_event(app, id, event),
            Source::User(id) => self.source_event(app, id, event),
        }
        self.reap(app);
    }

    /// Readiness of an app's own descriptor (dropped if it was unwatched
    /// meanwhile: the generation in its id no longer matches).
    fn source_event<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: crate::source::SourceId,
        event: Event,
    ) {
        if self.shared.sources.get(id).is_none() {
            return;
        }
        let ready = crate::source::Readiness {
            readable: event.is_readable() || event.is_error() || event.is_hup(),
            writable: event.is_writable() || event.is_error(),
        };
        watch::call(&mut self.shared, &mut self.driver, app, |app, ctx| {
            app.on_ready(ctx, id, ready)
        });
    }

    /// Writes what was queued, tells the app of limits, closes what was
    /// scheduled to close; until none of them makes more work.
    fn before_sleep<A: App<State = S>>(&mut self, app: &mut A) {
        loop {
            self.reap(app);
            if self.shared.dirty.is_empty() {
                return;
            }
            let mut batch = std::mem::take(&mut self.spare_ids);
            std::mem::swap(&mut batch, &mut self.shared.dirty);
            for id in batch.drain(..) {
                self.flush(app, id);
            }
            self.spare_ids = batch;
        }
    }
}
