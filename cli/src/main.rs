//! The `iomux` command: a thin layer of flags over the library.

fn main() {
    std::process::exit(iomux_cli::main());
}
