//! TLS as one more transport under the same connection (feature `tls`,
//! with rustls).
//!
//! The loop keeps owning the socket: rustls only transforms bytes, at the
//! one place where the app's plaintext meets the connection's buffers.
//! What the app sends is gathered ([`Tls::seal`]) and sealed into the
//! connection's output just before the driver writes it
//! ([`Tls::seal_held`]), so the output buffer — and everything either
//! driver does with it: writes, sends that own their buffer — holds
//! ciphertext only, exactly as it holds plaintext on a plain connection.
//! Sealing what one turn sent at once makes one record of a reply sent in
//! pieces (a head, then a body): a record costs both ends a few hundred
//! nanoseconds and 22 bytes, whatever its size. What a read or a receive brought is opened before delivery
//! ([`Tls::open`]), so the app, its unconsumed input and the input limit
//! see plaintext only. Handshake messages and alerts rustls produces go to
//! the same output. Nothing in the drivers knows TLS is there.
//!
//! Flow control counts what each side knows: the socket is written while
//! ciphertext is pending, and the app's bounds (the high- and low-water
//! marks, the output limits, `Ctx::pending_output`) count the plaintext
//! it sent that the socket has not taken yet ([`Tls::plain_pending`]):
//! each sealed send is remembered with where its ciphertext ends, so a
//! record's framing and a handshake's messages never count against the
//! app, and a reply of 1 byte counts as 1 byte, not 23. Plaintext not
//! sealed yet (gathered this turn, or waiting for the handshake) counts as
//! pending output too, so flow control holds from the first byte.
//!
//! Without the feature [`Tls`] is a type with no values: a connection's
//! `Option<Box<Tls>>` is always `None` and every branch on it compiles to
//! nothing.

#[cfg(feature = "tls")]
pub(crate) use enabled::*;

#[cfg(not(feature = "tls"))]
pub(crate) use disabled::*;

/// Why TLS ended a connection: told in [`crate::CloseReason::Tls`] and
/// logged.
#[cfg(feature = "tls")]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused what the peer sent: a failed handshake (no common
    /// version or cipher suite, a certificate it does not trust, a client
    /// speaking plaintext to a TLS port), or a record it could not
    /// decrypt. The alert rustls chose is sent before the close.
    Protocol(rustls::Error),
    /// The handshake did not finish within
    /// [`crate::Config::tls_handshake_timeout`].
    HandshakeTimeout(std::time::Duration),
    /// The peer closed its side before the handshake finished.
    HandshakeEof,
}

#[cfg(feature = "tls")]
impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Protocol(e) => write!(f, "TLS: {e}"),
            TlsError::HandshakeTimeout(t) => write!(f, "TLS: handshake not done within {t:?}"),
            TlsError::HandshakeEof => f.write_str("TLS: the peer closed during the handshake"),
        }
    }
}

#[cfg(feature = "tls")]
impl std::error::Error for TlsError {}

#[cfg(feature = "tls")]
mod enabled {
    use std::collections::VecDeque;
    use std::io::{Read, Write};
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

    /// A listener's TLS: each connection it accepts gets a session from it.
    pub(crate) type ServerTls = Arc<ServerConfig>;

    /// What a successful [`Tls::open`] found besides plaintext.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub(crate) struct Opened {
        /// The handshake finished with these bytes.
        pub handshake_done: bool,
        /// The peer sent `close_notify`: its stream ended cleanly.
        pub peer_closed: bool,
    }

    /// One sealed send: its plaintext and where its ciphertext ends.
    struct Sealed {
        /// `cipher_total` once it was queued.
        end: u64,
        /// Its ciphertext's length (with anything rustls had queued
        /// before it).
        len: usize,
        /// The app's bytes in it.
        plain: usize,
    }

    /// One connection's TLS session.
    pub(crate) struct Tls {
        session: Connection,
        /// Plaintext the app sent and not yet sealed: since the last write,
        /// or before the handshake finished.
        held: Vec<u8>,
        /// Ciphertext queued into the connection's output, ever.
        cipher_total: u64,
        /// Sealed sends whose ciphertext may not all be written yet,
        /// oldest first.
        sealed: VecDeque<Sealed>,
        /// The plaintext of `sealed`.
        sealed_plain: usize,
        /// Ciphertext the socket had taken at the last [`Tls::settle`].
        settled: u64,
        /// `close_notify` is queued: nothing more may be sent.
        notified: bool,
        /// rustls refused the peer: no `close_notify` after its alert.
        failed: bool,
    }

    impl Tls {
        /// The server side of a connection a TLS listener accepted.
        pub(crate) fn server(config: &ServerTls) -> Result<Box<Tls>, rustls::Error> {
            let session = ServerConnection::new(Arc::clone(config))?;
            Ok(Tls::new(session.into()))
        }

        /// The client side of an outbound connect to `name`; its first
        /// flight (the ClientHello) is there to [`Tls::drain`] at once.
        pub(crate) fn client(
            config: Arc<ClientConfig>,
            name: ServerName<'static>,
        ) -> Result<Box<Tls>, rustls::Error> {
            let session = ClientConnection::new(config, name)?;
            Ok(Tls::new(session.into()))
        }

        fn new(mut session: Connection) -> Box<Tls> {
            // The loop bounds output itself (it is ours once sealed):
            // rustls must take every byte it is given.
            session.set_buffer_limit(None);
            Box::new(Tls {
                session,
                held: Vec::new(),
                cipher_total: 0,
                sealed: VecDeque::new(),
                sealed_plain: 0,
                settled: 0,
                notified: false,
                failed: false,
            })
        }

        pub(crate) fn handshaking(&self) -> bool {
            self.session.is_handshaking()
        }

        /// The app's plaintext not yet taken by the socket, when
        /// `for_socket` bytes of ciphertext are still queued or in a send:
        /// what it held for the handshake, and its sealed sends not fully
        /// written (a partly written one in proportion, rounded up).
        pub(crate) fn plain_pending(&self, for_socket: usize) -> usize {
            let written = self.cipher_total.saturating_sub(for_socket as u64);
            let mut pending = self.sealed_plain;
            for s in &self.sealed {
                if s.end <= written {
                    pending -= s.plain;
                    continue;
                }
                let start = s.end - s.len as u64;
                if written > start && s.len > 0 {
                    // Less than `len` written, so less than `plain` here.
                    let done = (written - start) as u128 * s.plain as u128 / s.len as u128;
                    pending -= done as usize;
                }
                break;
            }
            pending + self.held.len()
        }

        /// How many sealed sends it remembers (for the tests).
        #[cfg(test)]
        pub(crate) fn sealed_entries(&self) -> usize {
            self.sealed.len()
        }

        /// Forgets sealed sends the socket has taken in full (with
        /// `for_socket` bytes of ciphertext still queued or in a send).
        pub(crate) fn settle(&mut self, for_socket: usize) {
            let written = self.cipher_total.saturating_sub(for_socket as u64);
            self.settled = written;
            while let Some(s) = self.sealed.front()
                && s.end <= written
            {
                self.sealed_plain -= s.plain;
                self.sealed.pop_front();
            }
        }

        /// Whether `close_notify` is queued (or the session failed):
        /// nothing more can be sent.
        pub(crate) fn write_closed(&self) -> bool {
            self.notified || self.failed
        }

        /// Takes `plain` to seal at the next write ([`Tls::seal_held`]),
        /// or once the handshake is done.
        pub(crate) fn seal(&mut self, plain: &[u8]) {
            if !self.write_closed() {
                self.held.extend_from_slice(plain);
            }
        }

        /// rustls gave up: nothing more is sealed, and plaintext that
        /// waited for the handshake never will be (it owes nothing).
        fn fail(&mut self) {
            self.failed = true;
            self.held = Vec::new();
        }

        /// Whether plaintext waits for a handshake that may still finish:
        /// a connection closing after its output reads on until it has.
        pub(crate) fn owes_after_handshake(&self) -> bool {
            !self.failed && !self.held.is_empty() && self.handshaking()
        }

        /// Whether the handshake is going on and may still finish (not
        /// given up by rustls).
        pub(crate) fn handshake_pending(&self) -> bool {
            !self.failed && self.handshaking()
        }

        /// Whether [`Tls::seal_held`] has plaintext to seal now.
        pub(crate) fn has_sealable(&self) -> bool {
            !self.held.is_empty() && !self.handshaking()
        }

        /// Encrypts the plaintext gathered since the last write into
        /// `out`, unless the handshake is still going on.
        pub(crate) fn seal_held(&mut self, out: &mut Vec<u8>) {
            if !self.has_sealable() || self.write_closed() {
                return;
            }
            let mut held = std::mem::take(&mut self.held);
            self.encrypt(&held, out);
            held.clear();
            if held.capacity() <= 64 * 1024 {
                self.held = held; // reused: no allocation per reply
            }
        }

        /// Encrypts `plain` into `out` and remembers where it ends.
        fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) {
            // Unbounded (`set_buffer_limit(None)`): takes all of it.
            let _ = self.session.writer().write_all(plain);
            let start = self.cipher_total;
            self.drain(out);
            let len = (self.cipher_total - start) as usize;
            self.sealed_plain += plain.len();
            // A send after one the socket has not begun to take joins it:
            // a peer that does not read leaves one entry, not one per
            // write.
            if let Some(last) = self.sealed.back_mut()
                && last.end - last.len as u64 >= self.settled
            {
                last.end = self.cipher_total;
                last.len += len;
                last.plain += plain.len();
                return;
            }
            self.sealed.push_back(Sealed {
                end: self.cipher_total,
                len,
                plain: plain.len(),
            });
        }

        /// Decrypts `cipher` (what a read or a receive brought): plaintext
        /// is appended to `plain`; what rustls answers (handshake messages,
        /// a key update, an alert) to `out`. An error is the peer's fault:
        /// the alert that says so is in `out`, and the connection should
        /// close once it is written.
        pub(crate) fn open(
            &mut self,
            mut cipher: &[u8],
            out: &mut Vec<u8>,
            plain: &mut Vec<u8>,
        ) -> Result<Opened, rustls::Error> {
            let was_handshaking = self.handshaking();
            let mut opened = Opened::default();
            while !cipher.is_empty() && !opened.peer_closed {
                let taken = match self.session.read_tls(&mut cipher) {
                    Ok(n) => n,
                    // Its buffer is full of an unfinished record: cannot
                    // happen with plaintext drained after every record,
                    // but never spin on it.
                    Err(e) => {
                        self.fail();
                        return Err(rustls::Error::General(format!("TLS input: {e}")));
                    }
                };
                let state = match self.session.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        self.fail();
                        self.drain(out);
                        return Err(e);
                    }
                };
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let start = plain.len();
                    plain.resize(start + n, 0);
                    if let Err(e) = self.session.reader().read_exact(&mut plain[start..]) {
                        plain.truncate(start);
                        self.fail();
                        return Err(rustls::Error::General(format!("TLS plaintext: {e}")));
                    }
                }
                opened.peer_closed = state.peer_has_closed();
                if taken == 0 {
                    break;
                }
            }
            if was_handshaking && !self.handshaking() {
                opened.handshake_done = true;
                self.seal_held(out);
            }
            self.drain(out);
            Ok(opened)
        }

        /// Queues `close_notify` into `out` after what the app sent, once:
        /// true if it did (the connection has output again). Not after a
        /// failure (its alert said it all), nor while plaintext waits for
        /// the handshake.
        pub(crate) fn close_notify(&mut self, out: &mut Vec<u8>) -> bool {
            if self.write_closed() || (self.handshaking() && !self.held.is_empty()) {
                return false;
            }
            self.seal_held(out);
            self.notified = true;
            self.session.send_close_notify();
            self.drain(out);
            true
        }

        /// The protocol agreed by ALPN, once the handshake is done.
        pub(crate) fn alpn(&self) -> Option<&[u8]> {
            self.session.alpn_protocol()
        }

        /// The name the client asked for (SNI), on the server side.
        pub(crate) fn server_name(&self) -> Option<&str> {
            match &self.session {
                Connection::Server(s) => s.server_name(),
                Connection::Client(_) => None,
            }
        }

        /// Moves what rustls has to send into `out`.
        pub(crate) fn drain(&mut self, out: &mut Vec<u8>) {
            let before = out.len();
            self.drain_session(out);
            self.cipher_total += (out.len() - before) as u64;
        }

        fn drain_session(&mut self, out: &mut Vec<u8>) {
            while self.session.wants_write() {
                // Writing to a `Vec` cannot fail, nor take nothing.
                match self.session.write_tls(out) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        }
    }
}

#[cfg(not(feature = "tls"))]
mod disabled {
    /// No TLS in this build: no value of this type exists.
    pub(crate) enum Tls {}

    /// No TLS in this build: no listener has any.
    #[derive(Clone)]
    pub(crate) enum ServerTls {}

    impl Tls {
        pub(crate) fn plain_pending(&self, _: usize) -> usize {
            match *self {}
        }
        pub(crate) fn settle(&mut self, _: usize) {
            match *self {}
        }
        pub(crate) fn write_closed(&self) -> bool {
            match *self {}
        }
        pub(crate) fn seal(&mut self, _: &[u8]) {
            match *self {}
        }
        pub(crate) fn has_sealable(&self) -> bool {
            match *self {}
        }
        pub(crate) fn owes_after_handshake(&self) -> bool {
            match *self {}
        }
        pub(crate) fn handshake_pending(&self) -> bool {
            match *self {}
        }
        pub(crate) fn seal_held(&mut self, _: &mut Vec<u8>) {
            match *self {}
        }
        pub(crate) fn close_notify(&mut self, _: &mut Vec<u8>) -> bool {
            match *self {}
        }
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::Tls;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use std::sync::Arc;

    /// A server session and a client session that finished their
    /// handshake through byte buffers.
    fn pair() -> (Box<Tls>, Box<Tls>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut s = Tls::server(&Arc::new(server)).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = Tls::client(Arc::new(client), name).unwrap();
        let (mut to_s, mut to_c, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        c.drain(&mut to_s);
        for _ in 0..4 {
            s.open(&std::mem::take(&mut to_s), &mut to_c, &mut plain)
                .unwrap();
            c.open(&std::mem::take(&mut to_c), &mut to_s, &mut plain)
                .unwrap();
        }
        assert!(
            !s.handshaking() && !c.handshaking(),
            "the handshake finished"
        );
        (s, c)
    }

    /// What the server's sends of `plain` put on the wire, sealed at a
    /// write that finds `for_socket` bytes of ciphertext still queued.
    fn sealed(s: &mut Tls, for_socket: usize, sends: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        s.settle(for_socket);
        for p in sends {
            s.seal(p);
        }
        s.seal_held(&mut out);
        out
    }

    #[test]
    fn pending_output_is_the_apps_plaintext() {
        let (mut s, mut c) = pair();
        // Ten sends of 10 bytes in one turn: 100 bytes pending, one record.
        let sends = [&b"0123456789"[..]; 10];
        for p in sends {
            s.seal(p);
        }
        assert_eq!(s.plain_pending(0), 100, "held until the write");
        let mut wire = Vec::new();
        s.seal_held(&mut wire);
        assert_eq!(wire.len(), 100 + 22, "one TLS 1.3 record");
        assert_eq!(s.plain_pending(wire.len()), 100, "nothing written yet");
        assert_eq!(s.plain_pending(wire.len() / 2), 50, "half written");
        assert_eq!(s.plain_pending(1), 1, "rounded up, never 0 early");
        assert_eq!(s.plain_pending(0), 0, "all written");
        s.settle(0);
        let (mut back, mut plain) = (Vec::new(), Vec::new());
        c.open(&wire, &mut back, &mut plain).unwrap();
        assert_eq!(plain, b"0123456789".repeat(10));
    }

    #[test]
    fn writes_the_socket_has_not_begun_to_take_count_as_one() {
        let (mut s, _) = pair();
        let mut queued = 0;
        for _ in 0..1000 {
            queued += sealed(&mut s, queued, &[b"x"]).len();
        }
        // The peer took nothing: one entry for a thousand writes.
        s.settle(queued);
        assert_eq!(s.sealed_entries(), 1);
        assert_eq!(s.plain_pending(queued), 1000);
        // Then it takes all of them.
        s.settle(0);
        assert_eq!(s.sealed_entries(), 0);
        assert_eq!(s.plain_pending(0), 0);
    }

    #[test]
    fn a_session_rustls_gave_up_on_owes_nothing_it_held() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = Tls::client(Arc::new(client), name).unwrap();
        c.seal(b"hello");
        assert!(c.owes_after_handshake());
        assert_eq!(c.plain_pending(0), 5);
        let (mut out, mut plain) = (Vec::new(), Vec::new());
        let garbage = [0x16, 0x03, 0x03, 0x00, 0x04, 0xff, 0, 0, 0];
        assert!(c.open(&garbage, &mut out, &mut plain).is_err());
        assert!(!c.owes_after_handshake() && c.write_closed());
        assert_eq!(c.plain_pending(0), 0);
        assert!(!c.close_notify(&mut out), "its alert said it all");
    }
}
