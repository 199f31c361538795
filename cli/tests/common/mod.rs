//! The library's test helpers (`tests/common`), and the command's own: a
//! running `iomux` child ([`child`]).

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

#[macro_use]
#[path = "../../../tests/common/mod.rs"]
mod shared;
mod child;

pub use child::*;
pub use shared::*;
