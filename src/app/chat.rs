//! `chat`: every complete line a client sends goes to all *other* clients
//! as `ADDR: LINE\n`.
//!
//! Limits, like Redis's client buffers: a sender whose unfinished line
//! grows past `max_line` is disconnected; a receiver whose pending output
//! passes the loop's `max_output` is disconnected by the loop rather than
//! let the server's memory grow.

use super::{App, split_lines};
use crate::conn::ConnId;
use crate::event_loop::Ctx;

/// The chat app.
pub struct Chat {
    max_line: usize,
    message: Vec<u8>,
}

impl Chat {
    /// Lines longer than `max_line` bytes disconnect their sender.
    pub fn new(max_line: usize) -> Chat {
        Chat {
            max_line,
            message: Vec::new(),
        }
    }
}

impl App for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, input: &[u8]) -> usize {
        let Some(addr) = ctx.peer_addr(conn) else {
            return input.len();
        };
        let (lines, used) = split_lines(input);
        for line in lines {
            if line.len() > self.max_line {
                ctx.close(conn);
                return input.len();
            }
            ctx.record_request();
            self.message.clear();
            self.message
                .extend_from_slice(format!("{addr}: ").as_bytes());
            self.message.extend_from_slice(line);
            self.message.push(b'\n');
            ctx.broadcast(&self.message, Some(conn));
        }
        if input.len() - used > self.max_line {
            ctx.close(conn);
            return input.len();
        }
        used
    }
}
