//! 1. Re-offer without new bytes.

use crate::prelude::*;

backend_suite! {
    one_request_per_call_gets_every_reply,
    leftover_is_offered_before_eof,
    bounded_app_is_not_stranded_by_the_read_budget,
}

/// Answers exactly one `\n` line per call (`+LINE`), leaving the rest.
pub(crate) struct OnePerCall {
    rec: Rec,
}

impl App for OnePerCall {
    type State = ();
    fn name(&self) -> &'static str {
        "one-per-call"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        self.rec.note(ctx, conn, Ev::Data(input.to_vec()));
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return 0;
        };
        let mut reply = b"+".to_vec();
        reply.extend_from_slice(&input[..=end]);
        let _ = ctx.send(conn, &reply);
        end + 1
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// Requests left unconsumed by an app that answers one per call are
/// offered again without new bytes: three pipelined `PING`s in one write
/// get three replies, and 200 (past the loop's per-turn re-offer budget)
/// get 200, in order.
fn one_request_per_call_gets_every_reply(backend: &str) {
    let journal = Journal::default();
    let app = OnePerCall {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut c = lp.connect();
    c.write_all(b"PING\nPING\nPING\n").unwrap();
    assert_eq!(read_n(&mut c, 18), b"+PING\n+PING\n+PING\n");

    let burst: String = (0..200).map(|i| format!("r{i}\n")).collect();
    let expected: String = (0..200).map(|i| format!("+r{i}\n")).collect();
    c.write_all(burst.as_bytes()).unwrap();
    let got = read_n(&mut c, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    let peer = peer_of(&c);
    assert_eq!(journal.closed(peer), None, "never closed meanwhile");
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
    lp.stop(LIVENESS);
}

/// At end of stream, what the app left is offered (again, without new
/// bytes) before `on_eof`: lines written together with the shutdown of the
/// client's write side are all answered, then `on_eof` runs (after the last
/// offer, which holds only the unfinished tail), then the connection
/// closes as `PeerClosed` and the client reads end of stream, no reset.
fn leftover_is_offered_before_eof(backend: &str) {
    let journal = Journal::default();
    let app = OnePerCall {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    for count in [3, 100] {
        let mut c = lp.connect();
        let peer = peer_of(&c);
        let mut request: String = (0..count).map(|i| format!("line{i}\n")).collect();
        request.push_str("partial");
        let expected: String = (0..count).map(|i| format!("+line{i}\n")).collect();
        c.write_all(request.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (got, error) = read_to_end(&mut c);
        assert!(error.is_none(), "{count} lines: {error:?}");
        assert_eq!(String::from_utf8_lossy(&got), expected, "{count} lines");
        assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);

        let events = journal.of(peer);
        let eof = events.iter().position(|e| *e == Ev::Eof);
        let eof = eof.unwrap_or_else(|| panic!("no on_eof: {events:?}"));
        assert_eq!(events.len(), eof + 2, "only the close after on_eof");
        assert_eq!(
            events[eof - 1],
            Ev::Data(b"partial".to_vec()),
            "the last offer before on_eof is the unfinished tail"
        );
        let offers = events.iter().filter(|e| matches!(e, Ev::Data(_))).count();
        assert!(offers > count, "{offers} offers for {count} lines + tail");
    }
    lp.stop(LIVENESS);
}

/// Answers at most `per_call` lines per call, echoing them; `big` gets 1 MiB
/// instead (far over the high-water mark). Receive buffers are made roomy
/// (through `Ctx::socket`), so a client's burst waits whole in the kernel.
pub(crate) struct Bounded {
    per_call: usize,
}

impl App for Bounded {
    type State = ();
    fn name(&self) -> &'static str {
        "bounded"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        if let Some(socket) = ctx.socket(conn) {
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, 1 << 20);
        }
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        for _ in 0..self.per_call {
            let Some(end) = input[used..].iter().position(|&b| b == b'\n') else {
                break;
            };
            if &input[used..used + end] == b"big" {
                let _ = ctx.send(conn, &vec![b'b'; 1 << 20]);
            } else {
                let _ = ctx.send(conn, &input[used..=used + end]);
            }
            used += end + 1;
        }
        used
    }
}

/// An app that answers a bounded number of requests per call is never
/// stranded when one read uses up the read budget and empties the socket:
/// the input it left is offered again without new bytes on every backend
/// (a level-triggered one gets no new event for bytes already read).
/// Regression: on select, poll and level epoll the rest waited for the
/// client's next bytes.
fn bounded_app_is_not_stranded_by_the_read_budget(backend: &str) {
    let mut config = Config::default();
    // One full read uses the budget up.
    config.read_budget = 64 * 1024;
    let lp = LoopThread::start(backend, config, Bounded { per_call: 10 });
    let mut c = lp.connect();
    // While the big reply fills the connection the loop does not read, so
    // the burst below is read later in one full read.
    c.write_all(b"big\n").unwrap();
    let first = read_n(&mut c, 1);
    let requests: String = (0..8192).map(|i| format!("{i:07}\n")).collect();
    assert_eq!(requests.len(), 64 * 1024);
    c.write_all(requests.as_bytes()).unwrap();
    let big = read_n(&mut c, (1 << 20) - 1);
    assert!(first.iter().chain(&big).all(|&b| b == b'b'));
    let got = read_n(&mut c, requests.len());
    assert_eq!(String::from_utf8_lossy(&got), requests);
    drop(c);
    lp.stop(LIVENESS);
}
