//! The resp example's command parser: never panics, uses only its input,
//! every strict prefix of a command is partial, and a result at the front
//! does not change with what follows.
#![no_main]

#[path = "../../examples/resp/parse.rs"]
#[allow(dead_code)]
mod parse;

use libfuzzer_sys::fuzz_target;
use parse::{Parsed, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parsed::Command(_, len) => {
            assert!(len > 0 && len <= data.len());
            assert_eq!(parse(&data[..len - 1]), Parsed::Partial);
            assert_eq!(parse(&data[..len]), parse(data));
        }
        Parsed::Error(message) => assert!(message.starts_with("Protocol error: ")),
        Parsed::Partial => {
            if let Some(cut) = data.len().checked_sub(1) {
                assert_eq!(parse(&data[..cut]), Parsed::Partial);
            }
        }
    }
});
