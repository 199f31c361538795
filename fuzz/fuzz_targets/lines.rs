//! The line framer (chat, hash) and hash's request parser: the same
//! frames whether the bytes come in one read or cut into many (the first
//! input bytes choose the cuts and the limit), never more buffered than an
//! unfinished line within the limit; requests never panic.
#![no_main]

use iomux::app::{Frame, LineFramer};
use iomux_cli::apps::parse_request;
use libfuzzer_sys::fuzz_target;

/// Frames of `reads`, run as the loop runs an app: each read appended to
/// what was not consumed, offered again until a call consumes nothing.
fn frames(reads: &[&[u8]], max: usize) -> Vec<Option<Vec<u8>>> {
    let mut framer = LineFramer::default();
    let mut buffered = Vec::new();
    let mut out = Vec::new();
    for read in reads {
        buffered.extend_from_slice(read);
        loop {
            let mut frames = framer.frames(&buffered, max);
            let before = out.len();
            for frame in frames.by_ref() {
                out.push(match frame {
                    Frame::Line(line) => {
                        assert!(line.len() <= max && !line.contains(&b'\n'));
                        if let Ok(request) = parse_request(line) {
                            assert!(request.text.len() < line.len());
                        }
                        Some(line.to_vec())
                    }
                    Frame::TooLong => None,
                });
            }
            let used = frames.consumed();
            assert!(used <= buffered.len());
            buffered.drain(..used);
            if used == 0 && out.len() == before {
                break;
            }
        }
        assert!(buffered.len() <= max + 1, "{} bytes kept", buffered.len());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [max, cuts @ ..] = data else { return };
    let max = usize::from(*max % 64);
    let split = cuts.len().min(8);
    let (sizes, stream) = cuts.split_at(split);
    let mut reads = Vec::new();
    let mut at = 0;
    for &size in sizes {
        let end = (at + usize::from(size)).min(stream.len());
        reads.push(&stream[at..end]);
        at = end;
    }
    reads.push(&stream[at..]);
    assert_eq!(frames(&reads, max), frames(&[stream], max));
});
