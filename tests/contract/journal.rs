//! What the apps saw: the journal.

use crate::prelude::*;

/// A [`CloseReason`] the test can compare (that one holds an `io::Error`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reason {
    PeerClosed,
    App,
    AppError(String),
    Idle,
    NotReading,
    Limit(Limit),
    Shutdown,
    Error(io::ErrorKind),
    Other(String),
}

impl From<&CloseReason> for Reason {
    fn from(reason: &CloseReason) -> Reason {
        match reason {
            CloseReason::PeerClosed => Reason::PeerClosed,
            CloseReason::App => Reason::App,
            CloseReason::AppError(why) => Reason::AppError(why.clone()),
            CloseReason::Idle => Reason::Idle,
            CloseReason::NotReading => Reason::NotReading,
            CloseReason::Limit(limit) => Reason::Limit(*limit),
            CloseReason::Shutdown => Reason::Shutdown,
            CloseReason::Error(e) => Reason::Error(e.kind()),
            other => Reason::Other(format!("{other:?}")),
        }
    }
}

/// One callback the loop made.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Ev {
    Open,
    /// The input `on_data` was offered.
    Data(Vec<u8>),
    Eof,
    Drain,
    Limit(Limit),
    /// The state's final value, from `on_close`.
    Final(u64),
    Close(Reason),
    /// `on_conn_timer`: the timer's id and the state's label.
    ConnTimer(u64, String),
    Timer(u64),
    Wake,
    JobDone,
    /// Anything else an app wants to show the test.
    Note(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The connection's peer (the client's local address); `None` for
    /// loop-wide callbacks.
    pub(crate) peer: Option<SocketAddr>,
    /// `Ctx::now` of the turn it happened in.
    pub(crate) at: Instant,
    pub(crate) ev: Ev,
}

/// Callbacks in the order the loop made them, shared between an app (on
/// the loop thread) and its test.
#[derive(Clone, Default)]
pub(crate) struct Journal(Arc<(Mutex<Vec<Entry>>, Condvar)>);

impl Journal {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, peer: Option<SocketAddr>, at: Instant, ev: Ev) {
        self.lock().push(Entry { peer, at, ev });
        self.0.1.notify_all();
    }

    /// Everything recorded for `peer`, with when.
    pub(crate) fn timed(&self, peer: SocketAddr) -> Vec<(Instant, Ev)> {
        self.lock()
            .iter()
            .filter(|e| e.peer == Some(peer))
            .map(|e| (e.at, e.ev.clone()))
            .collect()
    }

    /// Everything recorded for `peer`.
    pub(crate) fn of(&self, peer: SocketAddr) -> Vec<Ev> {
        self.timed(peer).into_iter().map(|(_, ev)| ev).collect()
    }

    /// How many entries (of any peer) `pick` accepts.
    pub(crate) fn count(&self, pick: impl Fn(&Ev) -> bool) -> usize {
        self.lock().iter().filter(|e| pick(&e.ev)).count()
    }

    /// Waits until `done` holds for the journal; fails the test with the
    /// journal after [`LIVENESS`].
    pub(crate) fn wait(&self, what: &str, mut done: impl FnMut(&[Entry]) -> bool) {
        let deadline = Instant::now() + LIVENESS;
        let mut entries = self.lock();
        loop {
            if done(&entries) {
                return;
            }
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for {what}: {entries:#?}");
            entries = self
                .0
                .1
                .wait_timeout(entries, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for `peer` to be opened (so a broadcast reaches it).
    pub(crate) fn wait_open(&self, peer: SocketAddr) {
        self.wait(&format!("{peer} to open"), |es| {
            es.iter().any(|e| e.peer == Some(peer) && e.ev == Ev::Open)
        });
    }

    /// Why `peer` was closed, if it was.
    pub(crate) fn closed(&self, peer: SocketAddr) -> Option<(Instant, Reason)> {
        self.timed(peer).into_iter().find_map(|(at, ev)| match ev {
            Ev::Close(reason) => Some((at, reason)),
            _ => None,
        })
    }

    /// Waits until `peer` is closed; returns when (`Ctx::now`) and why.
    pub(crate) fn wait_closed(&self, peer: SocketAddr) -> (Instant, Reason) {
        self.wait(&format!("{peer} to close"), |es| {
            es.iter()
                .any(|e| e.peer == Some(peer) && matches!(e.ev, Ev::Close(_)))
        });
        self.closed(peer).expect("just seen")
    }
}

/// The part every test app shares: its journal, and each connection's peer
/// (a closed connection's id no longer has one).
pub(crate) struct Rec {
    pub(crate) journal: Journal,
    pub(crate) peers: HashMap<ConnId, SocketAddr>,
}

impl Rec {
    pub(crate) fn new(journal: &Journal) -> Rec {
        Rec {
            journal: journal.clone(),
            peers: HashMap::new(),
        }
    }

    pub(crate) fn open(&mut self, ctx: &Ctx<'_>, conn: ConnId) {
        let peer = ctx.peer_addr(conn).expect("an open connection has a peer");
        self.peers.insert(conn, peer);
        self.journal.push(Some(peer), ctx.now(), Ev::Open);
    }

    pub(crate) fn note(&self, ctx: &Ctx<'_>, conn: ConnId, ev: Ev) {
        let peer = self.peers.get(&conn).copied();
        self.journal.push(peer, ctx.now(), ev);
    }

    pub(crate) fn global(&self, ctx: &Ctx<'_>, ev: Ev) {
        self.journal.push(None, ctx.now(), ev);
    }

    pub(crate) fn close(&mut self, ctx: &Ctx<'_>, conn: ConnId, reason: &CloseReason) {
        let peer = self.peers.remove(&conn);
        self.journal
            .push(peer, ctx.now(), Ev::Close(Reason::from(reason)));
    }
}
