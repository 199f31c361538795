//! A bench run's parameters, and the checks that refuse a run that could
//! not mean what it asks.

use super::Mode;
use super::protocol::ReplyRule;
use iomux::{Addr, Backend};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A benchmark run's parameters.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Where the server may be, in order (a host name can resolve to
    /// several addresses); the first that accepts a connection is used for
    /// every connection.
    pub addrs: Vec<Addr>,
    /// The server as the user named it, for messages.
    pub target: String,
    pub conns: usize,
    pub pipeline: usize,
    pub idle: usize,
    pub size: usize,
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    pub threads: usize,
    pub backend: Backend,
    /// Print a live line on stderr (the caller checks for a terminal).
    pub progress: bool,
    /// Measure exactly this many requests (sent after the warm-up), then
    /// stop; `duration` still caps the run. For per-request accounting
    /// such as `strace -c`.
    pub requests: Option<u64>,
    /// A connect that takes longer fails the run.
    pub connect_timeout: Duration,
    /// A request unanswered this long after it was sent is counted as a
    /// timeout (an error: the run fails), its connection is closed and
    /// another opened in its place, and the run goes on.
    pub response_timeout: Duration,
    /// Open loop: requests per second in all, spread over the connections.
    pub rate: Option<f64>,
    /// Connections opened per second at most (idle and active).
    pub connect_rate: Option<f64>,
    /// A [`super::Phase::Interval`] report every so often during the window.
    pub interval: Option<Duration>,
    /// Set (e.g. by a SIGINT handler) to end the run early; the result
    /// then says `interrupted`.
    pub cancel: Arc<AtomicBool>,
    /// Connect over TLS with this (`--tls`).
    pub tls: Option<crate::tls::ClientTls>,
    /// A new connection for every request (`--new-conn`, run by
    /// [`super::churn::run`]): each is a connect, a TLS handshake with
    /// `tls`, one request and its whole reply.
    pub new_conn: bool,
}

impl BenchConfig {
    /// The defaults of `iomux bench` against `addr`.
    pub fn new(addr: SocketAddr) -> BenchConfig {
        BenchConfig {
            addrs: vec![Addr::Tcp(addr)],
            target: addr.to_string(),
            conns: 100,
            pipeline: 1,
            idle: 0,
            size: 64,
            mode: Mode::Echo,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            threads: 1,
            backend: Backend::Epoll,
            progress: false,
            requests: None,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(5),
            rate: None,
            connect_rate: None,
            interval: None,
            cancel: Arc::new(AtomicBool::new(false)),
            tls: None,
            new_conn: false,
        }
    }

    /// Active connections (light and heavy).
    pub(crate) fn active(&self) -> usize {
        match self.mode {
            Mode::Hash { heavy, .. } => self.conns + heavy,
            _ => self.conns,
        }
    }
}

pub(crate) fn validate(c: &BenchConfig) -> io::Result<()> {
    let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    if c.addrs.is_empty() {
        return bad(format!("{}: no address to connect to", c.target));
    }
    if c.conns == 0 {
        return bad("--conns must be at least 1".into());
    }
    if c.pipeline == 0 {
        return bad("--pipeline must be at least 1".into());
    }
    if c.size == 0 {
        return bad("--size must be at least 1".into());
    }
    if c.conns > 1_000_000 || c.idle > 1_000_000 {
        return bad("--conns and --idle must be at most 1000000".into());
    }
    if c.pipeline > 65_536 {
        return bad("--pipeline must be at most 65536".into());
    }
    if c.size > 64 << 20 {
        return bad("--size must be at most 67108864 (64 MiB)".into());
    }
    if c.duration.is_zero() {
        return bad("--duration must be more than 0".into());
    }
    if c.threads == 0 || c.threads > 1024 {
        return bad(format!(
            "--threads must be from 1 to 1024, got {}",
            c.threads
        ));
    }
    if c.threads > c.active() {
        return bad(format!(
            "--threads ({}) must be at most the number of active connections ({})",
            c.threads,
            c.active()
        ));
    }
    if c.requests == Some(0) {
        return bad("--requests must be at least 1".into());
    }
    if c.connect_timeout.is_zero() {
        return bad("--connect-timeout must be more than 0".into());
    }
    if c.response_timeout.is_zero() {
        return bad("--timeout must be more than 0".into());
    }
    for (flag, v) in [("--rate", c.rate), ("--connect-rate", c.connect_rate)] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0 && v <= 1e9)
        {
            return bad(format!(
                "{flag} must be more than 0 and at most 1e9 per second, got {v}"
            ));
        }
    }
    if let Some(i) = c.interval
        && i < Duration::from_millis(10)
    {
        return bad("--interval must be at least 0.01 seconds".into());
    }
    if let Mode::Hash { heavy_iters, heavy } = c.mode {
        if !(1..=crate::apps::MAX_ITERATIONS).contains(&heavy_iters) {
            return bad("--heavy-iters must be from 1 to 10000000".into());
        }
        if heavy > 1_000_000 {
            return bad("--heavy must be at most 1000000".into());
        }
        if heavy > 0 && c.rate.is_some() {
            return bad(
                "--rate cannot be combined with --heavy (heavy connections are closed-loop)".into(),
            );
        }
    }
    if let Mode::Framed { request, reply } = &c.mode {
        if request.is_empty() {
            return bad("--request must not be empty".into());
        }
        match reply {
            ReplyRule::Until(delim) if delim.is_empty() => {
                return bad("--reply-until must not be empty".into());
            }
            ReplyRule::Len(0) => return bad("--reply-len must be at least 1".into()),
            _ => {}
        }
    }
    if let Mode::Ack(reply) = &c.mode {
        if reply.is_empty() {
            return bad("--reply must not be empty in ack mode".into());
        }
        if c.pipeline > 1 {
            // ack answers each read, not each request: with several
            // requests in flight the kernel may merge them into one read.
            return bad("--mode ack needs --pipeline 1 (the ack protocol has no framing)".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_out_of_range_values() {
        let ok = BenchConfig::new(([127, 0, 0, 1], 1).into());
        assert!(validate(&ok).is_ok());
        let cases: Vec<(BenchConfig, &str)> = vec![
            (
                BenchConfig {
                    threads: 0,
                    ..ok.clone()
                },
                "--threads",
            ),
            (
                BenchConfig {
                    threads: 1025,
                    ..ok.clone()
                },
                "--threads",
            ),
            (
                BenchConfig {
                    threads: 101,
                    ..ok.clone()
                },
                "active connections",
            ),
            (
                BenchConfig {
                    requests: Some(0),
                    ..ok.clone()
                },
                "--requests",
            ),
            (
                BenchConfig {
                    rate: Some(0.0),
                    ..ok.clone()
                },
                "--rate",
            ),
            (
                BenchConfig {
                    rate: Some(f64::NAN),
                    ..ok.clone()
                },
                "--rate",
            ),
            (
                BenchConfig {
                    connect_rate: Some(-1.0),
                    ..ok.clone()
                },
                "--connect-rate",
            ),
            (
                BenchConfig {
                    response_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "--timeout",
            ),
            (
                BenchConfig {
                    interval: Some(Duration::from_millis(1)),
                    ..ok.clone()
                },
                "--interval",
            ),
            (
                BenchConfig {
                    mode: Mode::Hash {
                        heavy: 1,
                        heavy_iters: 10,
                    },
                    rate: Some(10.0),
                    ..ok.clone()
                },
                "--heavy",
            ),
            (
                BenchConfig {
                    mode: Mode::Framed {
                        request: Vec::new(),
                        reply: ReplyRule::Http,
                    },
                    ..ok.clone()
                },
                "--request",
            ),
            (
                BenchConfig {
                    mode: Mode::Framed {
                        request: b"x".to_vec(),
                        reply: ReplyRule::Until(Vec::new()),
                    },
                    ..ok.clone()
                },
                "--reply-until",
            ),
            (
                BenchConfig {
                    mode: Mode::Framed {
                        request: b"x".to_vec(),
                        reply: ReplyRule::Len(0),
                    },
                    ..ok.clone()
                },
                "--reply-len",
            ),
        ];
        for (c, flag) in cases {
            let e = validate(&c).expect_err(flag);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(flag), "{e} should name {flag}");
        }
    }
}
