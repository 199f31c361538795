//! The loop's tunables, checked once when the loop is built.

use std::io;
use std::time::Duration;

/// The longest [`Config::max_clients_reply`]: what a fresh socket takes
/// in one write.
const MAX_CLIENTS_REPLY: usize = 4096;

/// Tunables of the loop. `Config::default()` gives the server's defaults
/// (listed on each field). Set fields on a default value:
///
/// ```
/// let mut config = iomux::Config::default();
/// config.max_clients = 100;
/// config.idle_timeout = Some(std::time::Duration::from_secs(30));
/// ```
///
/// [`crate::EventLoop::new`] refuses a config that would hang or spin
/// (see [`Config::validate`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Connections beyond this are accepted and closed at once. Default
    /// 10,000; at least 1.
    pub max_clients: usize,
    /// Written to a client turned away by `max_clients` before it is
    /// closed, so it learns why (Redis answers `-ERR max number of clients
    /// reached`). One non-blocking write to a fresh socket: at most 4096
    /// bytes. Default none: closed without a word.
    pub max_clients_reply: Option<Vec<u8>>,
    /// Close a connection whose peer sent nothing for this long. Time the
    /// loop spends not reading it (back-pressure, [`crate::Ctx::pause_reading`],
    /// its job limit) or running its jobs is not the peer's silence. Default
    /// off.
    pub idle_timeout: Option<Duration>,
    /// Close a connection that has output pending and has taken none of it
    /// for this long (a peer that stopped reading). Default off.
    pub write_timeout: Option<Duration>,
    /// Hard limit on output *pushed* to a connection (sent from any
    /// callback but its own `on_data`, `on_job_done`, `on_drain` or
    /// `on_limit`: broadcasts, timers, wake-ups). Pushed output over this
    /// closes the connection at once (after [`crate::App::on_limit`]).
    /// Replies to a connection's own requests are bounded by flow control
    /// instead, so a client that reads is never cut off for its own
    /// pipelining. Default 1 MiB.
    pub max_output: usize,
    /// Soft limit on pushed output: over `.0` bytes continuously for `.1`
    /// closes the connection (Redis's `client-output-buffer-limit`).
    /// Default off.
    pub max_output_soft: Option<(usize, Duration)>,
    /// Close a connection whose unconsumed input exceeds this (after
    /// [`crate::App::on_limit`], which may answer first). Default 1 MiB.
    pub max_input: usize,
    /// Input is handed to the app only while the connection's pending
    /// output is at or below this... Default 256 KiB.
    pub high_water: usize,
    /// ...and again once it is written down to this (then
    /// [`crate::App::on_drain`] runs). Default 64 KiB; at most `high_water`.
    pub low_water: usize,
    /// Bytes read from one connection per turn before others get a go.
    /// Default 256 KiB; at least 1.
    pub read_budget: usize,
    /// Connections accepted per listener per turn. Default 256; at least 1.
    pub accept_budget: usize,
    /// How long an outbound connect ([`crate::Ctx::connect`]) may take.
    /// Default 10 s.
    pub connect_timeout: Option<Duration>,
    /// How long a graceful shutdown (and a lingering close) may wait for
    /// peers to take their output. Default 5 s.
    pub shutdown_grace: Duration,
    /// How long a TLS connection's handshake may take, from its accept
    /// (or the start of its connect) to its end (feature `tls`); then it
    /// is closed with [`crate::CloseReason::Tls`]. Default 10 s; not
    /// zero.
    pub tls_handshake_timeout: Duration,
    /// How long accepting pauses after `EMFILE`/`ENFILE`. Default 100 ms;
    /// not zero.
    pub accept_backoff: Duration,
    /// Set `TCP_NODELAY` on accepted connections. Default on.
    pub nodelay: bool,
    /// Worker threads for [`crate::Ctx::offload`] (0: no pool, apps run
    /// inline). Default 0.
    pub workers: usize,
    /// Stop handing a connection's input to the app while this many of its
    /// jobs are in flight, so one client cannot fill the pool's queue (or
    /// memory). Default 64; at least 1.
    pub max_jobs_per_conn: u32,
    /// Log a handler call that runs longer than this (the stall watchdog).
    /// Default 100 ms.
    pub stall_threshold: Option<Duration>,
    /// Log a `stats` line this often. Default off; not zero.
    pub stats_interval: Option<Duration>,
    /// Provided buffers of the completion driver (`uring`), 4 KiB each,
    /// shared by all its connections: how much one turn may receive. When
    /// all are lent out a receive ends with `ENOBUFS` and is armed again
    /// once they are back. Default 512 (2 MiB); a power of two up to 32768.
    pub uring_buffers: u16,
    /// Faults to inject between the loop and the kernel (feature
    /// `faults`; for tests). `None`: as `IOMUX_FAULTS=SEED[:RATE]` says,
    /// or none.
    #[cfg(feature = "faults")]
    pub faults: Option<crate::faults::FaultPlan>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_clients: 10_000,
            max_clients_reply: None,
            idle_timeout: None,
            write_timeout: None,
            max_output: 1 << 20,
            max_output_soft: None,
            max_input: 1 << 20,
            high_water: 256 * 1024,
            low_water: 64 * 1024,
            read_budget: 256 * 1024,
            accept_budget: 256,
            connect_timeout: Some(Duration::from_secs(10)),
            shutdown_grace: Duration::from_secs(5),
            tls_handshake_timeout: Duration::from_secs(10),
            accept_backoff: Duration::from_millis(100),
            nodelay: true,
            workers: 0,
            max_jobs_per_conn: 64,
            stall_threshold: Some(Duration::from_millis(100)),
            stats_interval: None,
            uring_buffers: 512,
            #[cfg(feature = "faults")]
            faults: None,
        }
    }
}

impl Config {
    /// Checks that the loop can run with this config: every count that
    /// gates progress is at least 1, every period that re-arms is non-zero,
    /// the water marks are ordered.
    ///
    /// ```
    /// use iomux::Config;
    ///
    /// assert!(Config::default().validate().is_ok());
    /// let mut bad = Config::default();
    /// bad.max_clients = 0;
    /// assert!(bad.validate().unwrap_err().to_string().contains("max_clients"));
    /// ```
    ///
    /// # Errors
    /// `InvalidInput`, naming the first field that is out of range.
    pub fn validate(&self) -> io::Result<()> {
        let positive = [
            ("max_clients", self.max_clients),
            ("read_budget", self.read_budget),
            ("accept_budget", self.accept_budget),
            ("max_jobs_per_conn", self.max_jobs_per_conn as usize),
            ("max_input", self.max_input),
            ("max_output", self.max_output),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(invalid(format!("{field} must be at least 1")));
            }
        }
        let periods = [
            ("accept_backoff", Some(self.accept_backoff)),
            ("stats_interval", self.stats_interval),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            ("connect_timeout", self.connect_timeout),
            ("tls_handshake_timeout", Some(self.tls_handshake_timeout)),
            ("max_output_soft", self.max_output_soft.map(|(_, d)| d)),
        ];
        if let Some(reply) = &self.max_clients_reply
            && reply.len() > MAX_CLIENTS_REPLY
        {
            return Err(invalid(format!(
                "max_clients_reply must be at most {MAX_CLIENTS_REPLY} bytes (not {})",
                reply.len()
            )));
        }
        if !self.uring_buffers.is_power_of_two() || self.uring_buffers > 1 << 15 {
            return Err(invalid(format!(
                "uring_buffers must be a power of two up to 32768 (not {})",
                self.uring_buffers
            )));
        }
        for (field, value) in periods {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(invalid(format!("{field} must not be zero")));
            }
        }
        if self.low_water > self.high_water {
            return Err(invalid(format!(
                "low_water ({}) must not exceed high_water ({})",
                self.low_water, self.high_water
            )));
        }
        if let Some((soft, _)) = self.max_output_soft
            && soft > self.max_output
        {
            return Err(invalid(format!(
                "max_output_soft ({soft}) must not exceed max_output ({})",
                self.max_output
            )));
        }
        Ok(())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("config: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn settings_that_would_hang_or_spin_are_refused() {
        type Breaks = fn(&mut Config);
        let cases: Vec<(Breaks, &str)> = vec![
            (|c| c.max_jobs_per_conn = 0, "max_jobs_per_conn"),
            (|c| c.accept_budget = 0, "accept_budget"),
            (|c| c.read_budget = 0, "read_budget"),
            (|c| c.max_clients = 0, "max_clients"),
            (
                |c| c.max_clients_reply = Some(vec![b'x'; MAX_CLIENTS_REPLY + 1]),
                "max_clients_reply",
            ),
            (|c| c.low_water = c.high_water + 1, "low_water"),
            (|c| c.accept_backoff = Duration::ZERO, "accept_backoff"),
            (
                |c| c.stats_interval = Some(Duration::ZERO),
                "stats_interval",
            ),
            (|c| c.idle_timeout = Some(Duration::ZERO), "idle_timeout"),
            (
                |c| c.tls_handshake_timeout = Duration::ZERO,
                "tls_handshake_timeout",
            ),
            (
                |c| c.max_output_soft = Some((c.max_output + 1, Duration::from_secs(1))),
                "max_output_soft",
            ),
            (|c| c.uring_buffers = 0, "uring_buffers"),
            (|c| c.uring_buffers = 48, "uring_buffers"),
            (|c| c.uring_buffers = u16::MAX, "uring_buffers"),
        ];
        for (break_it, field) in cases {
            let mut c = Config::default();
            break_it(&mut c);
            let e = c.validate().expect_err(field);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(field), "{e} should name {field}");
        }
    }
}
