//! `Addr` parsing: never panics, and what parses is written back as text
//! that reads as the same address.
#![no_main]

use iomux::Addr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(addr) = text.parse::<Addr>() {
        let written = addr.to_string();
        assert_eq!(
            written.parse::<Addr>().as_ref(),
            Ok(&addr),
            "{text:?} → {written:?}"
        );
    }
});
