use super::*;
use std::os::fd::AsFd;

#[test]
fn a_receive_names_its_connection_and_nothing_else() {
    for id in [
        ConnId::new(0, 1),
        ConnId::new(12345, 0x7fff_ffff),
        ConnId::new((1 << 31) - 2, 0x7fff_ffff),
    ] {
        let user_data = recv_user_data(id).expect("in range");
        assert_eq!(user_data & (OP_BIT | RECV_BIT), OP_BIT | RECV_BIT);
        assert_eq!(recv_conn(user_data & !OP_BIT & !RECV_BIT), id);
        assert_ne!(user_data, IGNORED, "never the ignored user_data");
    }
    assert_eq!(
        recv_user_data(ConnId::new(1 << 31, 1)),
        None,
        "refused, not wrapped"
    );
}

#[test]
fn optlen_is_where_the_crate_puts_it() {
    let by_crate =
        opcode::SetSockOpt::new(types::Fd(3), 0, 0, std::ptr::null(), 0x1234_5678).build();
    let ours = with_optlen(
        opcode::SetSockOpt::new(types::Fd(3), 0, 0, std::ptr::null(), 0).build(),
        0x1234_5678,
    );
    // SAFETY: as in `with_optlen`.
    let (a, b) = unsafe {
        (
            std::mem::transmute::<squeue::Entry, [u8; 64]>(by_crate),
            std::mem::transmute::<squeue::Entry, [u8; 64]>(ours),
        )
    };
    assert_eq!(a, b);
}

#[test]
fn a_capped_receive_ends_after_its_window() {
    if crate::backend::skip_unavailable(crate::Backend::Uring, "capped_receive") {
        return;
    }
    let mut ring = Ring::new(512).expect("a ring");
    if ring.receive_cap.is_none() {
        eprintln!("skipped: this kernel does not cap a multishot receive (Linux 6.17)");
        return;
    }
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().expect("a pair");
    ours.set_nonblocking(true).expect("non-blocking");
    // Four windows wait in the socket; the buffer ring could take all.
    let waiting = 4 * RECEIVE_WINDOW as usize;
    theirs.set_nonblocking(true).expect("non-blocking");
    let mut written = 0;
    while written < waiting {
        match theirs.write(&vec![7; waiting - written]) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    assert!(
        written > 2 * RECEIVE_WINDOW as usize,
        "the socket took {written}"
    );
    let id = ConnId::new(1, 1);
    ring.arm_recv(id, ours.as_fd()).expect("armed");
    let mut events = Events::with_capacity(8);
    let mut done = Vec::new();
    let (mut got, mut ended) = (0, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ended && Instant::now() < deadline {
        ring.wait_once(&mut events, Some(Duration::from_millis(100)))
            .expect("a wait");
        ring.take_done(&mut done);
        for d in done.drain(..) {
            if let Done::Received {
                received,
                ended: last,
                ..
            } = d
            {
                if let Received::Data { bid, len } = received {
                    got += len;
                    ring.give_back(bid);
                }
                ended |= last;
            }
        }
    }
    assert!(ended, "the receive ended by its cap");
    assert!(
        got >= RECEIVE_WINDOW as usize && got < RECEIVE_WINDOW as usize + BUFFER_SIZE,
        "one window and at most one buffer more, got {got}"
    );
}

#[test]
fn provided_buffers_come_back_in_ring_order() {
    if crate::backend::skip_unavailable(crate::Backend::Uring, "provided_buffers") {
        return;
    }
    let ring = Ring::new(8).expect("a ring");
    let mut bufs = BufRing::new(ring.polls.core.ring(), 4, 16, 1).expect("a second group");
    assert_eq!(bufs.get(2, 100).len(), 16, "no more than a buffer");
    for round in 0..10u16 {
        bufs.give_back(round % 4);
    }
    assert_eq!(bufs.get(3, 5), &[0; 5], "the bytes of buffer 3");
    assert!(
        BufRing::new(ring.polls.core.ring(), 3, 16, 2).is_err(),
        "not a power of two"
    );
}
