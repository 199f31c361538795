//! Client helpers.

use crate::prelude::*;

/// Reads one `\n`-terminated line (without it).
pub(crate) fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => panic!("closed inside a line: {:?}", String::from_utf8_lossy(&line)),
            Ok(_) if byte[0] == b'\n' => return String::from_utf8_lossy(&line).into_owned(),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read failed inside a line: {e} (got {:?})",
                String::from_utf8_lossy(&line)
            ),
        }
    }
}

/// Sends `line` and returns the reply line.
pub(crate) fn ask(stream: &mut TcpStream, line: &str) -> String {
    stream
        .write_all(format!("{line}\n").as_bytes())
        .expect("send a request");
    read_line(stream)
}

pub(crate) fn peer_of(stream: &TcpStream) -> SocketAddr {
    stream.local_addr().expect("a connected socket")
}

/// Waits until `instant` has passed: only where a test must show that
/// something does *not* happen for a while.
pub(crate) fn sleep_until(instant: Instant) {
    let now = Instant::now();
    if instant > now {
        thread::sleep(instant - now);
    }
}

/// The complete `\n`-terminated lines at the front of `input`, and the
/// bytes they use (the `\n` included).
pub(crate) fn lines(input: &[u8]) -> (Vec<String>, usize) {
    let (lines, used) = iomux::app::split_lines(input);
    let lines = lines
        .into_iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    (lines, used)
}
