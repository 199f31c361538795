//! iomux: a small I/O-multiplexing event loop, one thread for many sockets.
//!
//! The model, in the order data flows:
//!
//! kernel event → [`selector`] (select, poll, epoll, epoll-et, uring-poll;
//! chosen at run time by [`Backend`]) → [`EventLoop`] (token → connection,
//! stale tokens dropped) → connection buffers (read budget, back-pressure) →
//! [`App`] (your protocol) → connection output → socket.
//!
//! Or, on the completion driver (`Backend::Uring`), the kernel does the
//! I/O itself: completion of a multishot receive into a shared ring of
//! provided buffers → [`EventLoop`] (operation → connection) → [`App`],
//! straight from the buffer → connection output → a send the ring owns
//! until it completes. Same loop, same app contract, same tests.
//!
//! ```no_run
//! use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop, SIGINT, SIGTERM};
//!
//! /// Sends back what it gets.
//! struct Echo;
//!
//! impl App for Echo {
//!     type State = ();
//!     fn name(&self) -> &'static str {
//!         "echo"
//!     }
//!     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
//!         ctx.send(conn, input);
//!         input.len()
//!     }
//! }
//!
//! let mut lp = EventLoop::new(Backend::Auto, Config::default())?;
//! lp.listen(iomux::net::tcp_listener("127.0.0.1:8888".parse().unwrap())?)?;
//! lp.stop_on_signals(&[SIGINT, SIGTERM])?;
//! lp.run(&mut Echo)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Your own protocol is an [`App`]: bytes in, [`Ctx::send`] out.
//!
//! ```
//! use iomux::{App, ConnId, Ctx};
//!
//! /// Answers every line with its length.
//! struct LineLength;
//!
//! impl App for LineLength {
//!     type State = (); // nothing kept per connection
//!
//!     fn name(&self) -> &'static str {
//!         "line-length"
//!     }
//!     fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
//!         let (lines, used) = iomux::app::split_lines(input);
//!         for line in lines {
//!             ctx.send(conn, format!("{}\n", line.len()).as_bytes());
//!         }
//!         used // the unfinished tail comes back with the next bytes
//!     }
//! }
//! ```
//!
//! The contract an app can rely on (flow control both ways, unconsumed
//! input offered again, limits told before they close, per-connection
//! [`App::State`], timers, pause/resume) is written out in [`app`]; the
//! `examples/` directory has an HTTP/1.1 and a RESP2 server built on it.
//! Beyond accepted TCP: outbound connects ([`Ctx::connect`]), Unix-domain
//! sockets ([`net::UnixListener`], [`Addr`]), and any descriptor
//! ([`Ctx::watch`], [`source`]). One loop per core: [`group::Threads`].
//! The library prints nothing: it reports through the [`log`] facade.
//!
//! A handler too heavy for the loop thread goes to the offload pool
//! ([`Config::workers`], [`Ctx::offload`], [`App::on_job_done`]).
//!
//! The one weakness of the model (the seed text says it plainly): events
//! are detected and handled on the same thread, so a slow handler stalls
//! every client. Keep [`App`] callbacks short.

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
pub mod event_loop;
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
mod stream;
mod timer;
mod token;
pub mod uring;
mod waker;

pub use app::App;
pub use backend::{Backend, UnknownBackend};
pub use config::Config;
pub use conn::ConnId;
pub use ctx::Ctx;
pub use event_loop::{EventLoop, Status};
pub use reason::{CloseReason, Limit};
pub use selector::{Event, Events, Interest, Selector, Token};
pub use signal_hook::consts::{SIGINT, SIGTERM};
pub use source::{Readiness, SourceId};
pub use stats::Stats;
pub use stream::Addr;
pub use timer::TimerId;
pub use waker::{StopHandle, Waker};
