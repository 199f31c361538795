//! The library's log lines.

use crate::prelude::*;

pub(crate) struct Capture;

pub(crate) static CAPTURED: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
pub(crate) static CAPTURE: Capture = Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("iomux")
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            CAPTURED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((record.target().to_string(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per process: every test that reads
/// log lines calls this first).
pub(crate) fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Where the captured log is now: lines after it were logged later.
pub(crate) fn log_mark() -> usize {
    CAPTURED.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Whether the close reason `why` was logged for `peer` (a line `PEER: WHY`
/// of target `iomux::conn`) after `mark`. The loop logs it before
/// `on_close`, so once the journal shows the close it is there. A client
/// port is reused by later tests of this process (and may be by a
/// concurrent one towards another loop), hence the mark, and a search
/// rather than asking for the only line.
pub(crate) fn logged_reason(mark: usize, peer: SocketAddr, why: &str) -> bool {
    let line = format!("{peer}: {why}");
    CAPTURED.lock().unwrap_or_else(|e| e.into_inner())[mark..]
        .iter()
        .any(|(target, l)| target == "iomux::conn" && *l == line)
}

/// The `iomux::conn` lines about `peer`, for failure messages.
pub(crate) fn conn_lines(peer: SocketAddr) -> Vec<String> {
    let peer = peer.to_string();
    CAPTURED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(target, line)| target == "iomux::conn" && line.contains(&peer))
        .map(|(_, line)| line.clone())
        .collect()
}
