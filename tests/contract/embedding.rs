//! 11. Embedding: run_once, Config::validate.

use crate::prelude::*;

backend_suite! {
    run_once_returns_in_time_and_stops,
    invalid_config_is_refused,
}

/// Echoes lines.
pub(crate) struct Quiet {
    rec: Rec,
}

impl App for Quiet {
    type State = ();
    fn name(&self) -> &'static str {
        "quiet"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (_, used) = lines(input);
        let _ = ctx.send(conn, &input[..used]);
        used
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: (), reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// `run_once(Some(t))` with nothing to do returns `Running` after about
/// `t` (not before); a reply leaves within the turn that handled its
/// request; after `StopHandle::stop` it returns `Stopped` within a few
/// turns (closing its connections as `Shutdown`), and `Stopped` again on
/// every later call, at once.
fn run_once_returns_in_time_and_stops(backend: &str) {
    let journal = Journal::default();
    let mut app = Quiet {
        rec: Rec::new(&journal),
    };
    let backend: Backend = backend.parse().unwrap();
    let mut lp: EventLoop<()> = EventLoop::new(backend, Config::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    lp.listen(listener).unwrap();
    let t = Duration::from_millis(100);
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(lp.run_once(&mut app, Some(t)).unwrap(), Status::Running);
        let took = started.elapsed();
        assert!(took >= t, "returned after {took:?}, before {t:?}");
        assert!(took < t + Duration::from_secs(2), "returned after {took:?}");
    }

    let mut c = TcpStream::connect(addr).unwrap();
    set_timeouts(&c, crate::common::IO_TIMEOUT);
    let peer = peer_of(&c);
    c.write_all(b"hi\n").unwrap();
    let deadline = Instant::now() + LIVENESS;
    while !journal.of(peer).contains(&Ev::Open) || rustix::io::ioctl_fionread(&c).unwrap() < 3 {
        assert!(Instant::now() < deadline, "never answered");
        assert_eq!(lp.run_once(&mut app, Some(t)).unwrap(), Status::Running);
    }
    assert_eq!(read_n(&mut c, 3), b"hi\n");

    lp.stop_handle().stop();
    let mut turns = 0;
    while lp.run_once(&mut app, Some(t)).unwrap() == Status::Running {
        turns += 1;
        assert!(turns < 10, "still running {turns} turns after the stop");
    }
    assert_eq!(journal.closed(peer).map(|(_, r)| r), Some(Reason::Shutdown));
    let (got, error) = read_to_end(&mut c);
    assert!(got.is_empty() && error.is_none(), "{got:?} {error:?}");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(lp.run_once(&mut app, Some(t)).unwrap(), Status::Stopped);
        assert!(started.elapsed() < t, "a stopped loop waited");
    }
}

/// `EventLoop::new` refuses, with `InvalidInput` naming the field, a
/// config that would hang or spin.
fn invalid_config_is_refused(backend: &str) {
    let backend: Backend = backend.parse().unwrap();
    type Breaks = fn(&mut Config);
    let cases: [(Breaks, &str); 7] = [
        (|c| c.max_jobs_per_conn = 0, "max_jobs_per_conn"),
        (|c| c.accept_budget = 0, "accept_budget"),
        (|c| c.read_budget = 0, "read_budget"),
        (|c| c.max_input = 0, "max_input"),
        (|c| c.low_water = c.high_water + 1, "low_water"),
        (|c| c.write_timeout = Some(Duration::ZERO), "write_timeout"),
        (
            |c| c.max_output_soft = Some((c.max_output + 1, Duration::from_secs(1))),
            "max_output_soft",
        ),
    ];
    for (break_it, field) in cases {
        let mut config = Config::default();
        break_it(&mut config);
        match EventLoop::<()>::new(backend, config) {
            Ok(_) => panic!("a config with a bad {field} was accepted"),
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{field}: {e}");
                assert!(e.to_string().contains(field), "{e} should name {field}");
            }
        }
    }
    assert!(EventLoop::<()>::new(backend, Config::default()).is_ok());
}
