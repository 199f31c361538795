//! The app contract of the library, pinned on every backend: one module per
//! part of the contract, each behaviour a `#[test]` per backend.
//!
//! Each behaviour is a plain function `fn name(backend: &str)` with a small
//! `App` of its own, run by an `EventLoop` in a thread ([`LoopThread`]) and
//! driven by real TCP clients on 127.0.0.1; `backend_suite!` turns the list
//! into one `#[test]` per backend. The apps write what the loop tells them
//! into a [`Journal`] the test waits on (with a deadline, never a guess),
//! and the library's own log lines are captured by a `log::Log` installed
//! once for this test binary ([`capture_logs`]), filtered by peer address.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod clients;
mod journal;
mod logs;

mod embedding;
mod idle;
mod oversized;
mod pause;
mod pipelining;
mod pushed_output;
mod reoffer;
mod sockets;
mod state;
mod timers;
mod tls;
mod wakeups;

/// What every part of the suite uses.
mod prelude {
    pub(crate) use crate::clients::*;
    pub(crate) use crate::common::{
        LIVENESS, LoopThread, expect_closed, read_n, read_to_end, set_timeouts,
        wait_no_server_sockets,
    };
    pub(crate) use crate::journal::*;
    pub(crate) use crate::logs::*;
    pub(crate) use iomux::app::App;
    pub(crate) use iomux::pool::{JobId, JobResult};
    pub(crate) use iomux::{
        Backend, CloseReason, Config, ConnId, Ctx, EventLoop, Limit, Status, TimerId,
    };
    pub(crate) use std::collections::HashMap;
    pub(crate) use std::io::{self, Read, Write};
    pub(crate) use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
    pub(crate) use std::thread;
    pub(crate) use std::time::{Duration, Instant};
}
