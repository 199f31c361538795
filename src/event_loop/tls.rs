//! TLS connections (feature `tls`): listening and connecting with a
//! rustls config, and the step where received ciphertext becomes the
//! plaintext delivery hands the app. Sealing output is the connection's
//! own (`Conn::queue`), and the close's `close_notify` is in
//! `conn_io.rs`'s `after_write`; the drivers see ciphertext only.

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};

use super::EventLoop;
use crate::app::App;
use crate::conn::{ConnId, Flags, Phase};
use crate::ctx::Ctx;
use crate::reason::CloseReason;
use crate::selector::Token;
use crate::shared::{Shared, TimerKind};
use crate::stream::Addr;
use crate::tls::{ServerTls, Tls, TlsError};

impl<S: Default> EventLoop<S> {
    /// Accepts TLS connections from `listener`, TCP or Unix-domain, with
    /// `config` (its certificate, key, ALPN protocols). The app sees their
    /// plaintext through the same [`App`] callbacks as any connection's:
    /// `on_open` when the connection is accepted, `on_data` once the
    /// handshake is done; what it sends before then goes out right after
    /// the handshake. A handshake that fails, or does not finish within
    /// [`crate::Config::tls_handshake_timeout`], closes the connection
    /// with [`CloseReason::Tls`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use iomux::net::Listener;
    /// use iomux::{Backend, Config, EventLoop};
    ///
    /// # fn certificate() -> (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>) {
    /// #     let key = rcgen::KeyPair::generate().unwrap();
    /// #     let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
    /// #     (vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
    /// # }
    /// // A certificate chain and its key (from PEM files, say, with
    /// // `rustls::pki_types::pem::PemObject`).
    /// let (chain, key) = certificate();
    /// let provider = Arc::new(rustls::crypto::ring::default_provider());
    /// let tls = rustls::ServerConfig::builder_with_provider(provider)
    ///     .with_safe_default_protocol_versions()?
    ///     .with_no_client_auth()
    ///     .with_single_cert(chain, key)?;
    /// let mut lp: EventLoop = EventLoop::new(Backend::Auto, Config::default())?;
    /// lp.listen_tls(Listener::bind(&"127.0.0.1:0".parse()?)?, Arc::new(tls))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`EventLoop::listen`].
    pub fn listen_tls(
        &mut self,
        listener: impl Into<crate::net::Listener>,
        config: Arc<ServerConfig>,
    ) -> io::Result<()> {
        let listener = listener.into();
        listener.set_nonblocking()?;
        self.add_listener(listener, Some(config))
    }

    /// Starts a TLS connection to `addr`, checking that its peer is
    /// `server_name` by `config` (see [`Ctx::connect_tls`]).
    ///
    /// # Errors
    /// As [`EventLoop::connect`]; or rustls refused `config` for
    /// `server_name` (`InvalidInput`).
    pub fn connect_tls(
        &mut self,
        addr: impl Into<Addr>,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<ConnId> {
        connect_tls(
            &mut self.shared,
            &mut self.driver,
            &addr.into(),
            None,
            config,
            server_name,
        )
    }

    /// A connection accepted from a TLS listener gets its session (before
    /// `on_open`, so what the app sends there waits for the handshake).
    /// False if rustls refused (the connection is closing).
    pub(super) fn start_server_tls(&mut self, id: ConnId, config: &ServerTls) -> bool {
        let now = self.shared.now;
        let Some(conn) = self.shared.live_mut(id) else {
            return false;
        };
        match Tls::server(config) {
            Ok(tls) => {
                conn.set_tls(tls, now);
                arm_handshake_timer(&mut self.shared, id);
                true
            }
            Err(e) => {
                self.shared
                    .schedule_close(id, CloseReason::Tls(TlsError::Protocol(e)));
                false
            }
        }
    }

    /// Ciphertext a read or a receive brought for TLS connection `id`:
    /// rustls's answers (handshake, alerts) go to its output, plaintext to
    /// delivery as any connection's bytes, `close_notify` is the peer's
    /// end of stream. A session rustls gives up on sends its alert and
    /// closes.
    pub(super) fn tls_arrived<A: App<State = S>>(
        &mut self,
        app: &mut A,
        id: ConnId,
        cipher: &[u8],
    ) {
        let now = self.shared.now;
        let max_jobs = self.shared.config.max_jobs_per_conn;
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        let phase = conn.phase;
        conn.io_or_new(now).last_read = now;
        let mut plain = std::mem::take(&mut self.tls_plain);
        let Some((result, answered)) = conn.tls_open(cipher, &mut plain) else {
            self.tls_plain = plain;
            return;
        };
        if answered {
            self.shared.mark_dirty(id);
        }
        match result {
            Err(e) => self.tls_failed(id, TlsError::Protocol(e)),
            Ok(opened) => {
                if opened.handshake_done
                    && let Some(c) = self.shared.live(id)
                {
                    log::debug!(target: "iomux::tls", "{}: handshake done", c.peer());
                }
                if !plain.is_empty() {
                    match phase {
                        Phase::Open | Phase::Stopping => {
                            if self
                                .shared
                                .live(id)
                                .is_some_and(|c| c.may_deliver(max_jobs))
                            {
                                self.offer(app, id, &plain);
                            } else if let Some(c) = self.shared.live_mut(id) {
                                c.io_or_new(now).input.extend_from_slice(&plain);
                            }
                        }
                        // Read only to finish the handshake (draining):
                        // nobody reads what follows it.
                        _ => {
                            if let Some(c) = self.shared.live_mut(id) {
                                c.set(Flags::DISCARDED, true);
                            }
                        }
                    }
                }
                if opened.peer_closed {
                    self.peer_ended(id);
                    // Told after the input before it, as a read of no
                    // bytes would be; no event may come for it (the
                    // socket's own end can be read already, or never).
                    self.shared.unfinished.push(Token(id.0));
                }
            }
        }
        plain.clear();
        self.tls_plain = plain;
    }

    /// rustls gave up on `id`'s session: its alert (already queued) goes
    /// out, then the connection closes with `error`, within the grace
    /// period.
    pub(super) fn tls_failed(&mut self, id: ConnId, error: TlsError) {
        let Some(conn) = self.shared.live_mut(id) else {
            return;
        };
        conn.phase = Phase::Draining;
        conn.set(Flags::REOFFER, false);
        if let Some(io) = conn.io_mut() {
            io.input = Vec::new();
        }
        self.shared.note_close_reason(id, CloseReason::Tls(error));
        let grace = self.shared.config.shutdown_grace;
        self.shared.add_timer(grace, TimerKind::Linger(id));
        self.shared.mark_dirty(id);
        self.update_interest(id);
    }

    /// The handshake timer of `id` came due: closes it if its handshake
    /// is still going on.
    pub(super) fn check_handshake(&mut self, id: ConnId) {
        if self
            .shared
            .live(id)
            .and_then(|c| c.tls())
            .is_some_and(Tls::handshake_pending)
        {
            let timeout = self.shared.config.tls_handshake_timeout;
            self.shared
                .schedule_close(id, CloseReason::Tls(TlsError::HandshakeTimeout(timeout)));
        }
    }
}

/// Arms `id`'s handshake timeout.
fn arm_handshake_timer(shared: &mut Shared, id: ConnId) {
    let timeout = shared.config.tls_handshake_timeout;
    shared.add_timer(timeout, TimerKind::Handshake(id));
}

/// A connect of `by` to `addr`, with a TLS client session whose first
/// flight waits in its output for the connect.
pub(crate) fn connect_tls(
    shared: &mut Shared,
    driver: &mut crate::driver::Driver,
    addr: &Addr,
    by: Option<ConnId>,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
) -> io::Result<ConnId> {
    let now = shared.now;
    // The session first: a config rustls refuses makes no socket.
    let tls = Tls::client(config, server_name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let id = shared.connect(driver, addr, by)?;
    if let Some(conn) = shared.live_mut(id) {
        conn.set_tls(tls, now);
    }
    arm_handshake_timer(shared, id);
    Ok(id)
}

impl Ctx<'_> {
    /// Starts a TLS connection to `addr`, as [`Ctx::connect`] does a plain
    /// one, checking with `config` that the peer is `server_name`. The app
    /// sees it as any connection: `on_open` when the connect completes,
    /// plaintext in `on_data`; what it sends before the handshake is done
    /// goes out right after it. A failed handshake closes it with
    /// [`CloseReason::Tls`].
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use iomux::{App, ConnId, Ctx};
    /// use rustls::pki_types::ServerName;
    ///
    /// /// Asks a TLS server for its greeting once the loop starts.
    /// struct Ask {
    ///     tls: Arc<rustls::ClientConfig>,
    /// }
    ///
    /// impl App for Ask {
    ///     type State = ();
    ///     fn on_start(&mut self, ctx: &mut Ctx<'_>) {
    ///         let name = ServerName::try_from("localhost").expect("a DNS name");
    ///         match ctx.connect_tls("127.0.0.1:8443".parse::<iomux::Addr>().unwrap(), self.tls.clone(), name) {
    ///             Ok(conn) => {
    ///                 let _ = ctx.send(conn, b"hello\n"); // sent once the handshake is done
    ///             }
    ///             Err(e) => eprintln!("connect: {e}"),
    ///         }
    ///     }
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         println!("{}", String::from_utf8_lossy(input));
    ///         ctx.close_after_flush(conn); // with close_notify
    ///         input.len()
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`Ctx::connect`]; or rustls refused `config` for `server_name`
    /// (`InvalidInput`).
    pub fn connect_tls(
        &mut self,
        addr: impl Into<Addr>,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<ConnId> {
        let by = self.shared.current;
        connect_tls(
            self.shared,
            self.driver,
            &addr.into(),
            by,
            config,
            server_name,
        )
    }

    /// Whether `conn` is a TLS connection.
    pub fn is_tls(&self, conn: ConnId) -> bool {
        self.shared.live(conn).is_some_and(|c| c.tls().is_some())
    }

    /// Whether `conn`'s TLS handshake is still going on (false for a plain
    /// connection).
    pub fn tls_handshaking(&self, conn: ConnId) -> bool {
        self.shared
            .live(conn)
            .and_then(|c| c.tls())
            .is_some_and(Tls::handshaking)
    }

    /// The protocol `conn`'s TLS handshake agreed by ALPN (`b"h2"`,
    /// `b"http/1.1"`), once it is done; `None` if none was, or for a plain
    /// connection.
    ///
    /// ```
    /// use iomux::{App, ConnId, Ctx};
    ///
    /// /// Says which protocol and name each TLS client asked for.
    /// struct Hello;
    ///
    /// impl App for Hello {
    ///     type State = ();
    ///     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
    ///         // on_data comes after the handshake: both are known by now.
    ///         let alpn = ctx.tls_alpn(conn).map(String::from_utf8_lossy);
    ///         let reply = format!(
    ///             "protocol {}, name {}\n",
    ///             alpn.as_deref().unwrap_or("none"),
    ///             ctx.tls_server_name(conn).unwrap_or("none"),
    ///         );
    ///         let _ = ctx.send(conn, reply.as_bytes());
    ///         input.len()
    ///     }
    /// }
    /// ```
    pub fn tls_alpn(&self, conn: ConnId) -> Option<&[u8]> {
        self.shared.live(conn)?.tls()?.alpn()
    }

    /// The server name a TLS client asked for (SNI), on a connection a TLS
    /// listener accepted; known once its ClientHello came, so from its
    /// first `on_data` on.
    pub fn tls_server_name(&self, conn: ConnId) -> Option<&str> {
        self.shared.live(conn)?.tls()?.server_name()
    }
}
