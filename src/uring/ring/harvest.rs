//! Completions into what they mean for the loop ([`Done`]), and the
//! provided buffers lent to it on the way.

// The ring's own imports and operation names.
use super::*;

impl Ring {
    /// One of a doomed socket's operations is over: the socket closes with
    /// the last. False if `id` is not doomed.
    pub(super) fn doomed_op_over(&mut self, id: ConnId, last: bool) -> bool {
        let Some(doomed) = self.doomed.get_mut(&id) else {
            return false;
        };
        if last {
            doomed.ops -= 1;
            if doomed.ops == 0 {
                self.doomed.remove(&id); // closes the socket
            }
        }
        true
    }

    /// Moves the completions of the last wait, resolved, into `out`.
    pub(crate) fn take_done(&mut self, out: &mut Vec<Done>) {
        out.append(&mut self.done);
    }

    /// What completion `c` means; `None` when it concerns nobody any more
    /// (a doomed socket's operation, a stale accept, a cancel's result).
    pub(super) fn resolve(&mut self, c: Cqe) -> Option<Done> {
        let last = !c.more();
        let buffer = io_uring::cqueue::buffer_select(c.flags);
        let result = c.result;
        if c.user_data & RECV_BIT != 0 {
            let conn = recv_conn(c.user_data & !OP_BIT & !RECV_BIT);
            if last {
                self.armed_recvs = self.armed_recvs.saturating_sub(1);
            }
            if !self.doomed.is_empty() && self.doomed_op_over(conn, last) {
                if let Some(bid) = buffer {
                    self.give_back(bid);
                }
                return None;
            }
            if result <= 0
                && let Some(bid) = buffer
            {
                self.give_back(bid); // no bytes in it
            }
            let received = match (result, buffer) {
                (n, Some(bid)) if n > 0 => Received::Data {
                    bid,
                    len: n as usize,
                },
                (0, _) => Received::Eof,
                (n, _) if is(n, Errno::NOBUFS) => Received::NoBuffers,
                (n, _) if is(n, Errno::CANCELED) => Received::Cancelled,
                (n, _) if n < 0 => Received::Error(io::Error::from_raw_os_error(-n)),
                _ => Received::Error(io::Error::other(
                    "a receive completed without a provided buffer",
                )),
            };
            if last {
                self.recv_ended.push(conn);
            }
            return Some(Done::Received {
                conn,
                received,
                ended: last,
            });
        }
        let key = (c.user_data & !OP_BIT) as usize;
        match self.ops.get_mut(key)? {
            Op::Cancel { target } => {
                let target = *target;
                self.ops.remove(key);
                // 0: the target ends with `-ECANCELED`; `-ENOENT`: it had
                // ended. Anything else (`-EALREADY`: it is running and
                // may not stop) did not take: again next turn.
                if result != 0 && !is(result, Errno::NOENT) {
                    log::debug!(target: "iomux::uring", "cancel: errno {}; again", -result);
                    self.pending_cancels.push(target);
                }
                None
            }
            Op::Send {
                conn,
                buf,
                off,
                parked,
                ..
            } => {
                let conn = *conn;
                let doomed = !self.doomed.is_empty() && self.doomed.contains_key(&conn);
                if is(result, Errno::AGAIN) && !doomed {
                    // No room in the socket. Sends go with `MSG_DONTWAIT`:
                    // else the kernel retries through its own poll, and on
                    // a half-closed peer (`POLLRDHUP`, always ready) it
                    // gives up after a number of them and blocks the send
                    // in an io-wq worker thread until the peer reads.
                    // Parked instead: the loop writes it itself once the
                    // socket has room (`write_parked`).
                    *parked = true;
                    return Some(Done::Sent {
                        conn,
                        result: Ok(0),
                        buf: None,
                    });
                }
                let sent = match result {
                    n if n < 0 => Err(io::Error::from_raw_os_error(-n)),
                    0 if *off < buf.len() => Err(io::ErrorKind::WriteZero.into()),
                    n => Ok(n as usize),
                };
                if let Ok(n) = sent {
                    *off = (*off + n).min(buf.len());
                }
                let short = sent.is_ok() && *off < buf.len();
                if short && !doomed {
                    // A short send: the rest goes in again at once under
                    // the same key (the connection's `send_op`), so one
                    // send stays in flight; a full socket parks it.
                    // SAFETY: as for `send`.
                    match unsafe { self.submit_key(key) } {
                        Ok(()) => {
                            return Some(Done::Sent {
                                conn,
                                result: sent,
                                buf: None,
                            });
                        }
                        Err(e) => {
                            let Op::Send { buf, .. } = self.ops.remove(key) else {
                                unreachable!("matched as a send above")
                            };
                            return Some(Done::Sent {
                                conn,
                                result: Err(e),
                                buf: Some(buf),
                            });
                        }
                    }
                }
                let Op::Send { buf, .. } = self.ops.remove(key) else {
                    unreachable!("matched as a send above")
                };
                if doomed {
                    self.doomed_op_over(conn, true);
                    return None; // the buffer is free now
                }
                Some(Done::Sent {
                    conn,
                    result: sent,
                    buf: Some(buf),
                })
            }
            Op::Accept { listener } => {
                let index = *listener;
                if last {
                    self.ops.remove(key);
                    if let Some(slot) = self.accepts.get_mut(index)
                        && *slot == Some(key)
                    {
                        *slot = None;
                    }
                }
                let result = if result >= 0 {
                    // SAFETY: a successful accept's result is a new
                    // descriptor that nothing else owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(result) })
                } else {
                    Err(io::Error::from_raw_os_error(-result))
                };
                Some(Done::Accepted {
                    listener: index,
                    result,
                    more: !last,
                })
            }
        }
    }

    /// Lends provided buffer `bid`'s first `len` bytes (see [`Lent`]).
    pub(crate) fn lend(&mut self, bid: u16, len: usize) -> Option<Lent> {
        let bufs = ManuallyDrop::new(self.bufs.take()?);
        Some(Lent { bufs, bid, len })
    }

    /// Takes lent bytes back and lends their buffer to the kernel again.
    pub(crate) fn give_back_lent(&mut self, lent: Lent) {
        let mut bufs = ManuallyDrop::into_inner(lent.bufs);
        bufs.give_back(lent.bid);
        self.bufs = Some(bufs);
    }

    /// Lends a provided buffer to the kernel again.
    pub(super) fn give_back(&mut self, bid: u16) {
        if let Some(bufs) = &mut self.bufs {
            bufs.give_back(bid);
        }
    }
}
