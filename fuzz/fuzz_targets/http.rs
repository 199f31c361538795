//! The http example's request parser: never panics, uses only its input,
//! every strict prefix of a request is partial, and a result at the front
//! does not change with what follows.
#![no_main]

#[path = "../../examples/http/parse.rs"]
#[allow(dead_code)]
mod parse;

use libfuzzer_sys::fuzz_target;
use parse::{Parsed, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parsed::Request(_, len) => {
            assert!(len > 0 && len <= data.len());
            assert_eq!(parse(&data[..len - 1]), Parsed::Partial);
            assert_eq!(parse(&data[..len]), parse(data));
        }
        Parsed::Error(status, _) => assert!((400..600).contains(&status)),
        Parsed::Partial => {
            // Whatever the cut, a partial input has no settled prefix.
            if let Some(cut) = data.len().checked_sub(1) {
                assert_eq!(parse(&data[..cut]), Parsed::Partial);
            }
        }
    }
});
