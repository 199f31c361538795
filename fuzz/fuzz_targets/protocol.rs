//! The bench's reading of `--request` escapes and of replies under a
//! reply rule: never panics; an escaped form of any bytes reads back as
//! them; a reply's length lies inside what was read, every strict prefix
//! of a reply is "need more" (so no read boundary can fail a good reply),
//! and more bytes after it change nothing.
#![no_main]

use iomux_cli::protocol::{ReplyRule, reply_len, unescape};
use libfuzzer_sys::fuzz_target;

/// `bytes` written with `\xNN` for everything but printable ASCII.
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'\\' => "\\\\".to_string(),
            b' '..=b'~' => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [kind, arg, buf @ ..] = data else { return };
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(bytes) = unescape(text)
    {
        assert!(bytes.len() <= text.len());
    }
    assert_eq!(unescape(&escape(data)).as_deref(), Ok(data));
    let rule = match kind % 3 {
        0 if !buf.is_empty() => {
            ReplyRule::Until(buf[..buf.len().min(usize::from(arg % 4) + 1)].to_vec())
        }
        0 => return,
        1 => ReplyRule::Len(usize::from(*arg) + 1),
        _ => ReplyRule::Http,
    };
    // For `Until`, the delimiter is the front of `buf`: replies follow it.
    let replies = match &rule {
        ReplyRule::Until(delim) => &buf[delim.len()..],
        _ => buf,
    };
    if let Ok(Some(len)) = reply_len(&rule, replies) {
        assert!(
            len > 0 && len <= replies.len(),
            "{len} of {}",
            replies.len()
        );
        assert_eq!(
            reply_len(&rule, &replies[..len - 1]),
            Ok(None),
            "prefix of {len}"
        );
        assert_eq!(reply_len(&rule, &replies[..len]), Ok(Some(len)));
    }
});
