//! iomux: a small I/O-multiplexing event loop, one thread for many sockets.
//!
//! The model, in the order data flows:
//!
//! kernel event → [`selector`] (select, poll, epoll, epoll-et; chosen at
//! run time by [`Backend`]) → [`EventLoop`] (token → connection, stale
//! tokens dropped) → connection buffers (read budget, back-pressure) →
//! [`App`] (your protocol) → connection output → socket.
//!
//! ```no_run
//! use iomux::{app::Echo, Backend, Config, EventLoop};
//! use std::net::TcpListener;
//!
//! let mut lp = EventLoop::new(Backend::Auto, Config::default())?;
//! lp.listen(TcpListener::bind("127.0.0.1:8888")?)?;
//! lp.stop_on_signals(&[libc_sigint()])?;
//! lp.run(&mut Echo)?;
//! # fn libc_sigint() -> i32 { 2 }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The one weakness of the model (the seed text says it plainly): events
//! are detected and handled on the same thread, so a slow handler stalls
//! every client. Keep [`App`] callbacks short.

#![warn(missing_docs)]

pub mod app;
mod conn;
pub mod event_loop;
pub mod limits;
pub mod net;
pub mod pool;
pub mod selector;
pub mod timer;
mod waker;

pub use app::App;
pub use conn::ConnId;
pub use event_loop::{CloseReason, Config, Ctx, EventLoop, Stats};
pub use selector::{Backend, Event, Events, Interest, Selector, Token};
pub use waker::{StopHandle, Waker};
