//! 8. Per-connection state.

use crate::prelude::*;

backend_suite! {
    state_is_per_connection_and_returned_on_close,
}

#[derive(Default)]
pub(crate) struct Count(u64);

/// `n`: counts in the connection's state and answers the count. `quit`:
/// answers `bye` and closes after the flush. `bad`: `close_because`.
pub(crate) struct Counter {
    rec: Rec,
}

impl App for Counter {
    type State = Count;
    fn name(&self) -> &'static str {
        "counter"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut Count, _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: &mut Count, input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            match line.as_str() {
                "n" => {
                    st.0 += 1;
                    let _ = ctx.send(conn, format!("{}\n", st.0).as_bytes());
                }
                "quit" => {
                    let _ = ctx.send(conn, b"bye\n");
                    ctx.close_after_flush(conn);
                }
                _ => ctx.close_because(conn, format!("bad request {line:?}")),
            }
        }
        used
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: Count, reason: &CloseReason) {
        self.rec.note(ctx, conn, Ev::Final(st.0));
        self.rec.close(ctx, conn, reason);
    }
}

/// `App::State` is per connection: each connection's counter counts its
/// own requests, and `on_close` gets its final value by value. A
/// connection in a freed slot starts from `Default`. Also: `close_after_flush`
/// writes the last reply first (`CloseReason::App`), `close_because` closes
/// with `AppError` and its reason is logged.
fn state_is_per_connection_and_returned_on_close(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let app = Counter {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut a = lp.connect();
    let mut b = lp.connect();
    let (pa, pb) = (peer_of(&a), peer_of(&b));
    assert_eq!(ask(&mut a, "n"), "1");
    assert_eq!(ask(&mut b, "n"), "1");
    a.write_all(b"n\nn\n").unwrap();
    b.write_all(b"n\nn\nn\nn\n").unwrap();
    assert_eq!(read_n(&mut a, 4), b"2\n3\n");
    assert_eq!(read_n(&mut b, 8), b"2\n3\n4\n5\n");

    a.write_all(b"quit\n").unwrap();
    let (got, error) = read_to_end(&mut a);
    assert_eq!(String::from_utf8_lossy(&got), "bye\n");
    assert!(error.is_none(), "{error:?}");
    assert_eq!(journal.wait_closed(pa).1, Reason::App);

    b.write_all(b"bad\n").unwrap();
    expect_closed(&mut b, "after a bad request");
    let why = "bad request \"bad\"".to_string();
    assert_eq!(journal.wait_closed(pb).1, Reason::AppError(why.clone()));
    assert!(
        logged_reason(mark, pb, &why),
        "logged: {:?}",
        conn_lines(pb)
    );

    let mut c = lp.connect();
    let pc = peer_of(&c);
    assert_eq!(
        ask(&mut c, "n"),
        "1",
        "a new connection starts from Default"
    );
    drop(c);
    journal.wait_closed(pc);
    let finals = |peer| {
        journal
            .of(peer)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Final(n) => Some(n),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(finals(pa), [3]);
    assert_eq!(finals(pb), [5]);
    assert_eq!(finals(pc), [1]);
    lp.stop(LIVENESS);
}
