//! Sockets: where the loop listens ([`Listener`]), what it adopts
//! ([`Stream`]), and the set-up helpers behind them.

use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, listen, socket_with, sockopt};
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream};
use std::path::PathBuf;

use crate::stream::Addr;
pub use crate::stream::Stream;

/// A listening socket the loop accepts from: TCP or Unix-domain. Made by
/// [`Listener::bind`] from any [`Addr`], or from a socket you set up
/// yourself (`TcpListener` and [`UnixListener`] convert with `into()`).
///
/// ```
/// use iomux::net::Listener;
///
/// let tcp = Listener::bind(&"127.0.0.1:0".parse()?)?;
/// assert!(matches!(tcp.local_addr()?, iomux::Addr::Tcp(a) if a.port() != 0));
/// let unix = Listener::bind(&"unix:@iomux-doc-listener".parse()?)?;
/// assert_eq!(unix.local_addr()?.to_string(), "unix:@iomux-doc-listener");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum Listener {
    /// TCP, as made by [`tcp_listener`].
    Tcp(TcpListener),
    /// Unix-domain, a path or an abstract name.
    Unix(UnixListener),
}

impl Listener {
    /// Listens on `addr`: TCP with `SO_REUSEADDR` and a deep backlog, or a
    /// Unix-domain socket (see [`UnixListener::bind`]).
    ///
    /// # Errors
    /// What `socket`, `bind` and `listen` say (`AddrInUse`, a permission
    /// error, ...); `InvalidInput` for an [`Addr::UnnamedUnix`], which
    /// names no place to listen.
    pub fn bind(addr: &Addr) -> io::Result<Listener> {
        match addr {
            Addr::Tcp(tcp) => tcp_listener(*tcp).map(Listener::Tcp),
            _ => UnixListener::bind(addr).map(Listener::Unix),
        }
    }

    /// Where it listens (for TCP, with the port the kernel picked).
    ///
    /// # Errors
    /// `getsockname` failing on a TCP socket (it does not, in practice).
    pub fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::Tcp),
            Listener::Unix(l) => Ok(l.local_addr().clone()),
        }
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(),
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Listener {
        Listener::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Listener {
        Listener::Unix(l)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

/// Backlog asked of `listen(2)`; the kernel caps it at `somaxconn`. Large,
/// so that thousands of clients connecting at once are queued, not dropped.
pub const BACKLOG: i32 = 4096;

/// A listening TCP socket on `addr` with `SO_REUSEADDR` and a deep backlog.
///
/// # Errors
/// What `socket`, `bind` and `listen` say (`AddrInUse`, ...).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    listener(addr, false)
}

/// [`tcp_listener`] with `SO_REUSEPORT`: several such sockets may listen
/// on one address, and the kernel spreads new connections across them.
///
/// # Errors
/// As [`tcp_listener`].
pub fn tcp_listener_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    listener(addr, true)
}

/// Bytes of a TCP socket's output still in the kernel, not yet
/// acknowledged by the peer (`SIOCOUTQ`).
pub(crate) fn unacked_output(socket: &TcpStream) -> io::Result<u64> {
    /// `SIOCOUTQ`, Linux's `TIOCOUTQ` on a socket.
    const SIOCOUTQ: rustix::ioctl::Opcode = 0x5411;
    // SAFETY: `SIOCOUTQ` is a getter opcode that writes one `c_int`, which
    // `Getter` provides room for.
    unsafe {
        let ctl = rustix::ioctl::Getter::<SIOCOUTQ, std::ffi::c_int>::new();
        rustix::ioctl::ioctl(socket, ctl)
            .map(|n| n.max(0) as u64)
            .map_err(io::Error::from)
    }
}

/// Binds (without listening) and closes a socket on `addr`: an error if
/// another socket listens there, `SO_REUSEPORT` or not.
pub(crate) fn bind_probe(addr: SocketAddr) -> io::Result<()> {
    let fd = socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    bind(&fd, &addr)?;
    Ok(())
}

/// A non-blocking TCP socket whose connect to `addr` has started (or, on
/// loopback, sometimes already finished): it turns writable when the
/// outcome is known.
pub(crate) fn tcp_connect_started(addr: SocketAddr) -> io::Result<TcpStream> {
    let fd = socket_with(
        family(addr),
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => Ok(TcpStream::from(fd)),
        Err(e) => Err(e.into()),
    }
}

/// A non-blocking Unix-domain socket connected to `addr` (`Addr::Unix` or
/// `Addr::Abstract`). Unlike TCP, a Unix-domain connect is never left in
/// progress: it succeeds or fails at once. `EAGAIN` then means the
/// listener's accept queue is full, a "try again later", not "in
/// progress", so it is returned as an error of kind `WouldBlock` that
/// says so; retrying is the caller's decision.
pub(crate) fn unix_connect_started(addr: &Addr) -> io::Result<UnixStream> {
    use rustix::net::SocketAddrUnix;
    let target = match addr {
        Addr::Unix(path) => SocketAddrUnix::new(path.as_path())?,
        Addr::Abstract(name) => SocketAddrUnix::new_abstract_name(name.as_bytes())?,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} is not a Unix-domain address to connect to"),
            ));
        }
    };
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    match rustix::net::connect(&fd, &target) {
        Ok(()) => Ok(UnixStream::from(fd)),
        Err(rustix::io::Errno::AGAIN) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{addr}: the listener's accept queue is full (EAGAIN); try again"),
        )),
        Err(e) => Err(e.into()),
    }
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

/// A listening Unix-domain stream socket: a file (`unix:/path`) or a name
/// in the abstract namespace (`unix:@name`). Its file is removed when it
/// is dropped (at the server's shutdown).
pub struct UnixListener {
    socket: StdUnixListener,
    /// The file to remove, for a path socket.
    path: Option<PathBuf>,
    addr: Addr,
}

impl std::fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixListener")
            .field("socket", &self.socket)
            .field("addr", &self.addr)
            .finish()
    }
}

impl UnixListener {
    /// Listens on `addr` (`Addr::Unix` or `Addr::Abstract`). A socket file
    /// left by a server that is gone (nothing accepts on it) is replaced,
    /// as other servers do; one a running server listens on is refused
    /// (`AddrInUse`), and so is a path that is not a socket.
    ///
    /// # Errors
    /// `AddrInUse` and `AlreadyExists` as above, `InvalidInput` for a TCP
    /// or unnamed address, and what `bind` and `listen` say.
    pub fn bind(addr: &Addr) -> io::Result<UnixListener> {
        let socket = match addr {
            Addr::Unix(path) => {
                remove_if_stale(path)?;
                StdUnixListener::bind(path)?
            }
            Addr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let name = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
                StdUnixListener::bind_addr(&name)?
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{other} is not a Unix-domain address"),
                ));
            }
        };
        let path = match addr {
            Addr::Unix(p) => Some(p.clone()),
            _ => None,
        };
        Ok(UnixListener {
            socket,
            path,
            addr: addr.clone(),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> &Addr {
        &self.addr
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        self.socket.set_nonblocking(true)
    }

    /// Another handle on the same listening socket, for another loop of a
    /// group; the file is removed by the original only.
    pub(crate) fn share(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            socket: self.socket.try_clone()?,
            path: None,
            addr: self.addr.clone(),
        })
    }
}

/// A socket file nobody accepts on is a leftover: remove it. A live one,
/// or something else at that path, is an error.
fn remove_if_stale(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(()); // nothing there
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a server is listening on {} already", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}
