//! The `iomux` command's code: the ready apps of `serve`, the load
//! generator and report of `bench` and `compare`, and the flags over them.
//! A library only so that its tests can reach the apps; the command is
//! `src/main.rs`.

pub mod apps;
mod bench;
mod cli;
mod compare;
mod tls;

pub use bench::protocol;
pub use cli::main;
