//! 9. Idle, not reading.

use crate::prelude::*;

backend_suite! {
    back_pressure_and_pause_are_not_idle,
    write_timeout_closes_a_non_reader,
    jobs_in_flight_are_not_idle,
}

/// `flood`: answers with 1 MiB at once (far over the high-water mark) and
/// again on every `on_drain`, so the connection stays full once the kernel
/// buffers are. `burst`: 8 MiB once. `pause`: pauses reading for good, answers `paused`.
/// Anything else: `ok`. The state says whether the connection floods.
pub(crate) struct Flooder {
    rec: Rec,
}

pub(crate) const FLOOD: usize = 1 << 20;

/// More than the kernel buffers of a connection take, so some stays
/// pending in the loop until the client reads.
pub(crate) const BURST: usize = 8 << 20;

impl App for Flooder {
    type State = bool;
    fn name(&self) -> &'static str {
        "flooder"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut bool, _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        flooding: &mut bool,
        input: &[u8],
    ) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            self.rec
                .note(ctx, conn, Ev::Data(line.clone().into_bytes()));
            match line.as_str() {
                "flood" => {
                    *flooding = true;
                    let _ = ctx.send(conn, &vec![b'f'; FLOOD]);
                }
                "burst" => {
                    let _ = ctx.send(conn, &vec![b'f'; BURST]);
                }
                "pause" => {
                    ctx.pause_reading(conn);
                    let _ = ctx.send(conn, b"paused\n");
                }
                _ => {
                    let _ = ctx.send(conn, b"ok\n");
                }
            }
        }
        used
    }
    fn on_drain(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, flooding: &mut bool) {
        self.rec.note(ctx, conn, Ev::Drain);
        if *flooding {
            let _ = ctx.send(conn, &vec![b'f'; FLOOD]);
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: bool, reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

pub(crate) fn flooder_loop(
    backend: &str,
    journal: &Journal,
    write_timeout: Option<Duration>,
) -> LoopThread<Flooder> {
    let mut config = Config::default();
    config.high_water = 64 * 1024;
    config.low_water = 16 * 1024;
    config.idle_timeout = Some(IDLE);
    config.write_timeout = write_timeout;
    let app = Flooder {
        rec: Rec::new(journal),
    };
    LoopThread::start(backend, config, app)
}

pub(crate) const IDLE: Duration = Duration::from_millis(300);

/// The idle timeout measures the peer's silence: a connection the loop is
/// not reading because its output is full (the client never reads a big
/// reply) or because the app paused it is not closed as `Idle`, even after
/// several idle periods, and one that then drains its output has a whole
/// idle period from then on; a silent client is closed as `Idle` after the
/// timeout (logged).
fn back_pressure_and_pause_are_not_idle(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = flooder_loop(backend, &journal, None);
    let silent = lp.connect();
    let mut flooded = lp.connect();
    let mut paused = lp.connect();
    let mut burst = lp.connect();
    flooded.write_all(b"flood\n").unwrap();
    burst.write_all(b"burst\n").unwrap();
    assert_eq!(ask(&mut paused, "pause"), "paused");
    let quiet_since = Instant::now();
    let peers = [peer_of(&silent), peer_of(&flooded), peer_of(&paused)];

    let (closed_at, reason) = journal.wait_closed(peers[0]);
    assert_eq!(reason, Reason::Idle);
    let opened_at = journal.timed(peers[0])[0].0;
    assert!(
        closed_at - opened_at >= IDLE,
        "closed after {:?}",
        closed_at - opened_at
    );
    assert!(
        logged_reason(mark, peers[0], "idle timeout"),
        "logged: {:?}",
        conn_lines(peers[0])
    );

    // Three idle periods of silence from the other two; a round trip after
    // that is served after every timer due before it.
    sleep_until(quiet_since + 3 * IDLE);
    let mut probe = lp.connect();
    assert_eq!(ask(&mut probe, "hello"), "ok");
    for peer in &peers[1..] {
        assert_eq!(journal.closed(*peer), None, "{peer} was closed");
    }
    assert!(
        journal.of(peers[1]).contains(&Ev::Data(b"flood".to_vec())),
        "the flood was asked for"
    );

    // Full for three idle periods, then read: the silence starts when the
    // output drains, so it has most of an idle period left afterwards.
    let got = read_n(&mut burst, BURST);
    thread::sleep(IDLE / 6);
    assert_eq!(
        ask(&mut burst, "still here"),
        "ok",
        "answered, so still open"
    );
    // Checked after the round trip: 8 MiB take a while in a debug build
    // (long enough for this connection to go idle now; it may).
    assert!(got.iter().all(|&b| b == b'f'));
    drop((silent, flooded, paused, probe, burst));
    lp.stop(LIVENESS);
}

/// With a write timeout, a connection whose output is pending and taken by
/// no one for that long is closed as `NotReading` (logged), not `Idle`.
fn write_timeout_closes_a_non_reader(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let journal = Journal::default();
    let lp = flooder_loop(backend, &journal, Some(Duration::from_millis(300)));
    let mut flooded = lp.connect();
    let peer = peer_of(&flooded);
    flooded.write_all(b"flood\n").unwrap();
    let (closed_at, reason) = journal.wait_closed(peer);
    assert_eq!(reason, Reason::NotReading);
    let asked_at = journal
        .timed(peer)
        .into_iter()
        .find(|(_, e)| *e == Ev::Data(b"flood".to_vec()))
        .expect("the flood was asked for")
        .0;
    assert!(closed_at - asked_at >= Duration::from_millis(300));
    assert!(
        logged_reason(mark, peer, "write timeout (client not reading)"),
        "logged: {:?}",
        conn_lines(peer)
    );
    drop(flooded);
    lp.stop(LIVENESS);
}

/// `sleep MS`: a job that sleeps MS ms, answered `slept MS`; at the job
/// limit the request is left for when a job is back.
pub(crate) struct Sleepy {
    rec: Rec,
}

impl App for Sleepy {
    type State = ();
    fn name(&self) -> &'static str {
        "sleepy"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let mut used = 0;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            if !ctx.can_offload(conn) {
                break;
            }
            let line = String::from_utf8_lossy(&input[used..used + end]).into_owned();
            used += end + 1;
            let ms: u64 = line
                .strip_prefix("sleep ")
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            ctx.offload(conn, move || {
                thread::sleep(Duration::from_millis(ms));
                Box::new(ms) as JobResult
            });
        }
        used
    }
    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _: &mut (),
        _: JobId,
        result: JobResult,
    ) {
        let ms = result.downcast::<u64>().map_or(u64::MAX, |ms| *ms);
        self.rec.note(ctx, conn, Ev::JobDone);
        let _ = ctx.send(conn, format!("slept {ms}\n").as_bytes());
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// A client waiting for the answers to its requests is not idle: neither
/// one whose request waits for its job limit (the loop is not reading it;
/// the request is offered again, without new bytes, when the job is back)
/// nor one whose job is still running (the loop owes it a reply), though
/// it sends nothing for three idle timeouts. Once answered and silent, it
/// is closed as `Idle`. Regression: a job in flight under the job limit did
/// not stop the idle timeout, which closed the connection and dropped the
/// result.
fn jobs_in_flight_are_not_idle(backend: &str) {
    for max_jobs in [1, 64] {
        let journal = Journal::default();
        let mut config = Config::default();
        config.workers = 1;
        config.max_jobs_per_conn = max_jobs;
        config.idle_timeout = Some(IDLE);
        let app = Sleepy {
            rec: Rec::new(&journal),
        };
        let lp = LoopThread::start(backend, config, app);
        let mut c = lp.connect();
        let peer = peer_of(&c);
        let long = 3 * IDLE.as_millis();
        c.write_all(format!("sleep {long}\nsleep 1\n").as_bytes())
            .unwrap();
        assert_eq!(
            read_line(&mut c),
            format!("slept {long}"),
            "max_jobs {max_jobs}"
        );
        assert_eq!(read_line(&mut c), "slept 1", "max_jobs {max_jobs}");
        let (closed_at, reason) = journal.wait_closed(peer);
        assert_eq!(reason, Reason::Idle, "max_jobs {max_jobs}");
        let last_job = journal
            .timed(peer)
            .into_iter()
            .filter(|(_, e)| *e == Ev::JobDone)
            .map(|(at, _)| at)
            .next_back()
            .expect("jobs came back");
        assert!(
            closed_at - last_job >= IDLE,
            "max_jobs {max_jobs}: closed {:?} after its last job came back",
            closed_at - last_job
        );
        drop(c);
        lp.stop(LIVENESS);
    }
}
