//! The accept path: listeners, admission, and running out of descriptors.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use rustix::io::Errno;

use super::{EventLoop, Life, watch};
use crate::app::App;
use crate::conn::ConnId;
use crate::shared::TimerKind;
use crate::stream::{Peer, Stream};
use crate::tls::ServerTls;
use crate::token;

pub(super) struct Listener {
    pub socket: crate::net::Listener,
    /// Its connections' TLS, on a TLS listener.
    pub tls: Option<ServerTls>,
    /// Watched by the selector (not while accepting is paused).
    pub registered: bool,
}

/// Whether an `accept` error concerns only the connection being accepted
/// (accept(2) says: retry), rather than the listener or the process.
pub(super) fn is_per_connection(e: Errno) -> bool {
    matches!(
        e,
        Errno::INTR
            | Errno::CONNABORTED
            | Errno::PROTO
            | Errno::PERM
            | Errno::NOPROTOOPT
            | Errno::HOSTDOWN
            | Errno::NONET
            | Errno::HOSTUNREACH
            | Errno::OPNOTSUPP
            | Errno::NETUNREACH
            | Errno::NETDOWN
    )
}

impl<S: Default> EventLoop<S> {
    /// Puts a connected stream in the table and watches it.
    pub(super) fn insert(
        &mut self,
        stream: Stream,
        peer: Peer,
        origin: crate::Origin,
    ) -> io::Result<ConnId> {
        self.shared
            .insert_conn(&mut self.driver, stream, peer, origin)
    }

    /// Starts watching a listening socket.
    pub(super) fn add_listener(
        &mut self,
        socket: crate::net::Listener,
        tls: Option<ServerTls>,
    ) -> io::Result<()> {
        let index = self.listeners.len();
        if token::listener(index).is_none() {
            return Err(io::Error::other(format!(
                "too many listeners (at most {})",
                token::MAX_LISTENERS
            )));
        }
        self.listeners.push(Listener {
            socket,
            tls,
            registered: false,
        });
        if let Err(e) = self.watch_listener(index) {
            self.listeners.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Watches listener `index` (below [`token::MAX_LISTENERS`]).
    pub(super) fn watch_listener(&mut self, index: usize) -> io::Result<()> {
        let (Some(l), Some(token)) = (self.listeners.get_mut(index), token::listener(index)) else {
            return Ok(());
        };
        self.driver.watch_listener(index, token, l.socket.as_fd())?;
        l.registered = true;
        Ok(())
    }

    /// Stops watching listener `index` (a pause, or for good).
    fn unwatch_listener(&mut self, index: usize) {
        let Some(l) = self.listeners.get_mut(index).filter(|l| l.registered) else {
            return;
        };
        l.registered = false;
        self.driver.unwatch_listener(index, l.socket.as_fd());
    }

    /// Tells the app a connection opened.
    pub(super) fn open<A: App<State = S>>(&mut self, app: &mut A, id: ConnId) {
        let Some(origin) = self.shared.live(id).map(crate::conn::Conn::origin) else {
            return;
        };
        self.call_for(app, id, watch::Sends::Pushes, |app, ctx, st| {
            app.on_open(ctx, id, st, origin)
        });
    }

    pub(super) fn accept<A: App<State = S>>(&mut self, app: &mut A, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        if !listener.registered || self.life != Life::Running {
            return;
        }
        for _ in 0..self.shared.config.accept_budget {
            let accepted = self.driver.accept(&self.listeners[index].socket);
            match accepted {
                Ok((fd, addr)) => {
                    self.emfile_logged = false;
                    let addr = addr.and_then(|a| SocketAddr::try_from(a).ok());
                    if let Some((stream, peer, tls)) = self.accepted_stream(index, fd, addr) {
                        self.admit(app, stream, peer, tls);
                    }
                }
                Err(Errno::AGAIN) => return,
                Err(e) if is_per_connection(e) => {}
                // Out of resources, or something unexpected: back off for a
                // moment (logged once) rather than spin or drop the backlog.
                Err(e) => {
                    self.pause_accepting(e.into());
                    return;
                }
            }
        }
        // Budget used up with connections still queued.
        if self.driver.edge_triggered()
            && let Some(token) = token::listener(index)
        {
            self.shared.unfinished.push(token);
        }
    }

    /// The stream of a socket listener `index` accepted, its peer (`addr`
    /// if accept said; `None` if the peer is already gone), and the
    /// listener's TLS.
    pub(super) fn accepted_stream(
        &self,
        index: usize,
        fd: OwnedFd,
        addr: Option<SocketAddr>,
    ) -> Option<(Stream, Peer, Option<ServerTls>)> {
        let listener = self.listeners.get(index)?;
        let tls = listener.tls.clone();
        match &listener.socket {
            crate::net::Listener::Tcp(_) => {
                let stream = TcpStream::from(fd);
                let peer = addr.or_else(|| stream.peer_addr().ok())?;
                Some((Stream::Tcp(stream), Peer::from(peer), tls))
            }
            // Clients rarely bind a name: number them instead.
            crate::net::Listener::Unix(_) => Some((
                Stream::Unix(UnixStream::from(fd)),
                self.shared.unnamed_unix_peer(),
                tls,
            )),
        }
    }

    pub(super) fn admit<A: App<State = S>>(
        &mut self,
        app: &mut A,
        stream: Stream,
        peer: Peer,
        tls: Option<ServerTls>,
    ) {
        let config = &self.shared.config;
        let clients = match &self.shared.group {
            Some((group, _)) => group.clients.load(std::sync::atomic::Ordering::Relaxed),
            None => self.shared.conns.len(),
        };
        if clients >= config.max_clients {
            self.shared.stats.rejected += 1;
            log::info!(
                target: "iomux::conn",
                "rejected {peer}: too many clients (max {})",
                config.max_clients
            );
            if let Some(reply) = &config.max_clients_reply
                && let Err(e) = stream.write(reply)
            {
                log::debug!(target: "iomux::conn", "{peer}: the refusal was not written: {e}");
            }
            return; // dropping the stream closes it
        }
        if config.nodelay
            && let Some(tcp) = stream.tcp()
        {
            let _ = tcp.set_nodelay(true);
        }
        match self.insert(stream, peer, crate::Origin::Accepted) {
            Ok(id) => {
                if let Some(c) = self.shared.live(id) {
                    log::info!(target: "iomux::conn", "connect {}", c.peer());
                }
                #[cfg(feature = "tls")]
                if let Some(config) = tls
                    && !self.start_server_tls(id, &config)
                {
                    return;
                }
                #[cfg(not(feature = "tls"))]
                let _ = tls;
                self.open(app, id);
            }
            Err(e) => log::warn!(target: "iomux::conn", "cannot watch a new connection: {e}"),
        }
    }

    /// Out of descriptors: the pending connection stays queued and the
    /// listener stays readable, so accepting again at once would spin.
    /// Stop watching the listeners for a moment instead; connected clients
    /// go on being served, and closing ones free descriptors meanwhile.
    pub(super) fn pause_accepting(&mut self, error: io::Error) {
        if !self.emfile_logged {
            log::warn!(
                target: "iomux::accept",
                "accept failed: {error}; pausing accepts for {:?} (raise the open-files limit or lower --max-clients)",
                self.shared.config.accept_backoff
            );
            self.emfile_logged = true;
        }
        for index in 0..self.listeners.len() {
            self.unwatch_listener(index);
        }
        let backoff = self.shared.config.accept_backoff;
        self.shared.add_timer(backoff, TimerKind::ResumeAccept);
    }

    pub(super) fn resume_accepting(&mut self) {
        if self.life != Life::Running {
            return;
        }
        for index in 0..self.listeners.len() {
            if !self.listeners[index].registered
                && let Err(e) = self.watch_listener(index)
            {
                log::warn!(target: "iomux::accept", "cannot watch a listener again: {e}");
            }
        }
    }

    /// Stops accepting for good (the shutdown).
    pub(super) fn close_listeners(&mut self) {
        for index in 0..self.listeners.len() {
            self.unwatch_listener(index);
        }
        // A request queued this turn names a listener's fd number: it must
        // reach the kernel before that number is closed.
        self.driver.before_listeners_close();
        self.listeners.clear();
    }
}
