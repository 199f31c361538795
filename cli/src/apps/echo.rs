//! `echo`: sends back exactly the bytes received, in order.
//!
//! Memory stays bounded when the client does not read: the loop stops
//! reading a connection whose pending output is above the high-water mark.

use iomux::App;
use iomux::ConnId;
use iomux::Ctx;

/// The echo app.
#[derive(Default)]
pub struct Echo;

impl App for Echo {
    type State = ();

    fn name(&self) -> &'static str {
        "echo"
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        ctx.record_request();
        // A connection that cannot take the reply is closing: nothing to do.
        let _ = ctx.send(conn, input);
        input.len()
    }
}
