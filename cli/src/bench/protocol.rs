//! Any protocol: the bytes of `--request` and the rule that says where a
//! reply ends (`--reply-until`, `--reply-len`, `--mode http`).
//!
//! With its own protocols the bench knows every reply byte for byte. Here
//! it knows only how replies are framed, so it measures any server that
//! answers one reply per request (a line protocol, RESP, HTTP/1.1
//! keep-alive) the way wrk and redis-benchmark do: the check is the
//! framing, not the content.
//!
//! Both functions are pure and total: they read only their arguments,
//! never panic, and never overflow, whatever bytes they are given (a
//! server's replies are untrusted input, and fuzzers call them directly).

/// The reply rule: how the bench finds where one reply ends and the next
/// begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyRule {
    /// A reply ends with the first occurrence of these bytes (`\r\n` for
    /// RESP simple replies, `\n` for a line protocol).
    Until(Vec<u8>),
    /// Every reply is exactly this many bytes.
    Len(usize),
    /// An HTTP/1.1 response, its length from its head: `Content-Length`,
    /// `Transfer-Encoding: chunked`, or no body (1xx, 204, 304).
    Http,
}

impl std::fmt::Display for ReplyRule {
    /// The rule as the report names it: `until '\r\n'`, `length 65`,
    /// `http`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyRule::Until(delim) => write!(f, "until '{}'", delim.escape_ascii()),
            ReplyRule::Len(n) => write!(f, "length {n}"),
            ReplyRule::Http => f.write_str("http"),
        }
    }
}

/// The longest response head (status line and fields) or chunked trailer
/// section [`reply_len`] waits for before it calls the reply malformed; the
/// http example, nginx and Node refuse request heads far smaller.
pub const MAX_HEAD: usize = 64 * 1024;

/// The longest chunk-size line (the size and its extensions).
pub const MAX_CHUNK_LINE: usize = 4096;

/// `text` with its escapes replaced: `\r`, `\n`, `\t`, `\\` and `\xNN`
/// (exactly two hex digits, any byte). Everything else is taken as it is,
/// UTF-8 included.
///
/// # Errors
/// Any other backslash sequence, a trailing backslash, or `\x` without two
/// hex digits, named in the message.
pub fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            let mut utf8 = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            continue;
        }
        let escape = match chars.next() {
            None => {
                return Err(format!(
                    "a trailing backslash at byte {at} (write \\\\ for a backslash)"
                ));
            }
            Some((_, e)) => e,
        };
        let byte = match escape {
            'r' => b'\r',
            'n' => b'\n',
            't' => b'\t',
            '\\' => b'\\',
            'x' => {
                let digits: String = chars.clone().take(2).map(|(_, d)| d).collect();
                let value = match digits.as_bytes() {
                    [hi, lo] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                        u8::from_str_radix(&digits, 16).ok()
                    }
                    _ => None,
                };
                let Some(value) = value else {
                    return Err(format!(
                        "'\\x{digits}' at byte {at}: \\x takes exactly two hex digits (\\x00 to \\xff)"
                    ));
                };
                chars.nth(1);
                value
            }
            other => {
                return Err(format!(
                    "unknown escape '\\{other}' at byte {at} (the escapes are \\r \\n \\t \\\\ and \\xNN)"
                ));
            }
        };
        out.push(byte);
    }
    Ok(out)
}

/// Where the first complete reply in `buf` ends under `rule`:
/// `Ok(Some(n))` when it is `buf[..n]` (`n` is at least 1 and at most
/// `buf.len()`), `Ok(None)` when more bytes are needed to know.
///
/// # Errors
/// The rule is unusable (an empty delimiter, a length of 0), or the reply
/// is malformed. For [`ReplyRule::Http`]: a bad status line or field line,
/// a bad or conflicting `Content-Length`, `Transfer-Encoding` beside
/// `Content-Length`, a bad chunk size or chunk end, a head (or trailer
/// section) over [`MAX_HEAD`] bytes, a 101 (the connection would change
/// protocol), or a response with neither a length nor chunked coding: its
/// body would run to the end of the connection, which a keep-alive bench
/// cannot measure.
pub fn reply_len(rule: &ReplyRule, buf: &[u8]) -> Result<Option<usize>, String> {
    match rule {
        ReplyRule::Until(delim) => {
            if delim.is_empty() {
                return Err("an empty reply delimiter".into());
            }
            Ok(find(buf, delim).map(|at| at + delim.len()))
        }
        ReplyRule::Len(0) => Err("a reply length of 0".into()),
        ReplyRule::Len(n) => Ok((buf.len() >= *n).then_some(*n)),
        ReplyRule::Http => http_len(buf),
    }
}

/// Where `needle` (not empty) first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    (0..=last_start).find(|&i| hay[i] == first && hay[i + 1..].starts_with(rest))
}

/// At most 80 bytes of `bytes`, printable, for a message.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(80)];
    let more = if bytes.len() > cut.len() { "..." } else { "" };
    format!("{}{more}", cut.escape_ascii())
}

/// The line of `buf` starting at `start`: where its content ends (before
/// CR LF, or a bare LF, which RFC 9112 §2.2 lets a recipient accept) and
/// where the next line starts; `None` while its LF has not arrived.
fn line(buf: &[u8], start: usize) -> Option<(usize, usize)> {
    let lf = start + buf.get(start..)?.iter().position(|&b| b == b'\n')?;
    let end = if lf > start && buf.get(lf - 1) == Some(&b'\r') {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// A line's content, refusing a bare CR inside it (RFC 9112 §2.2).
fn content<'a>(buf: &'a [u8], start: usize, end: usize, what: &str) -> Result<&'a [u8], String> {
    let l = buf.get(start..end).unwrap_or_default();
    if l.contains(&b'\r') {
        return Err(format!("a bare CR in the {what} '{}'", show(l)));
    }
    Ok(l)
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    /// No body whatever the fields say (1xx, 204, 304).
    Empty,
    Length(usize),
    Chunked,
}

/// One response head, parsed up to its empty line.
struct Head {
    status: u16,
    body: Body,
    /// Bytes of the head, its empty line included.
    len: usize,
}

/// HTTP/1.1 responses: interim 1xx heads are skipped (the reply is the
/// final response after them), then the body is measured.
fn http_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut start = 0;
    loop {
        let rest = buf.get(start..).unwrap_or_default();
        let Some(head) = parse_head(rest)? else {
            return Ok(None);
        };
        let body_start = start + head.len;
        match head.body {
            Body::Empty if (100..200).contains(&head.status) => start = body_start,
            Body::Empty => return Ok(Some(body_start)),
            Body::Length(n) => {
                let end = body_start
                    .checked_add(n)
                    .ok_or_else(|| format!("a Content-Length too large ({n})"))?;
                return Ok((buf.len() >= end).then_some(end));
            }
            Body::Chunked => return chunked_len(buf, body_start),
        }
    }
}

/// The head at the start of `buf`, or `None` until its empty line arrives.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let too_large = || format!("a response head over {MAX_HEAD} bytes");
    let wait = || {
        if buf.len() > MAX_HEAD {
            Err(too_large())
        } else {
            Ok(None)
        }
    };
    let Some((end, mut next)) = line(buf, 0) else {
        return wait();
    };
    let status = status_code(content(buf, 0, end, "status line")?)?;
    let mut length: Option<usize> = None;
    let mut chunked: Option<bool> = None;
    loop {
        if next > MAX_HEAD {
            return Err(too_large());
        }
        let start = next;
        let Some((end, after)) = line(buf, start) else {
            return wait();
        };
        next = after;
        let field = content(buf, start, end, "response head")?;
        if field.is_empty() {
            break;
        }
        let (name, value) = field_line(field)?;
        if name.eq_ignore_ascii_case(b"content-length") {
            length = Some(content_length(value, length)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Several fields are one list; the last coding decides.
            let last = value
                .split(|&b| b == b',')
                .map(|c| c.trim_ascii())
                .rfind(|c| !c.is_empty());
            match last {
                Some(c) => chunked = Some(c.eq_ignore_ascii_case(b"chunked")),
                None => chunked = chunked.or(Some(false)),
            }
        }
    }
    let body = match (status, chunked, length) {
        (101, ..) => {
            return Err("101 Switching Protocols: the connection leaves HTTP".into());
        }
        (100..=199 | 204 | 304, ..) => Body::Empty,
        (_, Some(_), Some(_)) => {
            return Err(
                "both Transfer-Encoding and Content-Length (RFC 9112 §6.3: a smuggling risk)"
                    .into(),
            );
        }
        (_, Some(true), None) => Body::Chunked,
        (_, Some(false), None) => {
            return Err(format!(
                "a {status} response whose Transfer-Encoding does not end in chunked: its body \
                 runs to the end of the connection, which a keep-alive bench cannot measure"
            ));
        }
        (_, None, Some(n)) => Body::Length(n),
        (_, None, None) => {
            return Err(format!(
                "a {status} response with neither Content-Length nor chunked Transfer-Encoding: \
                 its body runs to the end of the connection, which a keep-alive bench cannot \
                 measure"
            ));
        }
    };
    Ok(Some(Head {
        status,
        body,
        len: next,
    }))
}

/// `HTTP/d.d SP 3DIGIT [SP reason]` to its status code (100 to 599).
fn status_code(l: &[u8]) -> Result<u16, String> {
    let bad = || format!("a bad status line '{}'", show(l));
    let rest = l.strip_prefix(b"HTTP/").ok_or_else(bad)?;
    let (code, reason) = match rest {
        [major, b'.', minor, b' ', a, b, c, reason @ ..]
            if major.is_ascii_digit()
                && minor.is_ascii_digit()
                && [a, b, c].iter().all(|d| d.is_ascii_digit()) =>
        {
            let code = [a, b, c]
                .iter()
                .fold(0u16, |n, &&d| n * 10 + u16::from(d - b'0'));
            (code, reason)
        }
        _ => return Err(bad()),
    };
    if !(reason.is_empty() || reason.starts_with(b" ")) {
        return Err(bad());
    }
    if !(100..=599).contains(&code) {
        return Err(format!("a status code out of range ({code})"));
    }
    Ok(code)
}

/// `name: value` to its name and its value without surrounding spaces.
fn field_line(l: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if l.starts_with(b" ") || l.starts_with(b"\t") {
        return Err(format!(
            "an obsolete folded field line '{}' (RFC 9112 §5.2)",
            show(l)
        ));
    }
    let colon = l
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("a field line without a colon '{}'", show(l)))?;
    let (name, value) = (&l[..colon], &l[colon + 1..]);
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if name.is_empty() || !name.iter().all(tchar) {
        return Err(format!("a bad field name in '{}'", show(l)));
    }
    Ok((name, value.trim_ascii()))
}

/// A `Content-Length` value (`42`, or a list of one repeated value,
/// `42, 42`), against the one seen before, if any.
fn content_length(value: &[u8], before: Option<usize>) -> Result<usize, String> {
    let mut seen = before;
    for item in value.split(|&b| b == b',').map(|v| v.trim_ascii()) {
        let bad = || format!("a bad Content-Length '{}'", show(value));
        if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let n = item.iter().try_fold(0usize, |n, &d| {
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        });
        let n = n.ok_or_else(|| format!("a Content-Length too large ('{}')", show(item)))?;
        match seen {
            Some(m) if m != n => {
                return Err(format!("conflicting Content-Length values {m} and {n}"));
            }
            _ => seen = Some(n),
        }
    }
    seen.ok_or_else(|| "an empty Content-Length".into())
}

/// A chunked body starting at `pos` (RFC 9112 §7.1): chunks, the last
/// chunk, a trailer section and its empty line. Where it ends.
fn chunked_len(buf: &[u8], mut pos: usize) -> Result<Option<usize>, String> {
    loop {
        let Some((end, next)) = line(buf, pos) else {
            if buf.len() - pos.min(buf.len()) > MAX_CHUNK_LINE {
                return Err(format!("a chunk-size line over {MAX_CHUNK_LINE} bytes"));
            }
            return Ok(None);
        };
        if next - pos > MAX_CHUNK_LINE {
            return Err(format!("a chunk-size line over {MAX_CHUNK_LINE} bytes"));
        }
        let size = chunk_size(content(buf, pos, end, "chunk-size line")?)?;
        pos = next;
        if size == 0 {
            break;
        }
        let data_end = pos
            .checked_add(size)
            .ok_or_else(|| format!("a chunk too large ({size} bytes)"))?;
        match buf.get(data_end..) {
            None | Some([] | [b'\r']) => return Ok(None),
            Some([b'\r', b'\n', ..]) => pos = data_end + 2,
            Some([b'\n', ..]) => pos = data_end + 1,
            Some(other) => {
                return Err(format!(
                    "chunk data not followed by CRLF (a chunk of {size} bytes, then '{}')",
                    show(&other[..other.len().min(16)])
                ));
            }
        }
    }
    let trailers = pos;
    loop {
        let Some((end, next)) = line(buf, pos) else {
            if buf.len() - trailers.min(buf.len()) > MAX_HEAD {
                return Err(format!("a trailer section over {MAX_HEAD} bytes"));
            }
            return Ok(None);
        };
        if next - trailers > MAX_HEAD {
            return Err(format!("a trailer section over {MAX_HEAD} bytes"));
        }
        let field = content(buf, pos, end, "trailer section")?;
        if field.is_empty() {
            return Ok(Some(next));
        }
        field_line(field)?;
        pos = next;
    }
}

/// A chunk-size line: hex digits, then nothing or `;` extensions (with
/// optional spaces before them, RFC 9112's BWS).
fn chunk_size(l: &[u8]) -> Result<usize, String> {
    let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let bad = || format!("a bad chunk size '{}'", show(l));
    if digits == 0 {
        return Err(bad());
    }
    let ext = l[digits..].trim_ascii_start();
    if !(ext.is_empty() || ext.starts_with(b";")) {
        return Err(bad());
    }
    l[..digits]
        .iter()
        .try_fold(0usize, |n, &d| {
            let v = (d as char).to_digit(16)? as usize;
            n.checked_mul(16)?.checked_add(v)
        })
        .ok_or_else(|| format!("a chunk size too large ('{}')", show(&l[..digits])))
}

#[cfg(test)]
mod tests;
