//! iomux: one thread serving many sockets, over the kernel mechanism you
//! choose at run time.
//!
//! - **Selectors**: one [`Selector`] trait with a backend per mechanism:
//!   `select`, `poll`, `epoll` (level- and edge-triggered) and io_uring poll
//!   requests ([`Backend`]), usable on their own like Python's `selectors`.
//! - **An event loop** ([`EventLoop`]) that owns the sockets and their
//!   buffers, and calls your protocol, an [`App`], with the bytes that came;
//!   on the same contract it also runs io_uring's completion model, where
//!   the kernel does the reads and sends itself ([`Backend::Uring`]).
//! - Timers, signals, a [`Waker`], an offload pool for heavy handlers
//!   ([`Ctx::offload`]), any descriptor ([`Ctx::watch`]), Unix-domain
//!   sockets and outbound connects ([`Addr`], [`Ctx::connect`]), one loop
//!   per core ([`group::Threads`]). The library prints nothing: it reports
//!   through the [`log`](https://docs.rs/log) facade and return values.
//!
//! A server in twenty lines:
//!
//! ```no_run
//! use iomux::net::Listener;
//! use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, SIGINT, SIGTERM};
//!
//! /// Answers every line with its length.
//! struct LineLength;
//!
//! impl App for LineLength {
//!     type State = (); // nothing kept per connection
//!     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
//!         let (lines, used) = iomux::app::split_lines(input);
//!         for line in lines {
//!             let _ = ctx.send(conn, format!("{}\n", line.len()).as_bytes());
//!         }
//!         used // an unfinished line comes back with the next bytes
//!     }
//! }
//!
//! let mut lp = EventLoop::new(Backend::Auto, Config::default())?;
//! lp.listen(Listener::bind(&"127.0.0.1:8888".parse()?)?)?;
//! lp.stop_on_signals(&[SIGINT, SIGTERM])?;
//! lp.run(&mut LineLength)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The contract in brief
//! Written out in [`app`]. Input is offered to [`App::on_data`] only while
//! the connection's output has room; what the app does not consume is
//! offered again (with the next bytes, or without when it matters: output
//! drained, reading resumed, end of stream). A reply is bounded by that
//! flow control, output pushed to other connections by output limits. A
//! limit is told to [`App::on_limit`] before the close, so an error reply
//! can go out. Each connection has an [`App::State`], handed to its
//! callbacks and given back to [`App::on_close`]. Every callback runs on
//! the loop thread: a slow one stalls every client (the one weakness of
//! the model), so heavy work goes to [`Ctx::offload`].
//!
//! # Platform
//! Linux only. `select`, `poll`, `epoll` and `epoll-et` run on any Linux
//! this crate builds for; `uring-poll` needs io_uring with multishot poll
//! (Linux 5.13); `uring` needs multishot receive and provided-buffer rings
//! (Linux 6.0), and bounds what a connection receives ahead of the app to
//! one 64 KiB window from Linux 6.17 (older kernels: to the buffer ring,
//! said once in the log). [`Backend::check`] says whether one runs here.
//! `examples/` has an HTTP/1.1 server, a RESP2 (Redis-protocol) server and
//! a TCP proxy built on this crate.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "iomux runs on Linux only: its backends are Linux's select, poll, epoll and io_uring (io_uring needs Linux 5.13 for uring-poll and 6.0 for uring)"
);

pub mod app;
mod backend;
mod config;
mod conn;
mod ctx;
mod driver;
mod event_loop;
#[cfg(feature = "faults")]
pub mod faults;
pub mod group;
pub mod limits;
mod mailbox;
pub mod net;
pub mod pool;
mod reason;
pub mod selector;
mod shared;
pub mod source;
mod stats;
mod stop;
mod stream;
mod timer;
mod tls;
mod token;
pub mod uring;
mod waker;

pub use app::App;
pub use backend::{Backend, UnknownBackend};
pub use config::Config;
pub use conn::{ConnId, Origin};
pub use ctx::Ctx;
pub use event_loop::{EventLoop, Status};
pub use reason::{CloseReason, Limit, SendError};
/// The rustls this crate was built with (feature `tls`), for its configs.
#[cfg(feature = "tls")]
pub use rustls;
pub use selector::{Event, Events, Interest, Ready, Selector, Token};
pub use source::{Readiness, SourceId};
pub use stats::Stats;
pub use stop::StopHandle;
pub use stream::Addr;
pub use timer::TimerId;
#[cfg(feature = "tls")]
pub use tls::TlsError;
pub use waker::Waker;

/// The interrupt signal (Ctrl-C), for [`EventLoop::stop_on_signals`] and
/// [`group::Threads::stop_on_signals`].
pub const SIGINT: i32 = signal_hook::consts::SIGINT;
/// The termination signal (`kill`, service managers), for
/// [`EventLoop::stop_on_signals`] and [`group::Threads::stop_on_signals`].
pub const SIGTERM: i32 = signal_hook::consts::SIGTERM;

// The README's and the app guide's examples compile against this crate.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
#[doc = include_str!("../docs/writing-apps.md")]
struct ReadmeDoctests;
