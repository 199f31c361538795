//! Socket set-up helpers.

use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, listen, socket_with, sockopt};
use std::io;
use std::net::{SocketAddr, TcpListener};

/// Backlog asked of `listen(2)`; the kernel caps it at `somaxconn`. Large,
/// so that thousands of clients connecting at once are queued, not dropped.
pub const BACKLOG: i32 = 4096;

/// A listening TCP socket on `addr` with `SO_REUSEADDR` and a deep backlog.
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    listener(addr, false)
}

/// [`tcp_listener`] with `SO_REUSEPORT`: several such sockets may listen
/// on one address, and the kernel spreads new connections across them.
pub fn tcp_listener_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    listener(addr, true)
}

/// Binds (without listening) and closes a socket on `addr`: an error if
/// another socket listens there, `SO_REUSEPORT` or not.
pub(crate) fn bind_probe(addr: SocketAddr) -> io::Result<()> {
    let fd = socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &addr)?;
    Ok(())
}

fn family(addr: SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    }
}

fn listener(addr: SocketAddr, reuseport: bool) -> io::Result<TcpListener> {
    let fd = socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if reuseport {
        sockopt::set_socket_reuseport(&fd, true)?;
    }
    bind(&fd, &addr)?;
    listen(&fd, BACKLOG)?;
    Ok(TcpListener::from(fd))
}
