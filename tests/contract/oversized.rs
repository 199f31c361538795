//! 5. A request over max_input.

use crate::prelude::*;

backend_suite! {
    oversized_request_answered_before_close,
    oversized_request_without_reply_closes_promptly,
}

/// Answers each line with `ok LEN`; in `on_limit` sends `reply`, if any.
pub(crate) struct Sizer {
    rec: Rec,
    reply: Option<&'static [u8]>,
}

impl App for Sizer {
    type State = ();
    fn name(&self) -> &'static str {
        "sizer"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            let _ = ctx.send(conn, format!("ok {}\n", line.len()).as_bytes());
        }
        used
    }
    fn on_limit(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), limit: Limit) {
        self.rec.note(ctx, conn, Ev::Limit(limit));
        if let Some(reply) = self.reply {
            let _ = ctx.send(conn, reply);
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

pub(crate) const MAX_INPUT: usize = 64 * 1024;

/// Starts writing 200 KiB without a newline from another thread (write
/// errors are expected once the server closes).
pub(crate) fn send_oversized(c: &TcpStream) -> thread::JoinHandle<()> {
    let mut writer = c.try_clone().unwrap();
    thread::spawn(move || {
        let _ = writer.write_all(&vec![b'x'; 200 * 1024]);
    })
}

pub(crate) fn sizer_loop(
    backend: &str,
    journal: &Journal,
    reply: Option<&'static [u8]>,
) -> LoopThread<Sizer> {
    let mut config = Config::default();
    config.max_input = MAX_INPUT;
    let app = Sizer {
        rec: Rec::new(journal),
        reply,
    };
    LoopThread::start(backend, config, app)
}

/// A request over `max_input`: `on_limit(Limit::Input)` runs and its error
/// reply is written before the close; the client reads exactly that reply,
/// then end of stream (no reset, though it was still sending), and the
/// close reason is `Limit(Input)`, logged.
fn oversized_request_answered_before_close(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = sizer_loop(backend, &journal, Some(b"-ERR too large\n"));
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "hello"), "ok 5");
    let writing = send_oversized(&c);
    let (got, error) = read_to_end(&mut c);
    assert_eq!(String::from_utf8_lossy(&got), "-ERR too large\n");
    assert!(error.is_none(), "the reply was followed by {error:?}");
    writing.join().unwrap();
    drop(c);
    let limit = Limit::Input { max: MAX_INPUT };
    assert_eq!(journal.wait_closed(peer).1, Reason::Limit(limit));
    assert_eq!(
        journal.of(peer),
        vec![Ev::Open, Ev::Limit(limit), Ev::Close(Reason::Limit(limit))]
    );
    assert!(
        logged_reason(mark, peer, "input limit exceeded (65536 bytes unconsumed)"),
        "logged: {:?}",
        conn_lines(peer)
    );
    lp.stop(LIVENESS);
}

/// Without a reply from `on_limit`, a request over `max_input` closes the
/// connection at once (well before the grace period a last reply would
/// get), with `Limit(Input)`.
fn oversized_request_without_reply_closes_promptly(backend: &str) {
    let journal = Journal::default();
    let lp = sizer_loop(backend, &journal, None);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "hello"), "ok 5");
    let started = Instant::now();
    let writing = send_oversized(&c);
    expect_closed(&mut c, "over max_input");
    let (_, reason) = journal.wait_closed(peer);
    let took = started.elapsed();
    let limit = Limit::Input { max: MAX_INPUT };
    assert_eq!(reason, Reason::Limit(limit));
    assert_eq!(
        journal.of(peer),
        vec![Ev::Open, Ev::Limit(limit), Ev::Close(Reason::Limit(limit))]
    );
    let grace = Config::default().shutdown_grace;
    assert!(took < grace, "closed after {took:?}, not at once");
    writing.join().unwrap();
    lp.stop(LIVENESS);
}
