//! What a connection's socket is: TCP or Unix-domain, and how its peer is
//! named. The loop treats both alike (a stream fd it reads and writes);
//! only set-up and names differ.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// A connected stream socket of either kind, as [`crate::EventLoop::adopt`]
/// takes it (`TcpStream` and `UnixStream` convert with `into()`).
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix-domain connection.
    Unix(UnixStream),
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Stream {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Stream {
        Stream::Unix(s)
    }
}

impl Stream {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).write(buf),
            Stream::Unix(s) => (&*s).write(buf),
        }
    }

    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }

    pub(crate) fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Tcp(s) => s.take_error(),
            Stream::Unix(s) => s.take_error(),
        }
    }

    /// Whether a connect finished (the peer has an address).
    pub(crate) fn is_connected(&self) -> io::Result<bool> {
        let peer = match self {
            Stream::Tcp(s) => s.peer_addr().map(drop),
            Stream::Unix(s) => s.peer_addr().map(drop),
        };
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Tcp(s) => Some(s),
            Stream::Unix(_) => None,
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

/// Where a server listens or a peer is: a TCP address, a Unix-domain
/// socket path, or a name in Linux's abstract namespace. Written
/// `127.0.0.1:8888`, `[::1]:8888`, `unix:/tmp/iomux.sock`, `unix:@name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix-domain socket file.
    Unix(PathBuf),
    /// A Unix-domain socket in the abstract namespace (no file).
    Abstract(String),
    /// A Unix-domain peer that bound no name (the usual client), numbered
    /// so that log lines tell clients apart.
    UnnamedUnix(u32),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            // `unix:@` is the abstract namespace: a file named `@…` is
            // written `./@…`, which reads back as the same file.
            Addr::Unix(p) if p.as_os_str().as_encoded_bytes().starts_with(b"@") => {
                write!(f, "unix:./{}", p.display())
            }
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            Addr::Abstract(n) => write!(f, "unix:@{n}"),
            Addr::UnnamedUnix(n) => write!(f, "unix:#{n}"),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(addr: SocketAddr) -> Addr {
        Addr::Tcp(addr)
    }
}

impl From<&Addr> for Addr {
    fn from(addr: &Addr) -> Addr {
        addr.clone()
    }
}

/// Parses `127.0.0.1:8888`, `[::1]:8888`, `unix:/path` and `unix:@name`
/// (a TCP address must be numeric: no name lookup).
///
/// ```
/// use iomux::Addr;
///
/// assert_eq!("unix:@demo".parse::<Addr>(), Ok(Addr::Abstract("demo".into())));
/// assert!(matches!("127.0.0.1:8888".parse::<Addr>(), Ok(Addr::Tcp(_))));
/// assert!("localhost:80".parse::<Addr>().is_err());
/// ```
impl std::str::FromStr for Addr {
    type Err = String;
    fn from_str(s: &str) -> Result<Addr, String> {
        match Addr::parse_unix(s) {
            Some(parsed) => parsed,
            None => s.parse::<SocketAddr>().map(Addr::Tcp).map_err(|e| {
                format!("{s:?} is not an address (IP:PORT, unix:PATH or unix:@NAME): {e}")
            }),
        }
    }
}

impl Addr {
    /// Parses the `unix:` forms; `None` for anything else (a TCP address,
    /// which the caller resolves: a host name, say). `Some(Err)` says what
    /// is missing (`unix:` without a path, `unix:@` without a name).
    pub fn parse_unix(s: &str) -> Option<Result<Addr, String>> {
        let rest = s.strip_prefix("unix:")?;
        Some(match rest.strip_prefix('@') {
            Some("") => Err("unix:@NAME needs a name".into()),
            Some(name) => Ok(Addr::Abstract(name.into())),
            None if rest.is_empty() => Err("unix:PATH needs a path".into()),
            None => Ok(Addr::Unix(rest.into())),
        })
    }
}

/// A connection's peer, kept small in the connection's slot.
// Named Unix peers are rare; a thin box keeps every slot two words smaller
// than a `String` would (idle-connection memory), at one extra allocation
// for them.
#[allow(clippy::box_collection)]
pub(crate) enum Peer {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
    // Boxed owned types (thin pointers), so a peer stays two words.
    Unix(Box<PathBuf>),
    Abstract(Box<String>),
    UnnamedUnix(u32),
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        match addr {
            SocketAddr::V4(a) => Peer::V4(a),
            SocketAddr::V6(a) => Peer::V6(Box::new(a)),
        }
    }
}

impl From<Addr> for Peer {
    fn from(addr: Addr) -> Peer {
        match addr {
            Addr::Tcp(a) => a.into(),
            Addr::Unix(p) => Peer::Unix(Box::new(p)),
            Addr::Abstract(n) => Peer::Abstract(Box::new(n)),
            Addr::UnnamedUnix(n) => Peer::UnnamedUnix(n),
        }
    }
}

impl Peer {
    /// The TCP address, if it is one.
    pub(crate) fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Peer::V4(a) => Some(SocketAddr::V4(*a)),
            Peer::V6(a) => Some(SocketAddr::V6(**a)),
            _ => None,
        }
    }

    pub(crate) fn addr(&self) -> Addr {
        match self {
            Peer::V4(a) => Addr::Tcp(SocketAddr::V4(*a)),
            Peer::V6(a) => Addr::Tcp(SocketAddr::V6(**a)),
            Peer::Unix(p) => Addr::Unix((**p).clone()),
            Peer::Abstract(n) => Addr::Abstract((**n).clone()),
            Peer::UnnamedUnix(n) => Addr::UnnamedUnix(*n),
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::V4(a) => write!(f, "{a}"),
            Peer::V6(a) => write!(f, "{a}"),
            Peer::Unix(p) => write!(f, "unix:{}", p.display()),
            Peer::Abstract(n) => write!(f, "unix:@{n}"),
            Peer::UnnamedUnix(n) => write!(f, "unix:#{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_addresses_parse_and_print_back() {
        for text in ["unix:/tmp/a.sock", "unix:@name", "unix:relative.sock"] {
            let addr = Addr::parse_unix(text).unwrap().unwrap();
            assert_eq!(addr.to_string(), text);
        }
        assert!(Addr::parse_unix("unix:").unwrap().is_err());
        assert!(Addr::parse_unix("unix:@").unwrap().is_err());
        assert!(Addr::parse_unix("127.0.0.1:80").is_none());
        assert_eq!(Addr::UnnamedUnix(7).to_string(), "unix:#7");
    }

    #[test]
    fn a_peer_is_small() {
        assert!(std::mem::size_of::<Peer>() <= 16);
        assert!(std::mem::size_of::<Stream>() <= 8);
    }
}
