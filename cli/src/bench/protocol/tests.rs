use super::*;

fn http(buf: &[u8]) -> Result<Option<usize>, String> {
    reply_len(&ReplyRule::Http, buf)
}

/// `full` holds one complete reply of `n` bytes (and maybe more after
/// it): every prefix shorter than `n` needs more, every longer one gives
/// `n`, wherever the bytes are cut.
fn same_answer_at_every_cut(rule: &ReplyRule, full: &[u8], n: usize) {
    for cut in 0..=full.len() {
        let got = reply_len(rule, &full[..cut]);
        let want = if cut < n { None } else { Some(n) };
        assert_eq!(
            got,
            Ok(want),
            "cut at {cut} of {:?}",
            String::from_utf8_lossy(full)
        );
    }
}

#[test]
fn escapes() {
    assert_eq!(unescape("PING\\r\\n"), Ok(b"PING\r\n".to_vec()));
    assert_eq!(unescape("a\\tb\\\\c\\n"), Ok(b"a\tb\\c\n".to_vec()));
    assert_eq!(
        unescape("\\x00\\xff\\x41\\xaB"),
        Ok(vec![0, 255, b'A', 0xab])
    );
    assert_eq!(unescape(""), Ok(Vec::new()));
    assert_eq!(unescape("héllo"), Ok("héllo".as_bytes().to_vec()));
    assert_eq!(unescape("\\\\x41"), Ok(b"\\x41".to_vec()));
}

#[test]
fn bad_escapes_are_named() {
    for (text, needle) in [
        ("abc\\", "trailing backslash"),
        ("\\q", "'\\q'"),
        ("a\\0", "'\\0'"),
        ("\\é", "'\\é'"),
        ("\\x", "'\\x'"),
        ("\\x4", "'\\x4'"),
        ("\\x4g", "'\\x4g'"),
        ("\\xé1", "'\\xé1'"),
        ("\\X41", "'\\X'"),
    ] {
        let e = unescape(text).expect_err(text);
        assert!(e.contains(needle), "{text}: {e}");
    }
}

#[test]
fn until_a_delimiter() {
    let rule = ReplyRule::Until(b"\r\n".to_vec());
    assert_eq!(reply_len(&rule, b"+PONG\r\n+PONG\r\n"), Ok(Some(7)));
    assert_eq!(reply_len(&rule, b"+PONG\r"), Ok(None));
    assert_eq!(reply_len(&rule, b""), Ok(None));
    assert_eq!(reply_len(&rule, b"\r\n"), Ok(Some(2)));
    same_answer_at_every_cut(&rule, b"+PONG\r\nmore", 7);
    let rule = ReplyRule::Until(b"\n".to_vec());
    assert_eq!(reply_len(&rule, b"abc\ndef\n"), Ok(Some(4)));
    assert!(reply_len(&ReplyRule::Until(Vec::new()), b"x").is_err());
}

#[test]
fn rules_are_named_as_typed() {
    assert_eq!(
        ReplyRule::Until(b"\r\n".to_vec()).to_string(),
        "until '\\r\\n'"
    );
    assert_eq!(ReplyRule::Len(65).to_string(), "length 65");
    assert_eq!(ReplyRule::Http.to_string(), "http");
}

#[test]
fn a_fixed_length() {
    let rule = ReplyRule::Len(3);
    assert_eq!(reply_len(&rule, b"ab"), Ok(None));
    assert_eq!(reply_len(&rule, b"abcd"), Ok(Some(3)));
    assert!(reply_len(&ReplyRule::Len(0), b"x").is_err());
    assert_eq!(reply_len(&ReplyRule::Len(usize::MAX), b"abc"), Ok(None));
}

#[test]
fn http_content_length() {
    let r =
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhelloHTTP/1.1";
    assert_eq!(http(r), Ok(Some(r.len() - 8)));
    same_answer_at_every_cut(&ReplyRule::Http, r, r.len() - 8);
    // Names in any case, spaces around the value, bare LF line ends, an
    // empty reason, a repeated identical length.
    let r = b"HTTP/1.0 404\ncontent-LENGTH:  2 \nContent-Length: 2, 2\n\nno";
    assert_eq!(http(r), Ok(Some(r.len())));
    let r = b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n";
    assert_eq!(http(r), Ok(Some(r.len())));
}

#[test]
fn http_without_a_body() {
    for status in ["204 No Content", "304 Not Modified"] {
        let r = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(http(r.as_bytes()), Ok(Some(r.len())), "{status}");
    }
    // An interim response is part of the reply: the final one follows.
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let last = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let both = [&interim[..], &last[..]].concat();
    same_answer_at_every_cut(&ReplyRule::Http, &both, both.len());
    let twice = [&interim[..], &interim[..], &last[..]].concat();
    assert_eq!(http(&twice), Ok(Some(twice.len())));
    assert!(http(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
}

#[test]
fn http_chunked_at_every_cut() {
    let body =
        b"4\r\nWiki\r\n5;name=value;x=\"q\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let full = [&head[..], &body[..]].concat();
    let next = b"HTTP/1.1 200 OK\r\n";
    same_answer_at_every_cut(
        &ReplyRule::Http,
        &[&full[..], &next[..]].concat(),
        full.len(),
    );
    // Trailers, extensions on the last chunk, BWS before `;`, an upper-case
    // coding after another one, a list over two fields, bare LFs.
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\ntransfer-encoding: CHUNKED\r\n\r\n\
              a ;ext\r\n0123456789\r\n00;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\n";
    same_answer_at_every_cut(&ReplyRule::Http, r, r.len());
    let r = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n";
    assert_eq!(http(r), Ok(Some(r.len())));
}

#[test]
fn http_malformed_responses_say_why() {
    for (r, needle) in [
        (
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            "neither Content-Length nor chunked",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "does not end in chunked",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "does not end in chunked",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "conflicting",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            "conflicting",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "bad Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
            "bad Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
            "bad Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "too large",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            "bad chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 x\r\n",
            "bad chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            "bad chunk size",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
            "too large",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n",
            "not followed by CRLF",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
            "without a colon",
        ),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 099 Low\r\n\r\n", "out of range"),
        (b"HTTP/1.1 200OK\r\n\r\n", "bad status line"),
        (b"HTTP/2 200\r\n\r\n", "bad status line"),
        (b"ICY 200 OK\r\n\r\n", "bad status line"),
        (b"\r\nHTTP/1.1 200 OK\r\n\r\n", "bad status line"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n",
            "bad field name",
        ),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "folded"),
        (b"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR"),
    ] {
        let e = http(r).expect_err(&String::from_utf8_lossy(r));
        assert!(e.contains(needle), "{:?}: {e}", String::from_utf8_lossy(r));
    }
}

#[test]
fn http_heads_and_chunk_lines_are_bounded() {
    let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
    while big.len() <= MAX_HEAD {
        big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert!(http(&big).unwrap_err().contains("head over"));
    // Within the limit and still incomplete: more is needed.
    assert_eq!(http(&big[..MAX_HEAD / 2]), Ok(None));
    let no_lf = vec![b'H'; MAX_HEAD + 1];
    assert!(http(&no_lf).unwrap_err().contains("head over"));
    let mut chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
    chunk.resize(chunk.len() + MAX_CHUNK_LINE + 1, b'e');
    assert!(http(&chunk).unwrap_err().contains("chunk-size line over"));
    let mut trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    while trailers.len() <= 2 * MAX_HEAD {
        trailers.extend_from_slice(b"X-T: 1\r\n");
    }
    assert!(
        http(&trailers)
            .unwrap_err()
            .contains("trailer section over")
    );
}

/// Random bytes, and valid responses with bytes changed, cut anywhere:
/// no panic, and a length is never past the end of the buffer.
#[test]
fn any_bytes_give_an_answer_within_the_buffer() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No\r\n\r\n",
    ];
    let alphabet = b"HTTP/1.0 \r\n:;,0123456789abcdefABCDEF chunked Content-Length";
    let rules = [
        ReplyRule::Http,
        ReplyRule::Until(b"\r\n".to_vec()),
        ReplyRule::Len(7),
    ];
    for round in 0..20_000 {
        let mut buf = seeds[round % seeds.len()].to_vec();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % buf.len();
            buf[at] = alphabet[(next() as usize) % alphabet.len()];
        }
        if round % 7 == 0 {
            buf = (0..(next() % 64)).map(|_| next() as u8).collect();
        }
        let cut = (next() as usize) % (buf.len() + 1);
        for rule in &rules {
            if let Ok(Some(n)) = reply_len(rule, &buf[..cut]) {
                assert!(0 < n && n <= cut, "{n} of {cut}: {:?}", buf.escape_ascii());
            }
        }
    }
}
