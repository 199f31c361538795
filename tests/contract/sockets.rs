//! 12, 13. The socket, the listeners.

use crate::prelude::*;

backend_suite! {
    local_addr_and_socket_options,
    the_library_logs_through_the_log_facade,
    many_listeners_all_accept,
}

/// On open: notes `local_addr` and what `socket` shows of `TCP_NODELAY`
/// and `SO_KEEPALIVE` before and after flipping them; sends the local
/// address as a line.
pub(crate) struct Sockets {
    rec: Rec,
}

impl App for Sockets {
    type State = ();
    fn name(&self) -> &'static str {
        "sockets"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
        let local = ctx.local_addr(conn);
        let note = match (local, ctx.socket(conn)) {
            (Some(local), Some(socket)) => {
                let before = socket.nodelay().ok();
                let _ = socket.set_nodelay(before != Some(true));
                let after = socket.nodelay().ok();
                let _ = rustix::net::sockopt::set_socket_keepalive(socket, true);
                let keepalive = rustix::net::sockopt::socket_keepalive(socket).ok();
                let _ = ctx.send(conn, format!("{local}\n").as_bytes());
                format!("{local} nodelay {before:?}->{after:?} keepalive {keepalive:?}")
            }
            (local, socket) => format!("local {local:?} socket {}", socket.is_some()),
        };
        self.rec.note(ctx, conn, Ev::Note(note));
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
}

/// `Ctx::local_addr` is the listener's address, and `Ctx::socket` gives
/// the socket for options: `nodelay` reflects `Config::nodelay`, and
/// `set_nodelay` and `SO_KEEPALIVE` (through `AsFd`) take effect.
fn local_addr_and_socket_options(backend: &str) {
    for nodelay in [true, false] {
        let journal = Journal::default();
        let mut config = Config::default();
        config.nodelay = nodelay;
        let app = Sockets {
            rec: Rec::new(&journal),
        };
        let lp = LoopThread::start(backend, config, app);
        let mut c = lp.connect();
        assert_eq!(read_line(&mut c), lp.addr.to_string());
        let expected = format!(
            "{} nodelay Some({nodelay})->Some({}) keepalive Some(true)",
            lp.addr, !nodelay
        );
        assert_eq!(journal.of(peer_of(&c)), [Ev::Open, Ev::Note(expected)]);
        drop(c);
        lp.stop(LIVENESS);
    }
}

/// `slow`: holds the loop thread for 60 ms. Anything else: `ok`.
pub(crate) struct Slow;

impl App for Slow {
    type State = ();
    fn name(&self) -> &'static str {
        "slow"
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            if line == "slow" {
                thread::sleep(Duration::from_millis(60));
            }
            let _ = ctx.send(conn, b"ok\n");
        }
        used
    }
}

/// The library prints nothing itself: connection events, stalls and
/// stats go to the `log` facade under `iomux::conn`, `iomux::stall` and
/// `iomux::stats`, where a program's logger (here, this test binary's)
/// picks them up.
fn the_library_logs_through_the_log_facade(backend: &str) {
    capture_logs();
    let mark = log_mark();
    let mut config = Config::default();
    config.stall_threshold = Some(Duration::from_millis(20));
    config.stats_interval = Some(Duration::from_millis(50));
    let lp = LoopThread::start(backend, config, Slow);
    let mut c = lp.connect();
    let peer = peer_of(&c);
    assert_eq!(ask(&mut c, "slow"), "ok");
    drop(c);
    let has = |target: &str, needle: &str| {
        CAPTURED.lock().unwrap_or_else(|e| e.into_inner())[mark..]
            .iter()
            .any(|(t, line)| t == target && line.contains(needle))
    };
    let deadline = Instant::now() + LIVENESS;
    let wanted = [
        ("iomux::conn", format!("connect {peer}")),
        ("iomux::conn", format!("disconnect {peer}")),
        ("iomux::stall", format!("slow handler for {peer} ran ")),
        ("iomux::stats", "clients=".to_string()),
    ];
    for (target, needle) in &wanted {
        while !has(target, needle) {
            assert!(
                Instant::now() < deadline,
                "no {target} line with {needle:?}"
            );
            thread::sleep(Duration::from_millis(2));
        }
    }
    lp.stop(LIVENESS);
}

/// 1,100 listeners on one loop all accept, each connection on its own
/// listener (their tokens once collided with the loop's own past about
/// 1,000). Needs the open-files limit raised.
fn many_listeners_all_accept(backend: &str) {
    const LISTENERS: usize = 1100;
    let limit = iomux::limits::raise_nofile_limit();
    if limit.is_some_and(|n| n < 4 * LISTENERS as u64) {
        eprintln!("skipped: the open-files limit {limit:?} is too low for {LISTENERS} listeners");
        return;
    }
    let journal = Journal::default();
    let app = Sockets {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start_listening(backend, Config::default(), LISTENERS, app);
    assert_eq!(lp.addrs.len(), LISTENERS);
    for addr in &lp.addrs {
        let mut c = TcpStream::connect(addr).unwrap();
        set_timeouts(&c, crate::common::IO_TIMEOUT);
        assert_eq!(
            read_line(&mut c),
            addr.to_string(),
            "accepted by its listener"
        );
    }
    assert_eq!(journal.count(|e| *e == Ev::Open), LISTENERS);
    lp.stop(LIVENESS);
}
