//! RESP2 replies, written into one buffer that every command reuses.

/// The replies to one command (or one error), in wire form.
#[derive(Default)]
pub struct Reply(Vec<u8>);

impl Reply {
    /// Empties the buffer for the next command.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// What was written since the last [`Reply::clear`].
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// `+OK`.
    pub fn ok(&mut self) {
        self.0.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string: `+text` (never client data, which may hold CR LF).
    pub fn simple(&mut self, text: &'static str) {
        self.0.push(b'+');
        self.0.extend_from_slice(text.as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// A bulk string, or the nil bulk string (`$-1`) for `None`.
    pub fn bulk(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => {
                self.0
                    .extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
                self.0.extend_from_slice(v);
                self.0.extend_from_slice(b"\r\n");
            }
            None => self.0.extend_from_slice(b"$-1\r\n"),
        }
    }

    /// An integer: `:n`.
    pub fn integer(&mut self, n: i64) {
        self.0.extend_from_slice(format!(":{n}\r\n").as_bytes());
    }

    /// The header of an array of `len` replies (which follow).
    pub fn array(&mut self, len: usize) {
        self.0.extend_from_slice(format!("*{len}\r\n").as_bytes());
    }

    /// `-ERR message`. A message may quote what the client sent, so CR and
    /// LF become spaces, as Redis does: one in the middle would end the
    /// error line early and desynchronise the client.
    pub fn error(&mut self, message: &str) {
        self.0.extend_from_slice(b"-ERR ");
        self.0.extend(
            message
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.0.extend_from_slice(b"\r\n");
    }
}
