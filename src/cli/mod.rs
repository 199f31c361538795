//! Command-line parsing and the subcommands.

use clap::{CommandFactory, Parser, Subcommand};
use std::time::Duration;

mod bench;
mod compare;
mod logger;
mod serve;

/// iomux: one thread, many sockets — select, poll and epoll side by side.
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
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Compare(args) => compare::run(args),
    }
}

/// Prints `message` with the usage, as clap does for a bad flag, and
/// returns exit code 2.
pub fn usage_error(message: &str) -> i32 {
    let error = Cli::command().error(clap::error::ErrorKind::InvalidValue, message);
    let _ = error.print();
    2
}

/// Seconds from the command line as a duration, refusing nonsense.
pub fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    if value.is_finite() && (0.0..=86_400.0).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "{flag} must be between 0 and 86400 seconds, got {value}"
        ))
    }
}
