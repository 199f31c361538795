//! `ack`: the classic multiplexing demo server. Prints each chunk received as `ADDR: TEXT`
//! and answers with a fixed reply (`Ok,Thanks`).

use iomux::App;
use iomux::ConnId;
use iomux::Ctx;
use std::io::Write;

/// The ack app.
pub struct Ack {
    reply: Vec<u8>,
    print: bool,
}

impl Ack {
    /// Replies `reply` to every chunk; prints chunks on stdout if `print`.
    pub fn new(reply: impl Into<Vec<u8>>, print: bool) -> Ack {
        Ack {
            reply: reply.into(),
            print,
        }
    }
}

/// The text printed for a chunk: lossy UTF-8, one trailing newline (`\n`
/// or `\r\n`) trimmed.
pub fn chunk_text(data: &[u8]) -> String {
    let data = match data.strip_suffix(b"\n") {
        Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
        None => data,
    };
    String::from_utf8_lossy(data).into_owned()
}

impl App for Ack {
    type State = ();

    fn name(&self) -> &'static str {
        "ack"
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        if self.print
            && let Some(addr) = ctx.peer(conn)
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{addr}: {}", chunk_text(input));
        }
        ctx.record_request();
        // A connection that cannot take the reply is closing: nothing to do.
        let _ = ctx.send(conn, &self.reply);
        input.len()
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_text;

    #[test]
    fn chunk_text_trims_one_newline_and_replaces_bad_utf8() {
        assert_eq!(chunk_text(b"hello\n"), "hello");
        assert_eq!(chunk_text(b"hello\r\n"), "hello");
        assert_eq!(chunk_text(b"two\n\n"), "two\n");
        assert_eq!(chunk_text(b"no newline\r"), "no newline\r");
        assert_eq!(chunk_text(b"\xffok"), "\u{fffd}ok");
    }
}
