//! 6. Pause, resume, drain.

use crate::prelude::*;

backend_suite! {
    pause_and_resume_reading,
    a_paused_connection_holds_at_most_a_window_received_ahead,
    a_paused_connection_whose_peer_resets_is_closed,
    drain_is_told_once_after_output_full,
}

pub(crate) const RESUME: u64 = 1;

/// `pause`: pauses reading, answers `paused` and resumes on a connection
/// timer `resume` later (the rest of the input waits). `big N`: N bytes of
/// output at once, noting `output_full` after it (and leaving the rest of
/// the input while it is full). Other lines: `got LINE`.
pub(crate) struct Pauser {
    rec: Rec,
    resume: Duration,
}

impl App for Pauser {
    type State = ();
    fn name(&self) -> &'static str {
        "pauser"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.rec.note(ctx, conn, Ev::Data(input.to_vec()));
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&input[used..used + end]).into_owned();
            used += end + 1;
            if line == "pause" {
                ctx.pause_reading(conn);
                ctx.set_conn_timer(conn, self.resume, RESUME);
                let _ = ctx.send(conn, b"paused\n");
                return used;
            } else if let Some(n) = line.strip_prefix("big ").and_then(|n| n.parse().ok()) {
                let _ = ctx.send(conn, &vec![b'b'; n]);
                let full = ctx.output_full(conn);
                self.rec.note(ctx, conn, Ev::Note(format!("full {full}")));
                if full {
                    // The rest waits until the output drains.
                    return used;
                }
            } else {
                let _ = ctx.send(conn, format!("got {line}\n").as_bytes());
            }
        }
        used
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), timer: TimerId) {
        self.rec
            .note(ctx, conn, Ev::ConnTimer(timer.tag(), String::new()));
        if timer.tag() == RESUME {
            ctx.resume_reading(conn);
        }
    }
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Drain);
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

pub(crate) fn pauser_loop(backend: &str, journal: &Journal) -> LoopThread<Pauser> {
    let mut config = Config::default();
    config.high_water = 64 * 1024;
    config.low_water = 16 * 1024;
    let app = Pauser {
        rec: Rec::new(journal),
        resume: Duration::from_millis(200),
    };
    LoopThread::start(backend, config, app)
}

/// A connection paused by its app whose peer then resets is closed with
/// the error at once, before the app resumes it: nothing waits for the app
/// to act (on the completion driver no receive is armed then, so a poll with
/// no interest hears the reset). `select` cannot watch a descriptor for
/// errors alone (`Interest::NONE`), so there the reset is seen when reading
/// resumes: later, but still a close with the error.
fn a_paused_connection_whose_peer_resets_is_closed(backend: &str) {
    let journal = Journal::default();
    let app = Pauser {
        rec: Rec::new(&journal),
        resume: Duration::from_secs(3),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    c.write_all(b"pause\n").unwrap();
    assert_eq!(read_line(&mut c), "paused");
    rustix::net::sockopt::set_socket_linger(&c, Some(Duration::ZERO)).unwrap();
    drop(c); // a reset
    let (_, reason) = journal.wait_closed(peer);
    assert!(
        matches!(reason, Reason::Error(_) | Reason::PeerClosed),
        "closed as {reason:?}"
    );
    let resumed = journal
        .of(peer)
        .iter()
        .any(|e| matches!(e, Ev::ConnTimer(RESUME, _)));
    assert_eq!(
        resumed,
        backend == "select",
        "closed before the resume on every backend but select: {:?}",
        journal.of(peer)
    );
    lp.stop(LIVENESS);
}

/// Whether `ev` is an offer of input other than a `pause` request.
pub(crate) fn offers_other_than_pause(ev: &Ev) -> bool {
    matches!(ev, Ev::Data(d) if !d.starts_with(b"pause"))
}

/// `pause_reading` holds input back until `resume_reading`: what came in
/// the same write as `pause` is offered only after the resume, without new
/// bytes; what the client sends while paused likewise; an end of stream
/// that arrives while paused is told (`on_eof`) only after the resume and
/// the lines before it.
fn pause_and_resume_reading(backend: &str) {
    let journal = Journal::default();
    let lp = pauser_loop(backend, &journal);

    // In the same write: already in the loop's buffer when it pauses.
    let mut c = lp.connect();
    let peer = peer_of(&c);
    c.write_all(b"pause\nA\nB\n").unwrap();
    assert_eq!(read_line(&mut c), "paused");
    assert_eq!(read_line(&mut c), "got A");
    assert_eq!(read_line(&mut c), "got B");
    let events = journal.of(peer);
    let resumed = events
        .iter()
        .position(|e| *e == Ev::ConnTimer(RESUME, String::new()))
        .expect("resumed by its timer");
    assert!(
        !events[..resumed].iter().any(offers_other_than_pause),
        "input offered while paused: {events:?}"
    );
    assert!(
        events[resumed + 1..].contains(&Ev::Data(b"A\nB\n".to_vec())),
        "the held input is offered after the resume without new bytes: {events:?}"
    );

    // Sent while paused: waits in the socket.
    let mut d = lp.connect();
    let peer = peer_of(&d);
    assert_eq!(ask(&mut d, "pause"), "paused");
    d.write_all(b"C\n").unwrap();
    d.write_all(b"D\n").unwrap();
    assert_eq!(read_line(&mut d), "got C");
    assert_eq!(read_line(&mut d), "got D");
    let events = journal.of(peer);
    let resumed = events
        .iter()
        .position(|e| *e == Ev::ConnTimer(RESUME, String::new()))
        .expect("resumed by its timer");
    assert!(
        !events[..resumed].iter().any(offers_other_than_pause),
        "input offered while paused: {events:?}"
    );
    assert_eq!(ask(&mut d, "still here"), "got still here");

    // The end of stream comes while paused: nothing is stranded, the lines
    // are answered after the resume, then `on_eof`, then the close.
    let mut e = lp.connect();
    let peer = peer_of(&e);
    assert_eq!(ask(&mut e, "pause"), "paused");
    e.write_all(b"E\nF\n").unwrap();
    e.shutdown(Shutdown::Write).unwrap();
    let (got, error) = read_to_end(&mut e);
    assert_eq!(String::from_utf8_lossy(&got), "got E\ngot F\n");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    let events = journal.of(peer);
    let resumed = events
        .iter()
        .position(|e| *e == Ev::ConnTimer(RESUME, String::new()))
        .expect("resumed by its timer");
    let eof = events.iter().position(|e| *e == Ev::Eof);
    assert!(eof.is_some_and(|eof| eof > resumed), "{events:?}");
    drop((c, d));
    lp.stop(LIVENESS);
}

/// How far ahead of its app a connection may have received: the readiness
/// backends read 64 KiB at a time; the completion driver's receive brings
/// at most a 64 KiB window per arming, plus the rest of one provided buffer.
pub(crate) const AHEAD_BOUND: u64 = 64 * 1024 + 4096;
pub(crate) const MEASURE: u64 = 2;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum AheadPhase {
    /// Paused from the start, while the socket fills.
    Held,
    /// Resumed: the first offer pauses it again.
    Resumed,
    /// Paused after taking one offer, until the measurement.
    Paused,
    /// Measured: takes everything from now on.
    Taking,
}

/// Lets the socket fill while paused, resumes, pauses again at the first
/// offer, and a little later notes how many bytes the loop holds that it
/// has not offered (`ahead N`); then takes everything (`taken N` at EOF).
pub(crate) struct Ahead {
    rec: Rec,
    phase: AheadPhase,
    taken: u64,
}

impl App for Ahead {
    type State = ();
    fn name(&self) -> &'static str {
        "ahead"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
        ctx.pause_reading(conn);
        ctx.set_conn_timer(conn, Duration::from_millis(200), RESUME);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.taken += input.len() as u64;
        if self.phase == AheadPhase::Resumed {
            self.phase = AheadPhase::Paused;
            ctx.pause_reading(conn);
            ctx.set_conn_timer(conn, Duration::from_millis(300), MEASURE);
        }
        input.len()
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), timer: TimerId) {
        match (timer.tag(), self.phase) {
            (RESUME, AheadPhase::Held) => self.phase = AheadPhase::Resumed,
            (MEASURE, AheadPhase::Paused) => {
                let ahead = ctx.stats().bytes_in - self.taken;
                self.rec.note(ctx, conn, Ev::Note(format!("ahead {ahead}")));
                self.phase = AheadPhase::Taking;
            }
            _ => return,
        }
        ctx.resume_reading(conn);
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        let taken = self.taken;
        self.rec.note(ctx, conn, Ev::Note(format!("taken {taken}")));
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A connection whose app stops taking input while a fast peer sends holds
/// at most a window of input received ahead (on `uring` the multishot
/// receive keeps going until its cancel lands, and without a cap it could
/// take a whole socket's worth, up to the buffer ring); nothing is lost.
fn a_paused_connection_holds_at_most_a_window_received_ahead(backend: &str) {
    const SENT: usize = 4 << 20;
    let journal = Journal::default();
    let app = Ahead {
        rec: Rec::new(&journal),
        phase: AheadPhase::Held,
        taken: 0,
    };
    capture_logs();
    let lp = LoopThread::start(backend, Config::default(), app);
    let uncapped = CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(target, line)| {
            target == "iomux::uring" && line.starts_with("this kernel does not cap")
        });
    if backend == "uring" && uncapped {
        eprintln!("skipped on uring: this kernel does not cap a multishot receive (Linux 6.17)");
        lp.stop(LIVENESS);
        return;
    }
    let c = lp.connect();
    let peer = peer_of(&c);
    let writer = thread::spawn(move || {
        let mut c = c;
        c.write_all(&vec![b'x'; SENT])
            .expect("the loop takes it all");
        c.shutdown(Shutdown::Write).expect("half-close");
        c
    });
    let note = |prefix: &str| {
        let prefix = format!("{prefix} ");
        journal.wait(&prefix, |es| {
            es.iter().any(|e| {
                e.peer == Some(peer) && matches!(&e.ev, Ev::Note(n) if n.starts_with(&prefix))
            })
        });
        journal
            .of(peer)
            .into_iter()
            .find_map(|ev| match ev {
                Ev::Note(n) => n.strip_prefix(&prefix).and_then(|v| v.parse::<u64>().ok()),
                _ => None,
            })
            .expect("a number")
    };
    let ahead = note("ahead");
    assert!(
        ahead <= AHEAD_BOUND,
        "{ahead} bytes received ahead of the app (at most {AHEAD_BOUND})"
    );
    assert_eq!(note("taken"), SENT as u64, "every byte reached the app");
    drop(writer.join().expect("the writer"));
    lp.stop(LIVENESS);
}

/// `on_drain` runs once after `output_full` was true and the output was
/// written down to the low-water mark; input is held meanwhile and offered
/// after; a connection that was never full is never told.
fn drain_is_told_once_after_output_full(backend: &str) {
    let journal = Journal::default();
    let lp = pauser_loop(backend, &journal);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "small"), "got small");
    let big = 1 << 20;
    c.write_all(format!("big {big}\nafter\n").as_bytes())
        .unwrap();
    let got = read_n(&mut c, big);
    assert!(got.iter().all(|&b| b == b'b'));
    assert_eq!(read_line(&mut c), "got after");
    assert_eq!(ask(&mut c, "again"), "got again");
    let events = journal.of(peer);
    let full = events
        .iter()
        .position(|e| *e == Ev::Note("full true".into()))
        .unwrap_or_else(|| panic!("output_full was not true after 1 MiB: {events:?}"));
    let drains: Vec<usize> = (0..events.len())
        .filter(|&i| events[i] == Ev::Drain)
        .collect();
    assert_eq!(drains.len(), 1, "told once: {events:?}");
    assert!(drains[0] > full, "drained after it was full: {events:?}");
    let after = events
        .iter()
        .position(|e| matches!(e, Ev::Data(d) if d.starts_with(b"after")));
    assert!(
        after.is_some_and(|after| after > drains[0]),
        "the request after the big reply is offered after the drain: {events:?}"
    );

    let mut other = lp.connect();
    let other_peer = peer_of(&other);
    assert_eq!(ask(&mut other, "x"), "got x");
    assert!(!journal.of(other_peer).contains(&Ev::Drain));
    drop((c, other));
    lp.stop(LIVENESS);
}
