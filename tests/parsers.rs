//! Property tests of every parser that reads untrusted bytes: the line
//! framer of line protocols, the http and resp examples' request parsers
//! (included as they are, from their own files) and `Addr` parsing.
//!
//! Each parser's promises: it never panics; what it says it used lies
//! inside its input; every strict prefix of a whole request is "not yet";
//! an error stays one however the input goes on; and the result does not
//! depend on how reads cut the bytes. The fuzzers in `fuzz/` check the
//! same promises with coverage guidance, for longer.

#[path = "../examples/http/parse.rs"]
#[allow(dead_code)]
mod http;
#[path = "../examples/resp/parse.rs"]
#[allow(dead_code)]
mod resp;

use iomux::Addr;
use iomux::app::{Frame, LineFramer};
use proptest::prelude::*;

/// A stream cut into reads of the given sizes (the last read takes the
/// rest).
fn cut<'a>(bytes: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut reads = Vec::new();
    let mut at = 0;
    for &size in sizes {
        if at >= bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        reads.push(&bytes[at..end]);
        at = end;
    }
    if at < bytes.len() {
        reads.push(&bytes[at..]);
    }
    reads
}

/// Bytes from a small alphabet, so that separators are common.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(&b"ab\r\n \x00"[..]), 0..200)
}

fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..40, 0..20)
}

/// A framed line as the reference model writes it.
#[derive(Debug, PartialEq, Eq)]
enum Owned {
    Line(Vec<u8>),
    TooLong,
}

/// What the framer must give for the whole stream: each `\n`-terminated
/// line without a `\r` before its `\n`, or `TooLong` past `max`; an
/// unfinished last line is `TooLong` once it is over `max` (a trailing
/// `\r` not counted), and nothing otherwise.
fn model_frames(stream: &[u8], max: usize) -> Vec<Owned> {
    let mut frames = Vec::new();
    let mut pieces = stream.split(|&b| b == b'\n').peekable();
    while let Some(piece) = pieces.next() {
        let piece = piece.strip_suffix(b"\r").unwrap_or(piece);
        let finished = pieces.peek().is_some();
        if piece.len() > max {
            frames.push(Owned::TooLong);
        } else if finished {
            frames.push(Owned::Line(piece.to_vec()));
        }
    }
    frames
}

/// Runs the framer as the loop would: each read is appended to what the
/// last call did not consume, and the buffer is offered again until a
/// call consumes nothing.
fn framed_by_reads(reads: &[&[u8]], max: usize) -> (Vec<Owned>, usize) {
    let mut framer = LineFramer::default();
    let mut buffered = Vec::new();
    let mut frames = Vec::new();
    for read in reads {
        buffered.extend_from_slice(read);
        loop {
            let mut iter = framer.frames(&buffered, max);
            let mut got = 0;
            for frame in iter.by_ref() {
                got += 1;
                frames.push(match frame {
                    Frame::Line(line) => Owned::Line(line.to_vec()),
                    Frame::TooLong => Owned::TooLong,
                });
            }
            let used = iter.consumed();
            assert!(used <= buffered.len());
            buffered.drain(..used);
            if used == 0 && got == 0 {
                break;
            }
        }
    }
    (frames, buffered.len())
}

proptest! {
    #[test]
    fn the_framer_gives_the_models_lines_however_reads_cut_them(
        stream in line_bytes(),
        sizes in read_sizes(),
        max in 0usize..12,
    ) {
        let reads = cut(&stream, &sizes);
        let (frames, buffered) = framed_by_reads(&reads, max);
        prop_assert_eq!(frames, model_frames(&stream, max));
        // Never more than an unfinished line within the limit is kept.
        prop_assert!(buffered <= max + 1, "{} bytes kept", buffered);
    }
}

/// A valid request, and its parts to check the parser's result against.
#[derive(Debug, Clone)]
struct HttpRequest {
    bytes: Vec<u8>,
    method: String,
    target: String,
    body: Vec<u8>,
    keep_alive: bool,
}

fn http_request() -> impl Strategy<Value = HttpRequest> {
    (
        prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "X-Custom"]),
        "/[a-z0-9/?=&%.-]{0,30}",
        prop::collection::vec(any::<u8>(), 0..64),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,20}"), 0..4),
        any::<bool>(), // bare LF line ends
        prop::option::of(prop::sample::select(vec!["close", "keep-alive"])),
        0usize..3, // empty lines before the request line
    )
        .prop_map(
            |(method, target, body, version, fields, bare_lf, connection, leading)| {
                let eol: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
                let mut bytes = Vec::new();
                for _ in 0..leading {
                    bytes.extend_from_slice(eol);
                }
                bytes.extend_from_slice(format!("{method} {target} {version}").as_bytes());
                bytes.extend_from_slice(eol);
                let mut field = |name: &str, value: &str| {
                    bytes.extend_from_slice(format!("{name}: {value}").as_bytes());
                    bytes.extend_from_slice(eol);
                };
                field("Host", "example.test");
                for (name, value) in &fields {
                    // Only the fields the parser reads itself are left out.
                    let lower = name.to_ascii_lowercase();
                    if !["host", "content-length", "transfer-encoding", "connection"]
                        .contains(&lower.as_str())
                    {
                        field(name, value.trim());
                    }
                }
                if let Some(connection) = connection {
                    field("Connection", connection);
                }
                if !body.is_empty() {
                    field("Content-Length", &body.len().to_string());
                }
                bytes.extend_from_slice(eol);
                bytes.extend_from_slice(&body);
                let keep_alive = match connection {
                    Some(c) => c == "keep-alive",
                    None => version == "HTTP/1.1",
                };
                HttpRequest {
                    bytes,
                    method: method.into(),
                    target,
                    body,
                    keep_alive,
                }
            },
        )
}

proptest! {
    #[test]
    fn http_never_panics_and_uses_only_its_input(
        input in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        if let http::Parsed::Request(_, len) = http::parse(&input) {
            prop_assert!(len > 0 && len <= input.len());
        }
    }

    #[test]
    fn http_reads_a_generated_request_whole_and_only_whole(
        request in http_request(),
        after in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let whole = request.bytes.len();
        for end in 0..whole {
            prop_assert_eq!(http::parse(&request.bytes[..end]), http::Parsed::Partial, "prefix of {} bytes", end);
        }
        let mut input = request.bytes.clone();
        input.extend_from_slice(&after);
        let parsed = http::parse(&input);
        let http::Parsed::Request(got, len) = &parsed else {
            return Err(TestCaseError::fail(format!("{parsed:?} for {:?}", String::from_utf8_lossy(&request.bytes))));
        };
        prop_assert_eq!(*len, whole);
        prop_assert_eq!(got.method, request.method.as_str());
        prop_assert_eq!(got.target, request.target.as_str());
        prop_assert_eq!(got.body, &request.body[..]);
        prop_assert_eq!(got.keep_alive, request.keep_alive);
    }

    #[test]
    fn http_results_hold_under_any_continuation(
        input in prop::collection::vec(prop::sample::select(&b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n:x"[..]), 0..120),
        after in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut longer = input.clone();
        longer.extend_from_slice(&after);
        match http::parse(&input) {
            http::Parsed::Partial => {}
            // A request or an error at the front is the same whatever
            // follows it.
            settled => prop_assert_eq!(settled, http::parse(&longer)),
        }
    }
}

#[test]
fn http_takes_a_head_of_exactly_its_limit_whichever_way_it_is_cut() {
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
    let pad = http::MAX_HEAD - head.len() - 4;
    head.extend(std::iter::repeat_n(b'p', pad));
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), http::MAX_HEAD);
    for end in 0..head.len() {
        assert_eq!(http::parse(&head[..end]), http::Parsed::Partial, "{end}");
    }
    assert!(matches!(http::parse(&head), http::Parsed::Request(_, n) if n == head.len()));
    let mut over = head.clone();
    over.insert(30, b'p');
    assert_eq!(
        http::parse(&over),
        http::Parsed::Error(431, "Request Header Fields Too Large")
    );
}

/// A command in multi-bulk form, and its arguments.
fn resp_command() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..6).prop_map(|args| {
        let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
        for arg in &args {
            bytes.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            bytes.extend_from_slice(arg);
            bytes.extend_from_slice(b"\r\n");
        }
        (bytes, args)
    })
}

/// An inline command: words of letters separated by spaces, CRLF or LF.
fn resp_inline() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    (
        prop::collection::vec("[a-zA-Z0-9]{1,8}", 0..5),
        " {0,2}",
        any::<bool>(),
    )
        .prop_map(|(words, spaces, crlf)| {
            let mut bytes = spaces.clone().into_bytes();
            bytes.extend_from_slice(words.join(" ").as_bytes());
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            (bytes, words.into_iter().map(String::into_bytes).collect())
        })
}

proptest! {
    #[test]
    fn resp_never_panics_and_uses_only_its_input(
        input in prop::collection::vec(prop::sample::select(&b"*$12-+\r\nab "[..]), 0..200),
    ) {
        if let resp::Parsed::Command(_, len) = resp::parse(&input) {
            prop_assert!(len > 0 && len <= input.len());
        }
    }

    #[test]
    fn resp_reads_a_command_whole_and_only_whole(
        (bytes, args) in prop_oneof![resp_command(), resp_inline()],
        after in prop::collection::vec(any::<u8>(), 0..20),
    ) {
        for end in 0..bytes.len() {
            prop_assert_eq!(resp::parse(&bytes[..end]), resp::Parsed::Partial, "prefix of {} bytes", end);
        }
        let mut input = bytes.clone();
        input.extend_from_slice(&after);
        prop_assert_eq!(resp::parse(&input), resp::Parsed::Command(args, bytes.len()));
    }

    #[test]
    fn resp_results_hold_under_any_continuation(
        input in prop::collection::vec(prop::sample::select(&b"*$12-+\r\nab "[..]), 0..120),
        after in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut longer = input.clone();
        longer.extend_from_slice(&after);
        match resp::parse(&input) {
            resp::Parsed::Partial => {}
            settled => prop_assert_eq!(settled, resp::parse(&longer)),
        }
    }
}

#[test]
fn resp_takes_lines_of_exactly_the_limit_whichever_way_their_crlf_arrives() {
    let word = vec![b'a'; resp::MAX_INLINE];
    let inline = [&word[..], b"\r\n"].concat();
    for end in [inline.len() - 2, inline.len() - 1] {
        assert_eq!(resp::parse(&inline[..end]), resp::Parsed::Partial, "{end}");
    }
    assert_eq!(
        resp::parse(&inline),
        resp::Parsed::Command(vec![word.clone()], inline.len())
    );
    // A header line (`*` or `$`) has the same limit.
    let count = format!("*{}", "0".repeat(resp::MAX_INLINE - 2) + "1");
    let header = [count.as_bytes(), b"\r\n$1\r\nx\r\n"].concat();
    assert_eq!(
        resp::parse(&header[..resp::MAX_INLINE + 1]),
        resp::Parsed::Partial
    );
    assert_eq!(
        resp::parse(&header),
        resp::Parsed::Command(vec![b"x".to_vec()], header.len())
    );
}

/// Any address that can be written, as `Addr` writes them.
fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| Addr::Tcp((ip, port).into())),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(ip, port)| Addr::Tcp((ip, port).into())),
        "@?[^\x00]{1,40}".prop_map(|p| Addr::Unix(p.into())),
        "[^\x00]{1,40}".prop_map(Addr::Abstract),
    ]
}

proptest! {
    #[test]
    fn addr_parsing_never_panics(text in "\\PC{0,60}") {
        let _ = text.parse::<Addr>();
    }

    #[test]
    fn an_addr_reads_back_as_the_same_socket(addr in addr()) {
        let written = addr.to_string();
        let read: Addr = written.parse().map_err(TestCaseError::fail)?;
        match (&addr, &read) {
            // A path that starts with `@` is written `./@…`, which names
            // the same file (`unix:@` is the abstract namespace).
            (Addr::Unix(path), Addr::Unix(back)) if path.to_string_lossy().starts_with('@') => {
                prop_assert_eq!(back, &std::path::Path::new(".").join(path));
            }
            _ => prop_assert_eq!(read, addr),
        }
    }
}

#[test]
fn a_file_named_like_an_abstract_socket_is_written_so_it_reads_back_as_a_file() {
    let file = Addr::Unix("@sock".into());
    assert_eq!(file.to_string(), "unix:./@sock");
    assert_eq!(
        "unix:./@sock".parse::<Addr>(),
        Ok(Addr::Unix("./@sock".into()))
    );
    assert_eq!(
        "unix:@sock".parse::<Addr>(),
        Ok(Addr::Abstract("sock".into()))
    );
}
