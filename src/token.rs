//! What a selector token names. Connections use their [`ConnId`] as is
//! (its generation keeps the top bit clear); the loop's own fds have the
//! top bit set, so the two can never collide however many there are.

use crate::conn::ConnId;
use crate::selector::Token;
use crate::source::SourceId;

const LOOP_BIT: u64 = 1 << 63;
const LISTENER_BIT: u64 = 1 << 62;
/// An app's own descriptor ([`SourceId`] below this bit).
const SOURCE_BIT: u64 = 1 << 61;

pub(crate) const WAKER: Token = Token(LOOP_BIT);
pub(crate) const SIGNALS: Token = Token(LOOP_BIT | 1);

/// Listeners one loop accepts from.
pub(crate) const MAX_LISTENERS: usize = 1 << 16;

/// The token of listener `index`; `None` past [`MAX_LISTENERS`].
pub(crate) fn listener(index: usize) -> Option<Token> {
    (index < MAX_LISTENERS).then_some(Token(LOOP_BIT | LISTENER_BIT | index as u64))
}

/// The token of an app's source.
pub(crate) fn source(id: SourceId) -> Token {
    Token(LOOP_BIT | SOURCE_BIT | id.0)
}

/// The source an event came from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Conn(ConnId),
    Listener(usize),
    /// An app's own descriptor.
    User(SourceId),
    Waker,
    Signals,
}

pub(crate) fn decode(token: Token) -> Source {
    let t = token.0;
    if t & LOOP_BIT == 0 {
        Source::Conn(ConnId(t))
    } else if t & LISTENER_BIT != 0 {
        Source::Listener((t & !(LOOP_BIT | LISTENER_BIT)) as usize)
    } else if t & SOURCE_BIT != 0 {
        Source::User(SourceId(t & !(LOOP_BIT | SOURCE_BIT)))
    } else if token == WAKER {
        Source::Waker
    } else {
        Source::Signals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_token_decodes_to_itself() {
        let newest = ConnId::new(u32::MAX as usize, 0x7fff_ffff);
        assert_eq!(decode(Token(newest.0)), Source::Conn(newest));
        assert_eq!(decode(WAKER), Source::Waker);
        assert_eq!(decode(SIGNALS), Source::Signals);
        for i in [0, 1, 1023, 1024, MAX_LISTENERS - 1] {
            assert_eq!(decode(listener(i).unwrap()), Source::Listener(i));
        }
        assert_eq!(listener(MAX_LISTENERS), None, "refused, not wrapped");
        let newest_source = SourceId((0x1fff_ffff << 32) | u32::MAX as u64);
        assert_eq!(decode(source(newest_source)), Source::User(newest_source));
    }
}
