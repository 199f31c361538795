//! 4. Output pushed to peers that do not read.

use crate::prelude::*;

backend_suite! {
    pushed_output_hard_limit_closes_non_reader,
    pushed_output_soft_limit_closes_after_its_period,
    last_reply_to_a_non_reader_waits_at_most_the_grace,
}

/// A publisher's `push N` sends N bytes to every other connection (pushed
/// output) and answers `pushed`; `ping` answers `pong`. Connections' send
/// buffers are made small (through `Ctx::socket`) so the kernel absorbs
/// little. After a push, notes each connection whose pending output is
/// over one of the `watch` marks (`Note(NAME)`, once per mark). Answers a
/// limit with `limit_reply`, if any.
pub(crate) struct Pusher {
    rec: Rec,
    watch: Vec<(usize, &'static str)>,
    noted: Vec<(ConnId, &'static str)>,
    /// Sent from `on_limit`.
    limit_reply: Option<&'static [u8]>,
}

impl App for Pusher {
    type State = ();
    fn name(&self) -> &'static str {
        "pusher"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        if let Some(socket) = ctx.socket(conn) {
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(socket, 16 * 1024);
        }
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            if line == "ping" {
                let _ = ctx.send(conn, b"pong\n");
            } else if let Some(n) = line.strip_prefix("push ").and_then(|n| n.parse().ok()) {
                ctx.broadcast(&vec![b'p'; n], Some(conn));
                let peers: Vec<ConnId> = self.rec.peers.keys().copied().collect();
                for other in peers {
                    for &(mark, name) in &self.watch {
                        if ctx.pending_output(other) > mark && !self.noted.contains(&(other, name))
                        {
                            self.noted.push((other, name));
                            self.rec.note(ctx, other, Ev::Note(name.into()));
                        }
                    }
                }
                let _ = ctx.send(conn, b"pushed\n");
            } else {
                ctx.close_because(conn, "bad request");
            }
        }
        used
    }
    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        self.rec.note(ctx, conn, Ev::Limit(limit));
        if let Some(reply) = self.limit_reply {
            let _ = ctx.send(conn, reply);
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A client that reads everything it is sent, counting the bytes.
pub(crate) struct Reader {
    stream: TcpStream,
    got: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Reader {
    fn start(stream: TcpStream) -> Reader {
        let got = Arc::new(AtomicUsize::new(0));
        let mut reading = stream.try_clone().unwrap();
        let counter = got.clone();
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = reading.read(&mut buf) {
                counter.fetch_add(n, Ordering::SeqCst);
            }
        });
        Reader {
            stream,
            got,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until at least `n` bytes were read.
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + LIVENESS;
        while self.got.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the reading client got {} of {n} bytes",
                self.got.load(Ordering::SeqCst)
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) const PUSH: usize = 32 * 1024;

/// More than the kernel buffers of a connection that does not read take
/// (its receive window and our small send buffer).
pub(crate) const DEEP: usize = 1 << 20;

/// Asks the publisher for one push and waits for its `pushed`.
pub(crate) fn push(publisher: &mut TcpStream) {
    assert_eq!(ask(publisher, &format!("push {PUSH}")), "pushed");
}

/// Output pushed to a connection that does not read: once over the hard
/// `max_output` the app's `on_limit(Limit::Output)` runs and then the
/// connection closes with `CloseReason::Limit(Limit::Output)` (logged as
/// such); a receiver that reads gets every push and stays open.
fn pushed_output_hard_limit_closes_non_reader(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let app = Pusher {
        rec: Rec::new(&journal),
        watch: Vec::new(),
        noted: Vec::new(),
        limit_reply: None,
    };
    let mut config = Config::default();
    config.max_output = 256 * 1024;
    let lp = LoopThread::start(backend, config, app);
    let mut publisher = lp.connect();
    let reader = Reader::start(lp.connect());
    let sleeper = lp.connect();
    let (reader_peer, sleeper_peer) = (peer_of(&reader.stream), peer_of(&sleeper));
    journal.wait_open(reader_peer);
    journal.wait_open(sleeper_peer);

    let mut pushes = 0;
    while journal.closed(sleeper_peer).is_none() {
        assert!(
            pushes < 2000,
            "{} MiB pushed, never over the limit",
            pushes / 32
        );
        push(&mut publisher);
        pushes += 1;
        // Paced by the reader, which never has more than one push pending.
        reader.wait_for(pushes * PUSH);
    }
    let max = 256 * 1024;
    assert_eq!(
        journal.of(sleeper_peer),
        vec![
            Ev::Open,
            Ev::Limit(Limit::Output { max }),
            Ev::Close(Reason::Limit(Limit::Output { max })),
        ],
        "on_limit, then the close"
    );
    assert!(
        logged_reason(
            mark,
            sleeper_peer,
            "output limit exceeded (client not reading): hard limit 262144 bytes"
        ),
        "logged: {:?}",
        conn_lines(sleeper_peer)
    );
    push(&mut publisher);
    reader.wait_for((pushes + 1) * PUSH);
    assert_eq!(
        journal.closed(reader_peer),
        None,
        "the reader is unaffected"
    );
    assert_eq!(ask(&mut publisher, "ping"), "pong");
    drop((reader, sleeper));
    lp.stop(LIVENESS);
}

/// The soft output limit: a non-reader over it is closed only once it has
/// been over for the whole period (`Limit::OutputSoft`, after `on_limit`),
/// not before; a receiver that went over but then read everything before
/// the period ended stays open; a receiver that reads throughout is
/// unaffected.
fn pushed_output_soft_limit_closes_after_its_period(backend: &str) {
    let journal = Journal::default();
    let soft = 128 * 1024;
    let period = Duration::from_millis(300);
    let app = Pusher {
        rec: Rec::new(&journal),
        // Over the soft limit; and far enough over it that the kernel cannot
        // take enough more to bring it back under.
        watch: vec![(soft, "over"), (soft + DEEP, "deep")],
        noted: Vec::new(),
        limit_reply: None,
    };
    let mut config = Config::default();
    config.max_output = 64 << 20;
    config.max_output_soft = Some((soft, period));
    let lp = LoopThread::start(backend, config, app);
    let mut publisher = lp.connect();
    let reader = Reader::start(lp.connect());
    let sleeper = lp.connect();
    let late = lp.connect();
    let peers = [peer_of(&reader.stream), peer_of(&sleeper), peer_of(&late)];
    for peer in peers {
        journal.wait_open(peer);
    }
    let [reader_peer, sleeper_peer, late_peer] = peers;
    let noted = |peer, name: &str| {
        journal
            .timed(peer)
            .into_iter()
            .find(|(_, ev)| *ev == Ev::Note(name.into()))
            .map(|(at, _)| at)
    };

    // Pushes, paced by the reader, until the late reader is over the limit.
    let mut pushes = 0;
    while noted(late_peer, "over").is_none() {
        assert!(pushes < 2000, "never over the soft limit");
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
    }
    // Then it reads everything it was sent, and goes on reading.
    let late = Reader::start(late);
    late.wait_for(pushes * PUSH);
    let late_over = noted(late_peer, "over").expect("seen over");
    let in_time = Instant::now() < late_over + period;
    // The sleeper never reads: on until it is far over, or closed.
    while noted(sleeper_peer, "deep").is_none() && journal.closed(sleeper_peer).is_none() {
        assert!(pushes < 2000, "never far over the soft limit");
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
        if in_time {
            late.wait_for(pushes * PUSH);
        }
    }

    let (closed_at, reason) = journal.wait_closed(sleeper_peer);
    let limit = Limit::OutputSoft { max: soft, period };
    assert_eq!(reason, Reason::Limit(limit));
    let events: Vec<Ev> = journal
        .of(sleeper_peer)
        .into_iter()
        .filter(|e| *e != Ev::Note("deep".into()))
        .collect();
    assert_eq!(
        events,
        [
            Ev::Open,
            Ev::Note("over".into()),
            Ev::Limit(limit),
            Ev::Close(Reason::Limit(limit))
        ]
    );
    // The loop's clock for "over since" restarts whenever the output is
    // written back under the limit, so it started no earlier than the first
    // time the app saw it over.
    let held = closed_at - noted(sleeper_peer, "over").expect("seen over");
    assert!(held >= period, "closed after {held:?} over the soft limit");
    assert!(held < period + LIVENESS, "closed only after {held:?}");

    // A round trip now is served after every timer due before it.
    assert_eq!(ask(&mut publisher, "ping"), "pong");
    if in_time {
        assert_eq!(journal.closed(late_peer), None, "drained in time, kept");
    } else {
        eprintln!("note: the late reader drained after the period; not checked");
    }
    assert_eq!(
        journal.closed(reader_peer),
        None,
        "the reader is unaffected"
    );
    assert_eq!(ask(&mut publisher, "ping"), "pong");
    drop((reader, sleeper, late));
    lp.stop(LIVENESS);
}

/// A last reply queued in `on_limit` for a peer that does not read can
/// never be written: the connection still closes, with `Limit(Output)`,
/// once the grace period is over (not before, not never); nothing more is
/// pushed to it meanwhile, and a reading receiver is unaffected.
fn last_reply_to_a_non_reader_waits_at_most_the_grace(backend: &str) {
    let journal = Journal::default();
    let app = Pusher {
        rec: Rec::new(&journal),
        // What it can hold: up to the limit, the push that went over, the
        // last reply; more would be pushes queued after the limit.
        watch: vec![(256 * 1024 + PUSH + 64, "grew")],
        noted: Vec::new(),
        limit_reply: Some(b"-ERR you are not reading\n"),
    };
    let grace = Duration::from_millis(300);
    let mut config = Config::default();
    config.max_output = 256 * 1024;
    config.shutdown_grace = grace;
    let lp = LoopThread::start(backend, config, app);
    let mut publisher = lp.connect();
    let reader = Reader::start(lp.connect());
    let sleeper = lp.connect();
    let (reader_peer, sleeper_peer) = (peer_of(&reader.stream), peer_of(&sleeper));
    journal.wait_open(reader_peer);
    journal.wait_open(sleeper_peer);
    let limit = Limit::Output { max: 256 * 1024 };
    let mut pushes = 0;
    while !journal.of(sleeper_peer).contains(&Ev::Limit(limit)) {
        assert!(pushes < 2000, "never over the limit");
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
    }
    let limit_at = journal
        .timed(sleeper_peer)
        .into_iter()
        .find(|(_, e)| *e == Ev::Limit(limit))
        .map(|(at, _)| at)
        .expect("just seen");
    // Pushes go on meanwhile; they are not queued for it.
    for _ in 0..4 {
        push(&mut publisher);
        pushes += 1;
        reader.wait_for(pushes * PUSH);
    }
    let (closed_at, reason) = journal.wait_closed(sleeper_peer);
    assert_eq!(reason, Reason::Limit(limit));
    assert!(
        closed_at - limit_at >= grace,
        "closed after {:?}",
        closed_at - limit_at
    );
    assert_eq!(
        journal.of(sleeper_peer),
        [Ev::Open, Ev::Limit(limit), Ev::Close(Reason::Limit(limit))]
    );
    assert_eq!(
        journal.closed(reader_peer),
        None,
        "the reader is unaffected"
    );
    drop((reader, sleeper));
    lp.stop(LIVENESS);
}
