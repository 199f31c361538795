//! Opening a thread's connections (the loop's side of `open.rs`): its
//! connects, their failures, and the gates every thread passes together.

use super::{LoadGen, LoadPhase, RETRY_AFTER, TIMER_CONNECT, TIMER_RETRY};
use crate::bench::Phase;
use crate::bench::open::{Attempt, Next, Stage};
use iomux::Ctx;
use std::io;
use std::time::Instant;

impl LoadGen {
    /// Moves the opening of this thread's connections along: starts the
    /// connects that may start, and passes the gates where every thread
    /// meets (all idle connections open, then all connections open).
    pub(super) fn advance(&mut self, ctx: &mut Ctx<'_>) {
        loop {
            if self.stopped() {
                return;
            }
            if self.shared.gates.failed() {
                // This thread or another ended the run before its load.
                self.stop(ctx);
                return;
            }
            match self.opener.stage {
                Stage::Idle | Stage::Active => {
                    self.start_due(ctx);
                    if self.stopped() || !self.opener.stage_complete() {
                        return;
                    }
                    let idle = self.opener.stage == Stage::Idle;
                    self.opener.advance();
                    let gates = &self.shared.gates;
                    if !idle {
                        gates.all_done(self.clients.len(), &self.addr);
                    } else if gates.idle_done(self.idle.len()) {
                        // The last thread with idle connections to open:
                        // the others wait until the observer has seen them.
                        if let Some(o) = &self.shared.observer {
                            o(Phase::IdleOpen);
                        }
                        gates.pass_idle();
                    }
                }
                Stage::WaitIdle if self.shared.gates.idle_passed() => self.opener.advance(),
                Stage::WaitOpen if self.shared.gates.all_open() => {
                    self.opener.advance();
                    self.begin_load(ctx);
                    return;
                }
                Stage::WaitIdle | Stage::WaitOpen | Stage::Done => return,
            }
        }
    }

    /// Starts every connect that may start now, and arms the connect timer
    /// for the next one if it is due later (`--connect-rate`).
    fn start_due(&mut self, ctx: &mut Ctx<'_>) {
        while !self.stopped() {
            match self.opener.next(Instant::now()) {
                Next::Start(attempt) => self.start_connect(ctx, attempt),
                Next::At(due) => {
                    if !self.connect_timer {
                        self.connect_timer = true;
                        // Timers count from the turn's start.
                        ctx.set_timer(due.saturating_duration_since(ctx.now()), TIMER_CONNECT);
                    }
                    return;
                }
                Next::Wait => return,
            }
        }
    }

    pub(super) fn start_connect(&mut self, ctx: &mut Ctx<'_>, attempt: Attempt) {
        let addr = self.opener.addr().clone();
        let started = match &self.tls {
            Some(tls) => ctx.connect_tls(addr, tls.config.clone(), tls.name.clone()),
            None => ctx.connect(addr),
        };
        match started {
            Ok(id) => self.opener.started(id, attempt),
            Err(e) => self.connect_failed(ctx, attempt, e),
        }
    }

    /// A connect failed, at once or (before `on_open`) in `on_close`: it
    /// is tried again (a full Unix-domain accept queue), the next address
    /// is tried (none accepted yet), it is counted (another connection to
    /// the chosen address failed), or the run ends with a message saying
    /// why (no address accepts, a connect timeout, out of descriptors).
    pub(super) fn connect_failed(&mut self, ctx: &mut Ctx<'_>, attempt: Attempt, mut e: io::Error) {
        let now = Instant::now();
        if e.kind() == io::ErrorKind::WouldBlock {
            if now < attempt.since + self.connect_timeout {
                self.opener.retry_later(attempt);
                if !self.retry_timer {
                    self.retry_timer = true;
                    ctx.set_timer(RETRY_AFTER, TIMER_RETRY);
                }
                return;
            }
            e = io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out (the server's accept queue stayed full)",
            );
        }
        if self.phase != LoadPhase::Opening {
            return self.reopen_failed(ctx, attempt, e);
        }
        if self.opener.next_addr() {
            // Each address gets a connect timeout of its own.
            self.start_connect(
                ctx,
                Attempt {
                    since: now,
                    ..attempt
                },
            );
            return;
        }
        let addr = self.opener.addr().clone();
        let planned = attempt.planned;
        let what = planned.kind.name();
        let errno = e.raw_os_error();
        if errno == Some(rustix::io::Errno::MFILE.raw_os_error())
            || errno == Some(rustix::io::Errno::NFILE.raw_os_error())
        {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            let message = format!(
                "cannot open {} {what} connections to {addr}: {e}; the open-files \
                 limit is {} (raise it with `ulimit -n`, up to the hard limit {})",
                planned.of,
                limit.current.map_or("unlimited".into(), |v| v.to_string()),
                limit.maximum.map_or("unlimited".into(), |v| v.to_string()),
            );
            return self.fail(ctx, io::ErrorKind::Other, message);
        }
        if e.kind() == io::ErrorKind::TimedOut {
            // Each further try would cost the whole timeout.
            let message = format!(
                "cannot connect to {addr}: connect timeout ({} s) on {what} connection {} of {}",
                self.connect_timeout.as_secs_f64(),
                planned.number + 1,
                planned.of
            );
            return self.fail(ctx, io::ErrorKind::TimedOut, message);
        }
        if !self.opener.chosen() {
            let tried: Vec<String> = self.opener.addrs().iter().map(|a| a.to_string()).collect();
            let target = if tried.len() > 1 || tried[0] != self.target {
                format!("{} ({})", self.target, tried.join(", "))
            } else {
                self.target.clone()
            };
            return self.fail(ctx, e.kind(), format!("cannot connect to {target}: {e}"));
        }
        self.record.errors.connect_failures += 1;
        self.error(format!("{addr}: {what} connection failed: {e}"));
        self.opener.give_up();
    }

    /// The replacement of a connection closed after a timeout could not be
    /// opened: counted, and the run goes on with the others (or ends, with
    /// none left).
    fn reopen_failed(&mut self, ctx: &mut Ctx<'_>, attempt: Attempt, e: io::Error) {
        self.record.errors.connect_failures += 1;
        self.error(format!(
            "{}: cannot reopen {} connection {} of {} after a response timeout: {e}",
            self.opener.addr(),
            attempt.planned.kind.name(),
            attempt.planned.number + 1,
            attempt.planned.of
        ));
        if self.clients.is_empty() && self.opener.connecting() == 0 {
            match self.phase {
                LoadPhase::WarmingUp | LoadPhase::Measuring => self.end_window(ctx),
                LoadPhase::Draining => self.stop(ctx),
                LoadPhase::Opening | LoadPhase::Stopped => {}
            }
        }
    }

    /// Ends the run before its load, on every thread.
    pub(super) fn fail(&mut self, ctx: &mut Ctx<'_>, kind: io::ErrorKind, message: String) {
        self.shared.gates.fail(kind, message);
        self.stop(ctx);
    }
}
