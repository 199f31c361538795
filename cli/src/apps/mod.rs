//! The ready apps of `iomux serve`, each a small protocol on the library's
//! [`iomux::App`] contract: `ack` answers every message, `echo` returns
//! what it gets, `chat` relays lines to everyone else, `hash` does a slow
//! SHA-256 per request (the handler that stalls a loop, or goes to the
//! offload pool).

mod ack;
mod chat;
mod echo;
mod hash;

pub use ack::Ack;
pub use chat::Chat;
pub use echo::Echo;
pub use hash::{Hash, MAX_ITERATIONS, iterated_sha256_hex, parse_request};
