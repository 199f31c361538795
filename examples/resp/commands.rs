//! The resp example's commands, with Redis's replies and errors (compared
//! byte for byte with redis-server 7.0): which arguments each takes, how
//! the options of `SET` and `EXPIRE` combine, and which error wins when
//! several apply (a syntax error before a bad number, options before the
//! key's existence).

use super::Resp;
use super::store::Ttl;

/// Each command and its arity as Redis counts it, the name included: `n`
/// exactly, `-n` at least `n`.
const COMMANDS: &[(&str, i32)] = &[
    ("PING", -1),
    ("ECHO", 2),
    ("SET", -3),
    ("GET", 2),
    ("INCR", 2),
    ("DEL", -2),
    ("EXISTS", -2),
    ("TTL", 2),
    ("PTTL", 2),
    ("EXPIRE", -3),
    ("PEXPIRE", -3),
    ("PERSIST", 2),
    ("DBSIZE", 1),
    ("FLUSHALL", -1),
    ("CONFIG", -2),
];

/// What `CONFIG GET` knows, with this server's values: it never saves,
/// keeps no append-only file, has no memory limit and one database.
/// (`redis-benchmark` asks for `save` and `appendonly` before it starts,
/// and warns when it gets no answer.)
const CONFIG: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "no"),
    ("maxmemory", "0"),
    ("databases", "1"),
];

const SYNTAX: &str = "syntax error";
const NOT_INTEGER: &str = "value is not an integer or out of range";

fn invalid_expire(command: &str) -> String {
    format!("invalid expire time in '{command}' command")
}

fn wrong_arity(command: &str) -> String {
    format!("wrong number of arguments for '{command}' command")
}

fn lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Redis's `unknown command` error: the name and the first arguments, each
/// cut to what fits in 128 bytes.
fn unknown_command(name: &[u8], args: &[Vec<u8>]) -> String {
    let mut listed = String::new();
    for arg in args {
        let room = 128usize.saturating_sub(listed.len());
        if room == 0 {
            break;
        }
        listed.push_str(&format!("'{}' ", lossy(&arg[..arg.len().min(room)])));
    }
    let name = lossy(&name[..name.len().min(128)]);
    format!("unknown command '{name}', with args beginning with: {listed}")
}

/// An integer as Redis reads one (`string2ll`): an optional `-`, then `0`
/// alone or digits without a leading zero, within 64 bits. No `+`, no
/// spaces, no `-0`: `str::parse` would take `+5` and `007`.
pub fn parse_int(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let shaped = text == b"0"
        || (matches!(digits.first(), Some(b'1'..=b'9')) && digits.iter().all(u8::is_ascii_digit));
    if !shaped {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Whether `name` matches the glob `pattern`, ignoring case, as `CONFIG
/// GET` matches: `*` any run of bytes, `?` any one byte. (Redis's `[set]`
/// classes and `\` escapes are left out: no parameter name needs them.)
pub fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and where in `name` it was tried up to.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&name[n]) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                // Let the last `*` take one byte more, and go on from there.
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    p = sp + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Seconds or milliseconds, as a command or an option counts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Millis,
}

impl Unit {
    /// `n` of this unit in milliseconds, unless that overflows.
    fn millis(self, n: i64) -> Option<i64> {
        match self {
            Unit::Seconds => n.checked_mul(1000),
            Unit::Millis => Some(n),
        }
    }
}

/// When `SET` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    /// `NX`.
    IfAbsent,
    /// `XX`.
    IfPresent,
}

/// A time option of `SET`: `EX` and `PX` count from now, `EXAT` and
/// `PXAT` are Unix times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeOption {
    unit: Unit,
    absolute: bool,
}

impl TimeOption {
    fn named(upper: &[u8]) -> Option<TimeOption> {
        let (unit, absolute) = match upper {
            b"EX" => (Unit::Seconds, false),
            b"PX" => (Unit::Millis, false),
            b"EXAT" => (Unit::Seconds, true),
            b"PXAT" => (Unit::Millis, true),
            _ => return None,
        };
        Some(TimeOption { unit, absolute })
    }

    /// The deadline `value` names at `now`. Not an integer, a time that is
    /// not positive, or one that overflows: Redis's error for each.
    fn deadline(self, value: &[u8], now: i64) -> Result<i64, String> {
        let n = parse_int(value).ok_or(NOT_INTEGER)?;
        let at = Some(n)
            .filter(|&n| n > 0)
            .and_then(|n| self.unit.millis(n))
            .and_then(|ms| {
                if self.absolute {
                    Some(ms)
                } else {
                    ms.checked_add(now)
                }
            });
        at.ok_or_else(|| invalid_expire("set"))
    }
}

/// What `SET` does to the key's deadline.
#[derive(Debug, Clone, Copy)]
enum Expiry<'a> {
    /// A plain `SET` removes it.
    Clear,
    /// `KEEPTTL`.
    Keep,
    /// A time option and its (not yet read) value.
    Time(TimeOption, &'a [u8]),
}

/// `SET`'s options.
struct SetOptions<'a> {
    condition: Condition,
    expiry: Expiry<'a>,
    /// `GET`: answer the old value instead of `+OK` or nil.
    get: bool,
}

impl SetOptions<'_> {
    /// The options as Redis takes them, `None` for a syntax error: `NX`
    /// excludes `XX`, `KEEPTTL` and the four time options exclude each
    /// other, a time option needs a value; an option may repeat (the last
    /// time given counts), `GET` goes with any. Values are read later, so
    /// a syntax error anywhere wins over a bad number.
    fn parse(words: &[Vec<u8>]) -> Option<SetOptions<'_>> {
        let mut o = SetOptions {
            condition: Condition::Always,
            expiry: Expiry::Clear,
            get: false,
        };
        let mut words = words.iter();
        while let Some(word) = words.next() {
            let upper = word.to_ascii_uppercase();
            if let Some(time) = TimeOption::named(&upper) {
                let free = match o.expiry {
                    Expiry::Clear => true,
                    Expiry::Keep => false,
                    Expiry::Time(other, _) => other == time,
                };
                let value = words.next().filter(|_| free)?;
                o.expiry = Expiry::Time(time, value);
                continue;
            }
            match upper.as_slice() {
                b"NX" if o.condition != Condition::IfPresent => o.condition = Condition::IfAbsent,
                b"XX" if o.condition != Condition::IfAbsent => o.condition = Condition::IfPresent,
                b"GET" => o.get = true,
                b"KEEPTTL" if matches!(o.expiry, Expiry::Clear | Expiry::Keep) => {
                    o.expiry = Expiry::Keep
                }
                _ => return None,
            }
        }
        Some(o)
    }
}

/// `EXPIRE`'s and `PEXPIRE`'s conditions on the key's current deadline;
/// `XX` goes with `GT` or `LT`.
#[derive(Default)]
struct ExpireOptions {
    /// `NX`: only a key without one.
    nx: bool,
    /// `XX`: only a key with one.
    xx: bool,
    /// `GT`: only a later one (no deadline counts as the latest).
    gt: bool,
    /// `LT`: only a sooner one.
    lt: bool,
}

impl ExpireOptions {
    fn parse(words: &[Vec<u8>]) -> Result<ExpireOptions, String> {
        let mut o = ExpireOptions::default();
        for word in words {
            match word.to_ascii_uppercase().as_slice() {
                b"NX" => o.nx = true,
                b"XX" => o.xx = true,
                b"GT" => o.gt = true,
                b"LT" => o.lt = true,
                _ => return Err(format!("Unsupported option {}", lossy(word))),
            }
        }
        if o.nx && (o.xx || o.gt || o.lt) {
            return Err("NX and XX, GT or LT options at the same time are not compatible".into());
        }
        if o.gt && o.lt {
            return Err("GT and LT options at the same time are not compatible".into());
        }
        Ok(o)
    }

    /// Whether a key whose deadline is `current` takes `new`.
    fn allow(&self, current: Option<i64>, new: i64) -> bool {
        !(self.nx && current.is_some()
            || self.xx && current.is_none()
            || self.gt && current.is_none_or(|c| new <= c)
            || self.lt && current.is_some_and(|c| new >= c))
    }
}

impl Resp {
    /// Runs one command at `now` (Unix milliseconds), appending its reply
    /// to `self.out`.
    pub(super) fn execute(&mut self, args: &[Vec<u8>], now: i64) {
        let Some((name, rest)) = args.split_first() else {
            return; // an empty inline line: Redis answers nothing
        };
        let upper = name.to_ascii_uppercase();
        let Some(&(command, arity)) = COMMANDS.iter().find(|(c, _)| c.as_bytes() == upper) else {
            return self.out.error(&unknown_command(name, rest));
        };
        let argc = args.len();
        let needed = arity.unsigned_abs() as usize;
        if (arity >= 0 && argc != needed) || argc < needed {
            return self.out.error(&wrong_arity(&command.to_lowercase()));
        }
        match (command, rest) {
            ("PING", []) => self.out.simple("PONG"),
            ("PING" | "ECHO", [message]) => self.out.bulk(Some(message)),
            ("SET", [key, value, options @ ..]) => self.set(key, value, options, now),
            ("GET", [key]) => self.out.bulk(self.store.get(key, now)),
            ("INCR", [key]) => self.incr(key, now),
            ("DEL", keys) => {
                let n = keys.iter().filter(|k| self.store.remove(k, now)).count();
                self.out.integer(n as i64)
            }
            ("EXISTS", keys) => {
                let n = keys.iter().filter(|k| self.store.contains(k, now)).count();
                self.out.integer(n as i64)
            }
            ("TTL", [key]) => self.ttl(key, Unit::Seconds, now),
            ("PTTL", [key]) => self.ttl(key, Unit::Millis, now),
            ("EXPIRE", [key, when, options @ ..]) => {
                self.expire("expire", key, when, options, Unit::Seconds, now)
            }
            ("PEXPIRE", [key, when, options @ ..]) => {
                self.expire("pexpire", key, when, options, Unit::Millis, now)
            }
            ("PERSIST", [key]) => {
                let had = matches!(self.store.deadline(key, now), Some(Some(_)));
                if had {
                    self.store.set_deadline(key, None);
                }
                self.out.integer(i64::from(had))
            }
            ("DBSIZE", []) => self.out.integer(self.store.len() as i64),
            ("FLUSHALL", []) => {
                self.store.clear();
                self.out.ok()
            }
            ("FLUSHALL", [mode])
                if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") =>
            {
                self.store.clear();
                self.out.ok()
            }
            ("FLUSHALL", _) => self.out.error(SYNTAX),
            ("CONFIG", [sub, patterns @ ..]) => self.config(sub, patterns),
            // The arities above leave nothing else (PING with two words).
            _ => self.out.error(&wrong_arity(&command.to_lowercase())),
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8], options: &[Vec<u8>], now: i64) {
        let Some(o) = SetOptions::parse(options) else {
            return self.out.error(SYNTAX);
        };
        let ttl = match o.expiry {
            Expiry::Clear => Ttl::Clear,
            Expiry::Keep => Ttl::Keep,
            Expiry::Time(time, value) => match time.deadline(value, now) {
                Ok(at) => Ttl::At(at),
                Err(e) => return self.out.error(&e),
            },
        };
        if o.get {
            self.out.bulk(self.store.get(key, now));
        }
        let allowed = match o.condition {
            Condition::Always => true,
            Condition::IfAbsent => !self.store.contains(key, now),
            Condition::IfPresent => self.store.contains(key, now),
        };
        if allowed {
            self.store.set(key, value.to_vec(), ttl, now);
        }
        match (o.get, allowed) {
            (true, _) => {} // the old value was the reply
            (false, true) => self.out.ok(),
            (false, false) => self.out.bulk(None),
        }
    }

    /// `INCR`: keeps the key's deadline, as Redis does.
    fn incr(&mut self, key: &[u8], now: i64) {
        let current = match self.store.get(key, now) {
            None => 0,
            Some(value) => match parse_int(value) {
                Some(n) => n,
                None => return self.out.error(NOT_INTEGER),
            },
        };
        let Some(n) = current.checked_add(1) else {
            return self.out.error("increment or decrement would overflow");
        };
        self.store
            .set(key, n.to_string().into_bytes(), Ttl::Keep, now);
        self.out.integer(n)
    }

    /// `TTL` and `PTTL`: -2 for no key, -1 for no deadline; seconds are
    /// rounded to the nearest.
    fn ttl(&mut self, key: &[u8], unit: Unit, now: i64) {
        let reply = match self.store.deadline(key, now) {
            None => -2,
            Some(None) => -1,
            Some(Some(at)) => {
                let left = at.saturating_sub(now).max(0);
                match unit {
                    Unit::Millis => left,
                    Unit::Seconds => left.saturating_add(500) / 1000,
                }
            }
        };
        self.out.integer(reply)
    }

    /// `EXPIRE` and `PEXPIRE`: a time from now, which may be in the past
    /// (the key is removed at once); 1 if the key took it.
    fn expire(
        &mut self,
        command: &str,
        key: &[u8],
        when: &[u8],
        options: &[Vec<u8>],
        unit: Unit,
        now: i64,
    ) {
        let o = match ExpireOptions::parse(options) {
            Ok(o) => o,
            Err(e) => return self.out.error(&e),
        };
        let Some(n) = parse_int(when) else {
            return self.out.error(NOT_INTEGER);
        };
        let Some(at) = unit.millis(n).and_then(|ms| ms.checked_add(now)) else {
            return self.out.error(&invalid_expire(command));
        };
        let took = match self.store.deadline(key, now) {
            Some(current) if o.allow(current, at) => {
                if at <= now {
                    self.store.remove(key, now);
                } else {
                    self.store.set_deadline(key, Some(at));
                }
                true
            }
            _ => false,
        };
        self.out.integer(i64::from(took))
    }

    /// `CONFIG GET pattern...`: the known parameters that match, as name
    /// and value pairs, each once. A name without `*`, `?` or `[` is
    /// looked up as it is, and answered as the client spelled it (as Redis
    /// does).
    fn config(&mut self, sub: &[u8], patterns: &[Vec<u8>]) {
        if !sub.eq_ignore_ascii_case(b"GET") {
            let message = format!("unknown subcommand '{}'. Try CONFIG HELP.", lossy(sub));
            return self.out.error(&message);
        }
        if patterns.is_empty() {
            return self.out.error(&wrong_arity("config|get"));
        }
        let mut found: Vec<(&[u8], &str)> = Vec::new();
        let mut seen = [false; CONFIG.len()];
        for pattern in patterns {
            let is_glob = pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
            for (i, &(name, value)) in CONFIG.iter().enumerate() {
                let answer: &[u8] = match is_glob {
                    true if glob(pattern, name.as_bytes()) => name.as_bytes(),
                    false if pattern.eq_ignore_ascii_case(name.as_bytes()) => pattern,
                    _ => continue,
                };
                if !std::mem::replace(&mut seen[i], true) {
                    found.push((answer, value));
                }
            }
        }
        self.out.array(2 * found.len());
        for (name, value) in found {
            self.out.bulk(Some(name));
            self.out.bulk(Some(value.as_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `line` (words split at spaces) at `now`; the reply as text.
    fn run(r: &mut Resp, now: i64, line: &str) -> String {
        let args: Vec<Vec<u8>> = line.split(' ').map(|w| w.as_bytes().to_vec()).collect();
        r.out.clear();
        r.execute(&args, now);
        String::from_utf8_lossy(r.out.bytes()).into_owned()
    }

    /// Each `(command, reply)` in turn at `now`, the replies as
    /// redis-server 7.0 gave them.
    fn script(r: &mut Resp, now: i64, steps: &[(&str, &str)]) {
        for (line, want) in steps {
            assert_eq!(run(r, now, line), *want, "{line}");
        }
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn commands_answer_like_redis() {
        let mut r = Resp::default();
        script(
            &mut r,
            NOW,
            &[
                ("ping", "+PONG\r\n"),
                ("PING hi", "$2\r\nhi\r\n"),
                (
                    "PING a b",
                    "-ERR wrong number of arguments for 'ping' command\r\n",
                ),
                ("GET n", "$-1\r\n"),
                ("INCR n", ":1\r\n"),
                ("INCR n", ":2\r\n"),
                ("SET s abc", "+OK\r\n"),
                ("INCR s", "-ERR value is not an integer or out of range\r\n"),
                ("GET s", "$3\r\nabc\r\n"),
                ("EXISTS s s x", ":2\r\n"),
                ("DEL s n x", ":2\r\n"),
                ("SET s 007", "+OK\r\n"),
                ("INCR s", "-ERR value is not an integer or out of range\r\n"),
                ("SET s 9223372036854775807", "+OK\r\n"),
                ("INCR s", "-ERR increment or decrement would overflow\r\n"),
                (
                    "GET",
                    "-ERR wrong number of arguments for 'get' command\r\n",
                ),
                (
                    "SET k",
                    "-ERR wrong number of arguments for 'set' command\r\n",
                ),
                (
                    "NOPE a b",
                    "-ERR unknown command 'NOPE', with args beginning with: 'a' 'b' \r\n",
                ),
                ("FLUSHALL x", "-ERR syntax error\r\n"),
                ("FLUSHALL async", "+OK\r\n"),
                ("DBSIZE", ":0\r\n"),
            ],
        );
    }

    #[test]
    fn set_options_combine_as_in_redis() {
        let mut r = Resp::default();
        script(
            &mut r,
            NOW,
            &[
                ("SET k v NX", "+OK\r\n"),
                ("SET k w NX", "$-1\r\n"),
                ("SET x v XX", "$-1\r\n"),
                ("GET x", "$-1\r\n"),
                ("SET k w xx", "+OK\r\n"),
                ("SET k v NX XX", "-ERR syntax error\r\n"),
                ("SET k v GET", "$1\r\nw\r\n"),
                ("SET new v GET", "$-1\r\n"),
                ("SET k z NX GET", "$1\r\nv\r\n"),
                ("GET k", "$1\r\nv\r\n"),
                ("SET k v EX 10 PX 100", "-ERR syntax error\r\n"),
                ("SET k v EX 10 EX 20", "+OK\r\n"),
                ("TTL k", ":20\r\n"),
                ("SET k v KEEPTTL EX 10", "-ERR syntax error\r\n"),
                ("SET k v EX 10 KEEPTTL", "-ERR syntax error\r\n"),
                ("SET k v EX", "-ERR syntax error\r\n"),
                ("SET k v FOO", "-ERR syntax error\r\n"),
                ("SET k v EX abc FOO", "-ERR syntax error\r\n"),
                (
                    "SET k v EX abc",
                    "-ERR value is not an integer or out of range\r\n",
                ),
                (
                    "SET k v EX +10",
                    "-ERR value is not an integer or out of range\r\n",
                ),
                (
                    "SET k v EX 010",
                    "-ERR value is not an integer or out of range\r\n",
                ),
                (
                    "SET k v EX 1.5",
                    "-ERR value is not an integer or out of range\r\n",
                ),
                (
                    "SET k v EX 99999999999999999999",
                    "-ERR value is not an integer or out of range\r\n",
                ),
                (
                    "SET k v EX 0",
                    "-ERR invalid expire time in 'set' command\r\n",
                ),
                (
                    "SET k v PX -5",
                    "-ERR invalid expire time in 'set' command\r\n",
                ),
                (
                    "SET k v EXAT 0",
                    "-ERR invalid expire time in 'set' command\r\n",
                ),
                (
                    "SET k v EX 9223372036854775",
                    "-ERR invalid expire time in 'set' command\r\n",
                ),
                (
                    "SET k v PX 9223372036854775807",
                    "-ERR invalid expire time in 'set' command\r\n",
                ),
                ("SET k v PXAT 9223372036854775807", "+OK\r\n"),
                ("SET k v EX 9223372036854", "+OK\r\n"),
                (
                    "SET k v EX 0 GET",
                    "-ERR invalid expire time in 'set' command\r\n",
                ),
                ("SET k v px 100000", "+OK\r\n"),
                ("PTTL k", ":100000\r\n"),
                ("SET k w KEEPTTL", "+OK\r\n"),
                ("PTTL k", ":100000\r\n"),
                ("SET k w", "+OK\r\n"),
                ("TTL k", ":-1\r\n"),
                ("TTL nope", ":-2\r\n"),
                ("PTTL nope", ":-2\r\n"),
            ],
        );
    }

    #[test]
    fn keys_expire_when_their_time_has_passed() {
        let mut r = Resp::default();
        script(
            &mut r,
            NOW,
            &[("SET k v PX 50", "+OK\r\n"), ("SET n 5 EX 1", "+OK\r\n")],
        );
        script(
            &mut r,
            NOW + 50,
            &[("GET k", "$1\r\nv\r\n"), ("PTTL k", ":0\r\n")],
        );
        script(
            &mut r,
            NOW + 51,
            &[
                ("GET k", "$-1\r\n"),
                ("EXISTS k", ":0\r\n"),
                ("TTL k", ":-2\r\n"),
                ("INCR n", ":6\r\n"),
                ("TTL n", ":1\r\n"),
                ("SET k v EXAT 1", "+OK\r\n"),
                ("DBSIZE", ":2\r\n"),
                ("GET k", "$-1\r\n"),
                ("DBSIZE", ":1\r\n"),
            ],
        );
        script(
            &mut r,
            NOW + 1001,
            &[("DEL n", ":0\r\n"), ("DBSIZE", ":0\r\n")],
        );
    }

    #[test]
    fn expire_and_persist_as_in_redis() {
        let mut r = Resp::default();
        script(
            &mut r,
            NOW,
            &[
                ("EXPIRE nope 10", ":0\r\n"),
                (
                    "EXPIRE nope abc",
                    "-ERR value is not an integer or out of range\r\n",
                ),
                ("EXPIRE nope 10 FOO", "-ERR Unsupported option FOO\r\n"),
                ("SET p v", "+OK\r\n"),
                ("EXPIRE p 10 XX", ":0\r\n"),
                ("EXPIRE p 10 GT", ":0\r\n"),
                ("EXPIRE p 10 LT", ":1\r\n"),
                ("EXPIRE p 10 NX", ":0\r\n"),
                (
                    "EXPIRE p 10 NX XX",
                    "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
                ),
                (
                    "EXPIRE p 10 GT LT",
                    "-ERR GT and LT options at the same time are not compatible\r\n",
                ),
                ("EXPIRE p 20 xx gt", ":1\r\n"),
                ("EXPIRE p 30 LT", ":0\r\n"),
                ("TTL p", ":20\r\n"),
                ("PEXPIRE p 1500", ":1\r\n"),
                ("TTL p", ":2\r\n"),
                ("PTTL p", ":1500\r\n"),
                (
                    "EXPIRE p 9223372036854775",
                    "-ERR invalid expire time in 'expire' command\r\n",
                ),
                (
                    "PEXPIRE p 9223372036854775807",
                    "-ERR invalid expire time in 'pexpire' command\r\n",
                ),
                ("PERSIST p", ":1\r\n"),
                ("PERSIST p", ":0\r\n"),
                ("TTL p", ":-1\r\n"),
                ("PERSIST nope", ":0\r\n"),
                ("EXPIRE p -5", ":1\r\n"),
                ("EXISTS p", ":0\r\n"),
                ("DBSIZE", ":0\r\n"),
                (
                    "EXPIRE p",
                    "-ERR wrong number of arguments for 'expire' command\r\n",
                ),
            ],
        );
    }

    #[test]
    fn config_get_answers_known_parameters() {
        let mut r = Resp::default();
        script(
            &mut r,
            NOW,
            &[
                ("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
                ("CONFIG GET SAVE", "*2\r\n$4\r\nSAVE\r\n$0\r\n\r\n"),
                (
                    "config get appendonly",
                    "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
                ),
                ("CONFIG GET save save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
                ("CONFIG GET sav?", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
                (
                    "CONFIG GET append*",
                    "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
                ),
                ("CONFIG GET nosuch", "*0\r\n"),
                (
                    "CONFIG GET",
                    "-ERR wrong number of arguments for 'config|get' command\r\n",
                ),
                (
                    "CONFIG",
                    "-ERR wrong number of arguments for 'config' command\r\n",
                ),
                (
                    "CONFIG FOO",
                    "-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n",
                ),
            ],
        );
        let all = run(&mut r, NOW, "CONFIG GET *");
        assert!(
            all.starts_with(&format!("*{}\r\n", 2 * CONFIG.len())),
            "{all}"
        );
        for (name, _) in CONFIG {
            assert!(all.contains(&format!("\r\n{name}\r\n")), "{name} in {all}");
        }
    }

    #[test]
    fn integers_and_globs_as_redis_reads_them() {
        for (text, want) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-0", None),
            ("+1", None),
            ("01", None),
            (" 1", None),
            ("", None),
            ("-", None),
        ] {
            assert_eq!(parse_int(text.as_bytes()), want, "{text:?}");
        }
        for (pattern, name, want) in [
            ("*", "save", true),
            ("s*", "save", true),
            ("*ve", "save", true),
            ("S?VE", "save", true),
            ("*a*e*", "save", true),
            ("s*x", "save", false),
            ("save?", "save", false),
            ("", "save", false),
            ("**", "", true),
        ] {
            assert_eq!(
                glob(pattern.as_bytes(), name.as_bytes()),
                want,
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn errors_never_carry_a_line_break() {
        let mut r = Resp::default();
        r.out.clear();
        r.execute(&[b"NO\r\nPE".to_vec()], NOW);
        let reply = r.out.bytes();
        assert!(
            reply.starts_with(b"-ERR unknown command 'NO  PE'"),
            "{reply:?}"
        );
        assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
