//! Command-line parsing and the subcommands.

use clap::{CommandFactory, Parser, Subcommand};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::OnceLock;

mod bench;
mod bench_tls;
mod compare;
mod duration;
mod logger;
mod serve;

pub use duration::{parse_duration, parse_duration_up_to};

// The about text of `iomux --help` is the package description
// (cli/Cargo.toml), so the two cannot disagree.
#[derive(Parser, Debug)]
#[command(name = "iomux", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the multi-client TCP server.
    Serve(serve::ServeArgs),
    /// Load a server with many connections and measure it.
    Bench(bench::BenchArgs),
    /// Compare backends (and peer servers) under load, with a report.
    Compare(compare::CompareArgs),
}

/// Parses the command line, runs the subcommand, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 2; --help and --version print and exit 0.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let name = match &cli.command {
        Command::Serve(_) => "serve",
        Command::Bench(_) => "bench",
        Command::Compare(_) => "compare",
    };
    let _ = SUBCOMMAND.set(name);
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
    }
}

/// The subcommand being run, for [`usage_error`].
static SUBCOMMAND: OnceLock<&'static str> = OnceLock::new();

/// Prints `message` with the running subcommand's usage, as clap does for
/// a bad flag, and returns exit code 2.
pub fn usage_error(message: &str) -> i32 {
    let _ = usage_error_for(SUBCOMMAND.get().copied(), message).print();
    2
}

/// The error [`usage_error`] prints: `message` and the usage of
/// `subcommand` (`iomux bench [OPTIONS]`), or of `iomux` itself.
fn usage_error_for(subcommand: Option<&str>, message: &str) -> clap::Error {
    let mut cli = Cli::command();
    // Sets `iomux bench` as the subcommand's name in its usage line.
    cli.build();
    let kind = clap::error::ErrorKind::InvalidValue;
    match subcommand.and_then(|name| cli.find_subcommand_mut(name)) {
        Some(sub) => sub.error(kind, message),
        None => cli.error(kind, message),
    }
}

/// Checks before a run that the file `path` (the value of `flag`) can be
/// written, so that a long run does not fail only at its end: not a
/// directory, in a directory that exists, and openable for writing. It is
/// opened without truncating (what was there stays until the run writes),
/// and a file this check had to create is removed again.
pub fn check_writable_file(flag: &str, path: &Path) -> Result<(), String> {
    let cannot = |why: String| format!("{flag} {}: cannot write there: {why}", path.display());
    if path.is_dir() {
        return Err(cannot("it is a directory".into()));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| cannot(e.to_string()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Creates the directory `dir` (the value of `flag`) if need be and checks
/// that files can be created in it, before a run writes its results there.
pub fn check_writable_dir(flag: &str, dir: &Path) -> Result<(), String> {
    let cannot = |why: String| format!("{flag} {}: cannot write there: {why}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| cannot(e.to_string()))?;
    let probe = dir.join(format!(".iomux-write-check-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| cannot(e.to_string()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `HOST:PORT` (a name or an address; `[::1]:8888` for IPv6) to the
/// addresses it resolves to, in the resolver's order.
pub fn resolve(s: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if s.rsplit_once(':').is_none_or(|(host, _)| host.is_empty()) {
        return Err(format!("expected HOST:PORT, got '{s}'"));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{s}': {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("'{s}' resolves to no address"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_show_the_subcommand_usage() {
        for sub in ["bench", "serve", "compare"] {
            let text = usage_error_for(Some(sub), "--x is wrong")
                .render()
                .to_string();
            assert!(text.contains("--x is wrong"), "{text}");
            assert!(
                text.contains(&format!("Usage: iomux {sub} [OPTIONS]")),
                "{text}"
            );
        }
        let text = usage_error_for(None, "m").render().to_string();
        assert!(text.contains("Usage: iomux <COMMAND>"), "{text}");
    }

    #[test]
    fn output_paths_are_checked_before_a_run() {
        let dir = std::env::temp_dir().join(format!("iomux-writable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nested = dir.join("a/b");
        assert_eq!(check_writable_dir("--out", &nested), Ok(()));
        assert!(nested.is_dir());
        assert_eq!(
            std::fs::read_dir(&nested).unwrap().count(),
            0,
            "no probe left"
        );
        let file = nested.join("h.txt");
        assert_eq!(check_writable_file("--hist", &file), Ok(()));
        assert!(!file.exists(), "a file the check created is removed");
        std::fs::write(&file, "kept").unwrap();
        assert_eq!(check_writable_file("--hist", &file), Ok(()));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
        let e = check_writable_file("--hist", &nested).unwrap_err();
        assert!(e.contains("--hist") && e.contains("a directory"), "{e}");
        let e = check_writable_file("--hist", &dir.join("missing/h.txt")).unwrap_err();
        assert!(e.contains("cannot write there"), "{e}");
        let e = check_writable_dir("--out", &file.join("sub")).unwrap_err();
        assert!(e.contains("--out"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn addresses_and_host_names_resolve() {
        assert_eq!(
            resolve("127.0.0.1:8888").unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], 8888))]
        );
        assert_eq!(
            resolve("[::1]:8888").unwrap(),
            vec!["[::1]:8888".parse::<SocketAddr>().unwrap()]
        );
        let local = resolve("localhost:8888").unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8888),
            "{local:?}"
        );
        assert!(resolve("8888").is_err());
        assert!(resolve(":8888").is_err());
        assert!(resolve("localhost:notaport").is_err());
    }
}
