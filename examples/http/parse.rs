//! The HTTP/1.1 request parser of the http example (RFC 9112): one request
//! off the front of the input, or "not yet", or the status a server owes.
//!
//! It depends on nothing but `std`, so the fuzzer and the property tests
//! include this file as it is. What it accepts:
//! - lines ending in CRLF or, as RFC 9112 §2.2 allows, a bare LF; a bare
//!   CR elsewhere is refused;
//! - empty lines before the request line (§2.2), ignored;
//! - `Content-Length` bodies; the same length repeated (as fields or as a
//!   list) counts once, two different lengths are a 400 (§6.3);
//! - `Connection: close` / `keep-alive` as tokens of a list; HTTP/1.0
//!   closes unless asked to keep alive.
//!
//! What it refuses, with the status: a head over [`MAX_HEAD`] bytes (431),
//! a body over [`MAX_BODY`] (413), `Transfer-Encoding` (501), a version
//! other than 1.0 or 1.1 (505), and anything malformed (400): a bad
//! request line, a field name that is not a token or has space before its
//! colon, an obsolete folded line, an HTTP/1.1 request with no `Host` or
//! with two (§3.2).
//!
//! Whatever way the bytes of a request are cut into reads, every strict
//! prefix of them is [`Parsed::Partial`] and the whole is the same
//! [`Parsed::Request`]; an input that is an error stays one however it
//! goes on.

/// Longest request head (request line, fields and the empty line that ends
/// them) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// Keep the connection open after the response.
    pub keep_alive: bool,
    pub body: &'a [u8],
}

/// What the front of the input holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request of `len` bytes.
    Request(Request<'a>, usize),
    /// Not a whole request yet.
    Partial,
    /// A request the server refuses: status and reason; the connection
    /// closes after the response.
    Error(u16, &'static str),
}

const BAD_REQUEST: Parsed<'static> = Parsed::Error(400, "Bad Request");

/// The lines of a head: each without its LF or CRLF, with where the next
/// starts. `None` from `next` past the last whole line.
struct Lines<'a> {
    input: &'a [u8],
    at: usize,
}

/// One line, or a line with a CR that is not part of its end.
enum Line<'a> {
    Text(&'a [u8]),
    BareCr,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let rest = self.input.get(self.at..)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.at += end + 1;
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Some(if line.contains(&b'\r') {
            Line::BareCr
        } else {
            Line::Text(line)
        })
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Optional whitespace (SP / HTAB) off both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The elements of a comma-separated field value, trimmed, empty ones
/// skipped (RFC 9110 §5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// A `Content-Length` value: digits, or a list of equal digit strings.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for element in list(value) {
        if !element.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(element).ok()?.parse::<u64>().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// The request line: method, target and whether the version keeps the
/// connection alive by default.
fn request_line(line: &[u8]) -> Result<(&str, &str, bool), Parsed<'static>> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD_REQUEST);
    };
    let visible = |s: &[u8]| !s.is_empty() && s.iter().all(|b| b.is_ascii_graphic());
    if !is_token(method) || !visible(target) {
        return Err(BAD_REQUEST);
    }
    let keep_alive = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Parsed::Error(505, "HTTP Version Not Supported"));
        }
        _ => return Err(BAD_REQUEST),
    };
    // Tokens and visible ASCII: valid UTF-8.
    let text = |s| std::str::from_utf8(s).map_err(|_| BAD_REQUEST);
    Ok((text(method)?, text(target)?, keep_alive))
}

/// Parses one request off the front of `input`.
pub fn parse(input: &[u8]) -> Parsed<'_> {
    let mut lines = Lines { input, at: 0 };
    // Empty lines before the request line are ignored, and count towards
    // the head's limit like any other.
    let first = loop {
        match lines.next() {
            Some(Line::Text(b"")) => continue,
            Some(Line::Text(line)) => break line,
            Some(Line::BareCr) => return BAD_REQUEST,
            None => return partial(input.len()),
        }
    };
    let (method, target, default_keep_alive) = match request_line(first) {
        Ok(parts) => parts,
        Err(refusal) => {
            // Judged only once the head is whole, so that what an input
            // parses as does not depend on where a read ended.
            return match head_end(&mut lines) {
                Some(_) => refusal,
                None => partial(input.len()),
            };
        }
    };
    let mut keep_alive = None;
    let mut length: Option<u64> = None;
    let mut hosts = 0;
    let mut refusal = None;
    let body_start = loop {
        let line = match lines.next() {
            None => return partial(input.len()),
            Some(Line::BareCr) => {
                refusal.get_or_insert(BAD_REQUEST);
                continue;
            }
            Some(Line::Text(line)) => line,
        };
        if line.is_empty() {
            break lines.at;
        }
        if refusal.is_some() {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            refusal = Some(BAD_REQUEST);
            continue;
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        // Also refuses obsolete line folding (a line starting with space)
        // and space before the colon (RFC 9112 §5.1, §5.2).
        if !is_token(name) {
            refusal = Some(BAD_REQUEST);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            match (content_length(value), length) {
                (None, _) => refusal = Some(BAD_REQUEST),
                (Some(n), Some(l)) if n != l => refusal = Some(BAD_REQUEST),
                (Some(n), _) => length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            refusal = Some(Parsed::Error(501, "Not Implemented"));
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = Some(false);
                } else if option.eq_ignore_ascii_case(b"keep-alive") && keep_alive.is_none() {
                    keep_alive = Some(true);
                }
            }
        }
    };
    if body_start > MAX_HEAD {
        return Parsed::Error(431, "Request Header Fields Too Large");
    }
    if let Some(refusal) = refusal {
        return refusal;
    }
    if hosts > 1 || (default_keep_alive && hosts == 0) {
        return BAD_REQUEST;
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY as u64 {
        return Parsed::Error(413, "Content Too Large");
    }
    let end = body_start + length as usize;
    let Some(body) = input.get(body_start..end) else {
        return Parsed::Partial;
    };
    let request = Request {
        method,
        target,
        keep_alive: keep_alive.unwrap_or(default_keep_alive),
        body,
    };
    Parsed::Request(request, end)
}

/// Reads the rest of a head; where its body starts, once it is whole.
fn head_end(lines: &mut Lines<'_>) -> Option<usize> {
    loop {
        if let Line::Text(b"") = lines.next()? {
            return Some(lines.at);
        }
    }
}

/// An unfinished head: wait for more, unless it is already too long.
fn partial(len: usize) -> Parsed<'static> {
    if len >= MAX_HEAD {
        // The head's last byte is still to come: it would end past the limit.
        Parsed::Error(431, "Request Header Fields Too Large")
    } else {
        Parsed::Partial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &[u8]) -> (Request<'_>, usize) {
        match parse(input) {
            Parsed::Request(r, n) => (r, n),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn status(input: &[u8]) -> u16 {
        match parse(input) {
            Parsed::Error(status, _) => status,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn parses_pipelined_requests_one_at_a_time() {
        let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET";
        let (first, n) = request(input);
        assert_eq!(
            (first.method, first.target, first.keep_alive),
            ("GET", "/", true)
        );
        let (second, m) = request(&input[n..]);
        assert_eq!(second.body, b"abc");
        assert_eq!(parse(&input[n + m..]), Parsed::Partial);
    }

    #[test]
    fn accepts_bare_lf_and_leading_empty_lines() {
        let (r, n) = request(b"\r\n\nGET /a HTTP/1.1\nHost: x\n\nrest");
        assert_eq!((r.method, r.target, n), ("GET", "/a", 28));
        let (r, _) = request(b"POST /echo HTTP/1.1\r\nHost: x\nContent-Length: 2\r\n\nhi");
        assert_eq!(r.body, b"hi");
    }

    #[test]
    fn content_length_repeated_counts_once_and_conflicting_is_refused() {
        let (r, _) = request(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        );
        assert_eq!(r.body, b"ab");
        let (r, _) = request(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na");
        assert_eq!(r.body, b"a");
        for conflict in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\nabc",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 1\r\n\r\nab",
        ] {
            assert_eq!(status(conflict), 400);
        }
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400, "no Host");
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n"), 400);
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(status(big.as_bytes()), 431);
        assert_eq!(status(&vec![b'a'; MAX_HEAD]), 431);
        let huge = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(status(huge.as_bytes()), 413);
        assert_eq!(
            status(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501
        );
    }

    #[test]
    fn connection_options_and_versions_decide_keep_alive() {
        assert!(!request(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            request(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !request(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn a_head_that_fits_exactly_is_accepted() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nX: \r\n\r\n";
        let pad = MAX_HEAD - head.len();
        let mut exact = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        exact.extend(std::iter::repeat_n(b'a', pad));
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(exact.len(), MAX_HEAD);
        assert_eq!(request(&exact).1, MAX_HEAD);
        assert_eq!(parse(&exact[..MAX_HEAD - 1]), Parsed::Partial);
    }
}
