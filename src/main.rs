//! The `iomux` command: a thin layer of flags over the library.

mod bench;
mod cli;

fn main() {
    std::process::exit(cli::main());
}
