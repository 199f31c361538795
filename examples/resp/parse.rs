//! The RESP2 request parser of the resp example: one command off the
//! front of the input, in multi-bulk (`*N` then `$LEN` bulk strings) or
//! inline form (words on a line), as Redis reads them.
//!
//! It depends on nothing but `std`, so the fuzzer and the property tests
//! include this file as it is. Like Redis: an inline line ends at LF, with
//! or without CR, and may be at most [`MAX_INLINE`] bytes; `*0` and
//! negative counts are an empty command (no reply); at most [`MAX_ARGS`]
//! arguments of at most [`MAX_BULK`] bytes each. Every strict prefix of a
//! whole command is [`Parsed::Partial`], however the reads cut it.

/// Most arguments in one command.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;
/// Longest bulk string (Redis's default `proto-max-bulk-len`).
pub const MAX_BULK: usize = 512 << 20;

/// What the front of the input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command (its arguments) of `len` bytes.
    Command(Vec<Vec<u8>>, usize),
    /// Not a whole command yet.
    Partial,
    /// Not RESP: answer the error, then close (as Redis does).
    Error(String),
}

/// A protocol error, answered as Redis words it.
fn protocol_error(what: &str) -> Parsed {
    Parsed::Error(format!("Protocol error: {what}"))
}

/// An unfinished line without a CR that may be the first half of its
/// CRLF: a line of exactly the limit is accepted however reads cut it.
fn without_cr(tail: &[u8]) -> &[u8] {
    tail.strip_suffix(b"\r").unwrap_or(tail)
}

/// Splits one `\r\n`-terminated line off `input[at..]`: the line and where
/// the next starts; an error once the line is longer than any header.
fn line(input: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Parsed> {
    let rest = input.get(at..).unwrap_or_default();
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_INLINE => Ok(Some((&rest[..end], at + end + 2))),
        // A CR at the end may be the first half of the CRLF.
        None if without_cr(rest).len() <= MAX_INLINE => Ok(None),
        _ => Err(protocol_error("too big count string")),
    }
}

/// `*N` / `$N` headers: a prefix byte and a decimal number.
fn number(line: &[u8], prefix: u8) -> Result<i64, Parsed> {
    let kind = if prefix == b'*' { "multibulk" } else { "bulk" };
    let Some(digits) = line.strip_prefix(&[prefix]) else {
        let got = line
            .first()
            .map_or(String::new(), |&b| (b as char).to_string());
        return Err(protocol_error(&format!(
            "expected '{}', got '{got}'",
            prefix as char
        )));
    };
    std::str::from_utf8(digits)
        .ok()
        .filter(|s| !s.starts_with('+'))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| protocol_error(&format!("invalid {kind} length")))
}

/// Parses an inline command: words on a line that ends at LF.
fn inline(input: &[u8]) -> Parsed {
    let Some(end) = input.iter().position(|&b| b == b'\n') else {
        return if without_cr(input).len() > MAX_INLINE {
            protocol_error("too big inline request")
        } else {
            Parsed::Partial
        };
    };
    let text = &input[..end];
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    if text.len() > MAX_INLINE {
        return protocol_error("too big inline request");
    }
    let args = text
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Parsed::Command(args, end + 1)
}

/// Parses one command off the front of `input`.
pub fn parse(input: &[u8]) -> Parsed {
    match multibulk(input) {
        Ok(parsed) | Err(parsed) => parsed,
    }
}

fn multibulk(input: &[u8]) -> Result<Parsed, Parsed> {
    if input.first() != Some(&b'*') {
        return Ok(inline(input));
    }
    let Some((header, mut at)) = line(input, 0)? else {
        return Ok(Parsed::Partial);
    };
    let count = match number(header, b'*')? {
        n if n <= 0 => 0, // an empty command, as Redis reads it
        n if n <= MAX_ARGS as i64 => n as usize,
        _ => return Err(protocol_error("invalid multibulk length")),
    };
    let mut args = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let Some((header, start)) = line(input, at)? else {
            return Ok(Parsed::Partial);
        };
        let len = match number(header, b'$')? {
            n if (0..=MAX_BULK as i64).contains(&n) => n as usize,
            _ => return Err(protocol_error("invalid bulk length")),
        };
        let end = start + len;
        match input.get(end..end + 2) {
            None => return Ok(Parsed::Partial),
            Some(b"\r\n") => {}
            Some(_) => return Err(protocol_error("bad bulk terminator")),
        }
        args.push(input[start..end].to_vec());
        at = end + 2;
    }
    Ok(Parsed::Command(args, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multibulk_and_inline_commands() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n*1\r\n$4\r\nPI";
        let Parsed::Command(args, n) = parse(input) else {
            panic!("{:?}", parse(input))
        };
        assert_eq!(
            args,
            vec![b"SET".to_vec(), b"k".to_vec(), b"hello".to_vec()]
        );
        let Parsed::Command(inline, m) = parse(&input[n..]) else {
            panic!()
        };
        assert_eq!(inline, vec![b"PING".to_vec()]);
        assert_eq!(parse(&input[n + m..]), Parsed::Partial);
        assert!(matches!(parse(b"*x\r\n"), Parsed::Error(_)));
        assert!(matches!(parse(b"*1\r\n$1\r\nab\r\n"), Parsed::Error(_)));
    }

    #[test]
    fn reads_like_redis_at_the_edges() {
        assert_eq!(
            parse(b"PING\nx"),
            Parsed::Command(vec![b"PING".to_vec()], 5)
        );
        assert_eq!(parse(b"*0\r\nPING"), Parsed::Command(vec![], 4));
        assert_eq!(parse(b"*-1\r\n"), Parsed::Command(vec![], 5));
        assert_eq!(parse(b"  \r\n"), Parsed::Command(vec![], 4));
        let error = |input: &[u8]| match parse(input) {
            Parsed::Error(e) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            error(b"*1\r\n+x\r\n"),
            "Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            error(b"*+1\r\n"),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            error(b"*2000000\r\n"),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            error(b"*1\r\n$-1\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            error(b"*1\r\n$600000000\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert!(error(&vec![b'a'; MAX_INLINE + 1]).contains("too big inline"));
        let mut long = vec![b'*'; MAX_INLINE + 2];
        long.extend_from_slice(b"\r\n");
        assert!(error(&long).contains("too big"));
        assert_eq!(parse(&vec![b'a'; MAX_INLINE]), Parsed::Partial);
        assert_eq!(parse(b"*1\r\n$3\r\nabc\r"), Parsed::Partial);
    }
}
