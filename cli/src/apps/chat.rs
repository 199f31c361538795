//! `chat`: every complete line a client sends goes to all *other* clients
//! as `ADDR: LINE\n`.
//!
//! In a group of loops (`serve --threads N`) a line also goes to the other
//! loops, which relay it to their clients: every client hears every other,
//! in order per sender.
//!
//! Limits, like Redis's client buffers: a sender whose line grows past
//! `max_line` is disconnected (the reason is logged); a receiver that does
//! not read what it is pushed goes over the loop's output limits
//! ([`iomux::Config::max_output`], `max_output_soft`) and is disconnected
//! by the loop rather than let the server's memory grow.

use std::sync::Arc;

use iomux::App;
use iomux::ConnId;
use iomux::Ctx;
use iomux::app::{Frame, LineFramer};
use iomux::group::Message;

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

    fn too_long(&self, ctx: &mut Ctx<'_>, conn: ConnId) {
        ctx.close_because(conn, format!("line too long (max {} bytes)", self.max_line));
    }
}

impl App for Chat {
    type State = LineFramer;

    fn name(&self) -> &'static str {
        "chat"
    }

    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        framer: &mut LineFramer,
        input: &[u8],
    ) -> usize {
        let Some(addr) = ctx.peer(conn) else {
            return input.len();
        };
        let mut frames = framer.frames(input, self.max_line);
        for frame in frames.by_ref() {
            let Frame::Line(line) = frame else {
                self.too_long(ctx, conn);
                return input.len();
            };
            ctx.record_request();
            self.message.clear();
            self.message
                .extend_from_slice(format!("{addr}: ").as_bytes());
            self.message.extend_from_slice(line);
            self.message.push(b'\n');
            ctx.broadcast(&self.message, Some(conn));
            if ctx.loops() > 1 {
                // Clients on the other loops of a group get it there.
                ctx.post_to_others(Relayed(Arc::new(self.message.clone())));
            }
        }
        frames.consumed()
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, message: Message) {
        if let Ok(line) = message.downcast::<Relayed>() {
            ctx.broadcast(&line.0, None);
        }
    }
}

/// A chat line from another loop of the group, shared by all receivers.
#[derive(Clone)]
struct Relayed(Arc<Vec<u8>>);
