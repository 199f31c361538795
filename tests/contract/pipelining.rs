//! 2, 3. Deep pipelining, read slowly.

use crate::prelude::*;

backend_suite! {
    deep_pipeline_small_values_read_slowly,
    deep_pipeline_large_values_read_slowly,
    replies_are_not_bound_by_max_output,
}

/// Answers `GET I` with a `len`-byte value made from `I`; with
/// `respect_full` it stops between requests while `Ctx::output_full`.
pub(crate) struct Values {
    rec: Rec,
    len: usize,
    respect_full: bool,
    /// The most pending output seen right after a reply was queued.
    max_pending: Arc<AtomicUsize>,
    /// Calls that stopped early because the output was full.
    stops: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
}

impl Values {
    fn new(journal: &Journal, len: usize, respect_full: bool) -> Values {
        Values {
            rec: Rec::new(journal),
            len,
            respect_full,
            max_pending: Arc::default(),
            stops: Arc::default(),
            served: Arc::default(),
        }
    }
}

/// The reply to `GET i`: `i`, then a letter that depends on `i`, `len`
/// bytes in all, ending in `\n`.
pub(crate) fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{i:08}:").into_bytes();
    v.resize(len - 1, b'a' + (i % 26) as u8);
    v.push(b'\n');
    v
}

impl App for Values {
    type State = ();
    fn name(&self) -> &'static str {
        "values"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if self.respect_full && ctx.output_full(conn) {
                self.stops.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let line = &input[used..used + end];
            used += end + 1;
            let index = std::str::from_utf8(line)
                .ok()
                .and_then(|l| l.strip_prefix("GET "))
                .and_then(|i| i.parse().ok());
            let Some(index) = index else {
                ctx.close_because(conn, "bad request");
                return used;
            };
            let _ = ctx.send(conn, &value(index, self.len));
            self.served.fetch_add(1, Ordering::Relaxed);
            self.max_pending
                .fetch_max(ctx.pending_output(conn), Ordering::Relaxed);
        }
        used
    }
    fn on_eof(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut ()) {
        self.rec.note(ctx, conn, Ev::Eof);
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// Writes `count` pipelined `GET`s in one go from one thread (then, with
/// `then_eof`, shuts down its write side) and reads the replies slowly
/// (small reads, short pauses) from this one, checking them byte for byte
/// and in order. The connection must stay open throughout (with
/// `then_eof`: until the last reply, then end of stream after `on_eof`).
pub(crate) fn pipeline_read_slowly(
    lp: &LoopThread<Values>,
    journal: &Journal,
    count: usize,
    len: usize,
    then_eof: bool,
) {
    let mut c = lp.connect();
    let peer = peer_of(&c);
    let requests: String = (0..count).map(|i| format!("GET {i}\n")).collect();
    let mut writer = c.try_clone().unwrap();
    let writing = thread::spawn(move || {
        writer.write_all(requests.as_bytes())?;
        if then_eof {
            writer.shutdown(Shutdown::Write)?;
        }
        Ok::<(), io::Error>(())
    });
    let mut buf = [0u8; 4096];
    let mut got = 0;
    let mut reads = 0usize;
    let total = count * len;
    let mut expected = Vec::new();
    let mut next = 0;
    while got < total {
        let n = match c.read(&mut buf[..(total - got).min(4096)]) {
            Ok(0) => panic!(
                "closed after {got} of {total} bytes: {:?}",
                journal.of(peer)
            ),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("read failed after {got} of {total} bytes: {e}"),
        };
        while expected.len() < n {
            expected.extend_from_slice(&value(next, len));
            next += 1;
        }
        if buf[..n] != expected[..n] {
            let at = got + (0..n).find(|&k| buf[k] != expected[k]).unwrap_or(0);
            panic!("reply bytes differ at offset {at} (reply {})", at / len);
        }
        expected.drain(..n);
        got += n;
        reads += 1;
        if reads.is_multiple_of(16) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    writing.join().unwrap().expect("all requests written");
    if then_eof {
        let (rest, error) = read_to_end(&mut c);
        assert!(
            rest.is_empty() && error.is_none(),
            "{} bytes, {error:?}",
            rest.len()
        );
        assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
        assert_eq!(
            journal.of(peer),
            [Ev::Open, Ev::Eof, Ev::Close(Reason::PeerClosed)],
            "on_eof once every request was answered"
        );
        return;
    }
    assert_eq!(journal.closed(peer), None, "the reader was never cut off");
    drop(c);
    assert_eq!(journal.wait_closed(peer).1, Reason::PeerClosed);
}

pub(crate) fn pipeline_config() -> Config {
    let mut config = Config::default();
    config.high_water = 64 * 1024;
    config.low_water = 16 * 1024;
    config
}

/// A client pipelining deeply and reading slowly, with an app that stops
/// between requests while `output_full`: every reply arrives, in order and
/// byte-exact, the connection is never closed, and the server's pending
/// output never exceeds the high-water mark plus one reply (memory is
/// bounded); the app did meet `output_full`. 20,000 requests of a
/// 1,000-byte value (`redis-benchmark -d 1000 -P 20000`); and again with
/// the client's end of stream right behind the requests, which waits
/// (`on_eof`) until every request was offered and answered.
fn deep_pipeline_small_values_read_slowly(backend: &str) {
    deep_pipeline(backend, 20_000, 1000, false);
    deep_pipeline(backend, 20_000, 1000, true);
}

/// As above with 64 pipelined 100 KB replies, each alone bigger than the
/// high-water mark (`redis-benchmark -d 100000 -P 64`).
fn deep_pipeline_large_values_read_slowly(backend: &str) {
    deep_pipeline(backend, 64, 100_000, false);
}

pub(crate) fn deep_pipeline(backend: &str, count: usize, len: usize, then_eof: bool) {
    let journal = Journal::default();
    let app = Values::new(&journal, len, true);
    let (max_pending, stops, served) = (
        app.max_pending.clone(),
        app.stops.clone(),
        app.served.clone(),
    );
    let config = pipeline_config();
    let high = config.high_water;
    let lp = LoopThread::start(backend, config, app);
    pipeline_read_slowly(&lp, &journal, count, len, then_eof);
    assert_eq!(served.load(Ordering::Relaxed), count);
    let max = max_pending.load(Ordering::Relaxed);
    assert!(
        max <= high + len,
        "pending output reached {max} bytes (high water {high} + one reply {len})"
    );
    assert!(
        stops.load(Ordering::Relaxed) > 0,
        "the burst never met back-pressure, so this tested nothing"
    );
    lp.stop(LIVENESS);
}

/// Replies are not pushed output: an app that ignores `output_full` and
/// answers the whole burst at once still gets every reply to a client that
/// reads (slowly), though its pending output goes far past a 64 KiB
/// `max_output`.
fn replies_are_not_bound_by_max_output(backend: &str) {
    let journal = Journal::default();
    let app = Values::new(&journal, 1000, false);
    let max_pending = app.max_pending.clone();
    let mut config = pipeline_config();
    config.max_output = 64 * 1024;
    let lp = LoopThread::start(backend, config, app);
    pipeline_read_slowly(&lp, &journal, 20_000, 1000, false);
    let max = max_pending.load(Ordering::Relaxed);
    assert!(
        max > 64 * 1024,
        "pending output stayed at {max} bytes, under max_output: nothing was proved"
    );
    lp.stop(LIVENESS);
}
