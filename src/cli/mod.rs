//! Command-line parsing and the subcommands.

use clap::{Parser, Subcommand};

mod bench;
mod compare;
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

/// Prints usage-style error and returns exit code 2.
pub fn usage_error(message: &str) -> i32 {
    eprintln!("error: {message}\n\nFor more information, try '--help'.");
    2
}
