//! One loop per core: N loops in N threads that share nothing but a few
//! counters and a mailbox each.
//!
//! On TCP every loop has its own listening socket bound to the same address
//! with `SO_REUSEPORT`, so the kernel spreads new connections across them
//! (by a hash of the connection's addresses); on a Unix-domain socket the
//! loops share one listening socket. Each loop has its own app, built by a
//! factory. Loops reach each other's clients by posting messages
//! ([`crate::Ctx::post`], [`crate::Ctx::post_to_others`]): a message waits
//! in the receiving loop's mailbox, its waker rings, and
//! [`crate::App::on_message`] runs on that loop's thread. Mailboxes are
//! FIFO, so messages from one loop arrive at another in the order sent.
//!
//! Shared across the group: the client count (so `max_clients` is a total),
//! and each loop's counters (for one stats line with totals).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;

use crate::app::App;
use crate::backend::Backend;
use crate::config::Config;
use crate::event_loop::EventLoop;
use crate::mailbox::Group;
pub use crate::mailbox::Message;
use crate::net::Listener;
use crate::stats::Stats;
use crate::stop::{StopHandle, StopTarget};
use crate::stream::Addr;

/// How a group of loops ended: each loop's counters, by loop index.
#[derive(Debug)]
pub struct GroupStats {
    /// Counters of each loop.
    pub loops: Vec<Stats>,
}

impl GroupStats {
    /// The counters of all loops added up.
    pub fn total(&self) -> Stats {
        let mut t = Stats::default();
        for s in &self.loops {
            t += s;
        }
        t
    }
}

/// A group of loops serving one address. Built with [`Threads::bind`],
/// started with [`Threads::run`]; stopped by a signal it was told to
/// stop on, its [`Threads::stop_handle`], or an app's [`crate::Ctx::stop`]
/// (which stops that loop).
pub struct Threads {
    listeners: Vec<Listener>,
    local: Addr,
    signals: Vec<i32>,
    group: Arc<Group>,
    /// Every loop's listener speaks TLS with this.
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Threads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Threads")
            .field("local", &self.local)
            .field("loops", &self.listeners.len())
            .field("signals", &self.signals)
            .finish()
    }
}

impl Threads {
    /// `loops` loops listening on `addr`. TCP: one socket each with
    /// `SO_REUSEPORT` (port 0: the first picks a port, the others join
    /// it), so the kernel spreads new connections across them. Unix-domain:
    /// one socket, shared (the kernel has no `SO_REUSEPORT` for those; an
    /// idle loop wakes for a connection another loop may take first).
    ///
    /// # Errors
    /// `InvalidInput` for zero loops or an unnamed address; `AddrInUse`
    /// if another server listens on `addr` (even with `SO_REUSEPORT`);
    /// what `socket`, `bind` and `listen` say.
    pub fn bind(addr: &Addr, loops: usize) -> io::Result<Threads> {
        if loops == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a group needs at least one loop",
            ));
        }
        let listeners = match addr {
            Addr::Tcp(tcp) => {
                if tcp.port() != 0 {
                    // SO_REUSEPORT would let this group share a port with
                    // another server's group without a word; a plain bind
                    // says if the port is taken. (Bound, not listening, and
                    // closed at once.)
                    crate::net::bind_probe(*tcp)?;
                }
                let first = crate::net::tcp_listener_reuseport(*tcp)?;
                let local = first.local_addr()?;
                let mut listeners = vec![Listener::Tcp(first)];
                for _ in 1..loops {
                    listeners.push(Listener::Tcp(crate::net::tcp_listener_reuseport(local)?));
                }
                listeners
            }
            _ => {
                let first = crate::net::UnixListener::bind(addr)?;
                let mut listeners = Vec::with_capacity(loops);
                for _ in 1..loops {
                    listeners.push(Listener::Unix(first.share()?));
                }
                listeners.insert(0, Listener::Unix(first));
                listeners
            }
        };
        let local = listeners[0].local_addr()?;
        Ok(Threads {
            listeners,
            local,
            signals: Vec::new(),
            group: Arc::new(Group::new(loops)),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    /// Every loop accepts TLS connections with `config` (feature `tls`),
    /// as [`EventLoop::listen_tls`] does for one loop.
    ///
    /// ```
    /// # fn certificate() -> (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>) {
    /// #     let key = rcgen::KeyPair::generate().unwrap();
    /// #     let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    /// #     (vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    /// # }
    /// use std::sync::Arc;
    /// use iomux::group::Threads;
    ///
    /// let (chain, key) = certificate();
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ServerConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_no_client_auth()
    ///     .with_single_cert(chain, key)?;
    /// let threads = Threads::bind(&"127.0.0.1:0".parse()?, 2)?.tls(Arc::new(tls));
    /// # drop(threads);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Threads {
        self.tls = Some(config);
        self
    }

    /// Stops the whole group gracefully when one of `signals` arrives (e.g.
    /// [`crate::SIGINT`], [`crate::SIGTERM`]); without it, signals are
    /// the program's business.
    ///
    /// # Errors
    /// `InvalidInput` for a signal that cannot be caught (`SIGKILL`,
    /// `SIGSTOP`, or not a signal).
    pub fn stop_on_signals(mut self, signals: &[i32]) -> io::Result<Threads> {
        if let Some(&bad) = signals
            .iter()
            .find(|s| signal_hook::consts::FORBIDDEN.contains(s) || !(1..64).contains(*s))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {bad} cannot be caught"),
            ));
        }
        self.signals = signals.to_vec();
        Ok(self)
    }

    /// Stops every loop of the group gracefully, from any thread (before
    /// or while it runs).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            target: StopTarget::Group(self.group.clone()),
        }
    }

    /// Number of loops.
    pub fn loops(&self) -> usize {
        self.listeners.len()
    }

    /// The address the loops listen on (for TCP, the real port).
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// Runs one loop per listener, each in its own thread with the app
    /// `make_app(index)` and `config` (`max_clients` counts the whole
    /// group). `ready` runs once every loop is up (with the backend's
    /// resolved name). Returns when every loop has finished its graceful
    /// shutdown.
    ///
    /// ```
    /// use iomux::group::Threads;
    /// use iomux::{App, Backend, Config, ConnId, Ctx};
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
    /// let threads = Threads::bind(&"127.0.0.1:0".parse()?, 2)?;
    /// // A real server adds `.stop_on_signals(&[iomux::SIGINT, iomux::SIGTERM])`.
    /// let stop = threads.stop_handle();
    /// let stats = threads.run(Backend::Auto, Config::default(), |_| Echo, |_backend| stop.stop())?;
    /// assert_eq!(stats.loops.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// An invalid `config`; a loop that could not start (the backend is
    /// unavailable, no descriptors): then none runs; a loop that failed
    /// while running, or panicked.
    pub fn run<A, F>(
        self,
        backend: Backend,
        config: Config,
        make_app: F,
        ready: impl FnOnce(&'static str),
    ) -> io::Result<GroupStats>
    where
        A: App,
        F: Fn(usize) -> A + Sync,
    {
        config.validate()?;
        let loops = self.listeners.len();
        let (group, signals) = (self.group, self.signals);
        let barrier = Barrier::new(loops + 1);
        let results = thread::scope(|scope| {
            let handles: Vec<_> = self
                .listeners
                .into_iter()
                .enumerate()
                .map(|(index, listener)| {
                    let member = Member {
                        index,
                        backend,
                        #[cfg(feature = "tls")]
                        tls: self.tls.clone(),
                        config: config.clone(),
                        signals: &signals,
                        group: group.clone(),
                        barrier: &barrier,
                    };
                    let make_app = &make_app;
                    thread::Builder::new()
                        .name(format!("iomux-loop-{index}"))
                        .spawn_scoped(scope, move || member.run(listener, make_app))
                })
                .collect::<io::Result<_>>()?;
            barrier.wait();
            // Every loop has registered its waker (or failed) by now.
            if !group.failed.load(Ordering::SeqCst) {
                ready(backend.resolve().name());
            }
            let results: Vec<io::Result<Stats>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(io::Error::other("an event loop thread panicked")))
                })
                .collect();
            Ok::<_, io::Error>(results)
        })?;
        let loops = results.into_iter().collect::<io::Result<Vec<Stats>>>()?;
        Ok(GroupStats { loops })
    }
}

/// What one loop of a group is started with.
struct Member<'a> {
    index: usize,
    backend: Backend,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    config: Config,
    signals: &'a [i32],
    group: Arc<Group>,
    barrier: &'a Barrier,
}

impl Member<'_> {
    /// Sets the loop up, waits for the others, runs.
    fn run<A: App, F: Fn(usize) -> A>(self, listener: Listener, make_app: &F) -> io::Result<Stats> {
        let setup = || -> io::Result<EventLoop<A::State>> {
            let mut lp = EventLoop::new(self.backend, self.config)?;
            #[cfg(feature = "tls")]
            if let Some(tls) = self.tls {
                lp.listen_tls(listener, tls)?;
            } else {
                lp.listen(listener)?;
            }
            #[cfg(not(feature = "tls"))]
            lp.listen(listener)?;
            if !self.signals.is_empty() {
                lp.stop_on_signals(self.signals)?;
            }
            lp.join_group(self.group.clone(), self.index);
            Ok(lp)
        };
        let built = setup();
        if built.is_err() {
            self.group.failed.store(true, Ordering::SeqCst);
        }
        self.barrier.wait();
        let mut lp = built?;
        if self.group.failed.load(Ordering::SeqCst) {
            return Ok(lp.stats()); // another loop could not start: none runs
        }
        let mut app = make_app(self.index);
        lp.run(&mut app)?;
        Ok(lp.stats())
    }
}
