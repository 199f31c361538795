//! The command line's logger: the library reports through `log`; this
//! prints its records on stderr as one line each, in the server's format
//! (`iomux: connect ADDR`, `stall: ...`, `stats: ...`).

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr {
    /// `-q`: no per-connection lines.
    quiet: bool,
}

/// The prefix of a line for records of `target`.
fn prefix(target: &str) -> &'static str {
    match target {
        "iomux::stall" => "stall",
        "iomux::stats" => "stats",
        _ => "iomux",
    }
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Info && !(self.quiet && metadata.target() == "iomux::conn")
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write per line, so lines from threads do not interleave;
            // a closed stderr is not worth a panic.
            let line = format!("{}: {}\n", prefix(record.target()), record.args());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger once; later calls change nothing.
pub fn install(quiet: bool) {
    // Lives as long as the process, as a logger must.
    let logger: &'static Stderr = Box::leak(Box::new(Stderr { quiet }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_the_server_format() {
        assert_eq!(prefix("iomux::conn"), "iomux");
        assert_eq!(prefix("iomux::accept"), "iomux");
        assert_eq!(prefix("iomux::stall"), "stall");
        assert_eq!(prefix("iomux::stats"), "stats");
        let quiet = Stderr { quiet: true };
        let conn = Metadata::builder()
            .level(Level::Info)
            .target("iomux::conn")
            .build();
        let stall = Metadata::builder()
            .level(Level::Warn)
            .target("iomux::stall")
            .build();
        assert!(!quiet.enabled(&conn), "-q hides connection lines");
        assert!(quiet.enabled(&stall), "but not stalls");
        assert!(Stderr { quiet: false }.enabled(&conn));
    }
}
