//! One loop per core as a library user runs it, on every backend: a group
//! on a Unix-domain socket (shared by its loops) serves every client, and
//! its stop handle ends it, whether asked while it runs or before.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::thread;

use common::{Echo, IO_TIMEOUT, LIVENESS};
use iomux::group::Threads;
use iomux::{Addr, Backend, Config};

backend_suite! {
    a_unix_domain_group_serves_everyone_and_stops,
    a_group_stopped_before_it_runs_ends_at_once,
}

fn a_unix_domain_group_serves_everyone_and_stops(backend: &str) {
    let name = format!("iomux-group-{backend}-{}", std::process::id());
    let addr = Addr::Abstract(name.clone());
    let threads = Threads::bind(&addr, 2).expect("two loops on one Unix socket");
    assert_eq!(threads.local_addr(), &addr);
    let stop = threads.stop_handle();
    let backend: Backend = backend.parse().unwrap();
    let (ready_tx, ready) = mpsc::channel();
    let group = thread::spawn(move || {
        threads.run(
            backend,
            Config::default(),
            |_| Echo,
            move |_| {
                let _ = ready_tx.send(());
            },
        )
    });
    ready.recv_timeout(LIVENESS).expect("the group started");
    use std::os::linux::net::SocketAddrExt;
    let target = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let mut clients: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect_addr(&target).expect("connect"))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let msg = format!("client {i}\n");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    stop.stop();
    let stats = group.join().unwrap().expect("the group ran and stopped");
    assert_eq!(stats.loops.len(), 2);
    assert_eq!(stats.total().accepted, 20);
    for c in &mut clients {
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.is_empty(), "closed by the stop");
    }
}

fn a_group_stopped_before_it_runs_ends_at_once(backend: &str) {
    let threads = Threads::bind(&"127.0.0.1:0".parse().unwrap(), 2).unwrap();
    threads.stop_handle().stop();
    let backend: Backend = backend.parse().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(threads.run(backend, Config::default(), |_| Echo, |_| {}));
    });
    let stats = rx
        .recv_timeout(LIVENESS)
        .expect("a stop asked before the run ends it")
        .expect("the group ran");
    assert_eq!(stats.total().accepted, 0);
}
