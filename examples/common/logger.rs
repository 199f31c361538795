//! The examples' logger. The library and the examples report through the
//! `log` facade, which prints nothing until a logger is installed: this
//! one writes each record to stderr as one line, `LEVEL target: message`.
//!
//! The level comes from `RUST_LOG`: one of `error`, `warn`, `info`,
//! `debug`, `trace`, `off`, `warn` when unset, so warnings show by
//! default and `RUST_LOG=info` adds a line per connection. (Only a plain
//! level: per-module filters are more than an example needs.)
//!
//! Each example includes this file with `#[path]`, since examples share no
//! crate; the `iomux` command's logger is not reused because it prints the
//! server's own format and lives in the command's crate, which the
//! library's examples do not depend on.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            // One write per line, so lines from threads do not interleave;
            // a closed stderr is not worth a panic.
            let line = format!(
                "{} {}: {}\n",
                record.level(),
                record.target(),
                record.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// The level a `RUST_LOG` value asks for, or why it is not one.
pub fn level(value: Option<&str>) -> Result<LevelFilter, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(LevelFilter::Warn),
        Some(name) => name.parse().map_err(|_| {
            format!("RUST_LOG={name}: not a level (error, warn, info, debug, trace, off)")
        }),
    }
}

/// Installs the logger at the level `RUST_LOG` asks for (a value that is
/// not a level is said once, and `warn` used). Later calls change nothing.
pub fn install() {
    static LOGGER: Stderr = Stderr;
    let value = std::env::var("RUST_LOG").ok();
    let level = level(value.as_deref()).unwrap_or_else(|why| {
        eprintln!("{why}; using warn");
        LevelFilter::Warn
    });
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_names_a_level() {
        assert_eq!(level(None), Ok(LevelFilter::Warn));
        assert_eq!(level(Some("")), Ok(LevelFilter::Warn));
        assert_eq!(level(Some("info")), Ok(LevelFilter::Info));
        assert_eq!(level(Some("DEBUG")), Ok(LevelFilter::Debug));
        assert_eq!(level(Some("off")), Ok(LevelFilter::Off));
        assert!(level(Some("iomux=debug")).is_err());
    }
}
