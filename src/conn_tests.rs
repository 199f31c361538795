//! Unit tests of a connection's buffers, flow control and phases.

use super::*;
use std::io::Read;
use std::net::{TcpListener, TcpStream};

fn pair() -> (Conn, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, peer) = l.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let conn = Conn::new(Stream::Tcp(server), peer.into(), ConnId::new(3, 7));
    (conn, client)
}

#[test]
fn conn_id_packs_index_and_generation() {
    let id = ConnId::new(12345, 99);
    assert_eq!(id.index(), 12345);
    assert_eq!(id.generation(), 99);
    assert_ne!(id, ConnId::new(12345, 100));
}

#[test]
fn an_idle_connection_is_small() {
    // The slot is what every idle connection costs in user space.
    assert!(
        std::mem::size_of::<Conn>() <= 40,
        "Conn is {} bytes",
        std::mem::size_of::<Conn>()
    );
}

#[test]
fn interest_follows_pending_output_pause_and_phase() {
    let (mut c, _peer) = pair();
    let now = Instant::now();
    assert_eq!(c.level_interest(64), Interest::READABLE);
    c.queue(b"abc", 1024, now);
    assert_eq!(c.level_interest(64), Interest::BOTH);
    c.set(Flags::APP_PAUSED, true);
    assert_eq!(c.level_interest(64), Interest::WRITABLE);
    assert_eq!(c.flush(now).unwrap(), (3, Flush::Done));
    c.set(Flags::APP_PAUSED, false);
    c.phase = Phase::ReadClosed;
    assert_eq!(c.level_interest(64), Interest::NONE);
    c.phase = Phase::Lingering;
    assert_eq!(c.level_interest(64), Interest::READABLE);
}

#[test]
fn a_send_in_flight_counts_as_pending_and_swaps_buffers() {
    let (mut c, _peer) = pair();
    let now = Instant::now();
    assert!(c.take_output().is_none(), "nothing to send");
    c.queue(b"hello", 1024, now);
    let (buf, off) = c.take_output().expect("the output");
    assert_eq!((&buf[off..], c.pending()), (&b"hello"[..], 5));
    assert!(c.take_output().is_none(), "one send in flight");
    c.queue(b" world", 1024, now);
    assert_eq!(c.pending(), 11, "queued meanwhile, apart from the send");
    c.sent(2, now);
    assert_eq!(c.pending(), 9, "a short send: the rest still in flight");
    c.sent(3, now);
    c.send_done(buf);
    assert_eq!(c.pending(), 6);
    let (next, off) = c.take_output().expect("the next send");
    assert_eq!(&next[off..], b" world");
}

#[test]
fn water_marks_have_hysteresis() {
    let (mut c, mut peer) = pair();
    let now = Instant::now();
    c.queue(&[1; 100], 150, now);
    assert!(!c.has(Flags::FULL) && c.may_deliver(64));
    c.queue(&[1; 100], 150, now);
    assert!(c.has(Flags::FULL), "over the high-water mark");
    assert!(!c.may_deliver(64) && !c.may_read(64));
    assert_eq!(c.flush(now).unwrap().1, Flush::Done);
    assert_eq!(
        c.after_write(50),
        Drained {
            below_low_water: true
        }
    );
    assert!(c.may_deliver(64));
    assert_eq!(c.after_write(50), Drained::default(), "told once");
    let mut buf = [0u8; 200];
    std::io::Read::read_exact(&mut peer, &mut buf).unwrap();
}

#[test]
fn flush_keeps_what_the_socket_refuses_and_frees_big_buffers() {
    let (mut c, mut peer) = pair();
    let now = Instant::now();
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..16 {
        c.queue(&chunk, usize::MAX, now);
    }
    let (_, outcome) = c.flush(now).unwrap();
    assert_eq!(
        outcome,
        Flush::Blocked,
        "16 MiB must not fit a socket buffer"
    );
    let left = c.pending();
    assert!(left > 0 && left < 16 << 20);
    peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while c.pending() > 0 {
        got += peer.read(&mut buf).unwrap();
        c.flush(now).unwrap();
    }
    while got < 16 << 20 {
        got += peer.read(&mut buf).unwrap();
    }
    assert_eq!(got, 16 << 20);
    assert_eq!(
        c.io().unwrap().output.capacity(),
        0,
        "a drained big buffer is released"
    );
}
