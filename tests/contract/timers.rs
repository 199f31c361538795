//! 7. Timers.

use crate::prelude::*;

backend_suite! {
    connection_and_loop_timers,
    a_timer_due_in_300_us_is_not_held_to_a_millisecond,
}

/// Per connection: a label and the timers it armed.
#[derive(Default)]
pub(crate) struct TimerState {
    label: String,
    timers: HashMap<u64, TimerId>,
}

/// `name X`, `arm ID MS`, `cancel ID` (connection timers, answered `ok`,
/// `armed ID`, `cancel ID BOOL`), `garm ID MS`, `gcancel ID` (loop-wide
/// timers). A connection timer sends `fired ID`, a loop-wide one `gfired
/// ID` to the connection that armed it.
pub(crate) struct Timed {
    rec: Rec,
    global: HashMap<u64, (TimerId, ConnId)>,
}

pub(crate) fn id_and_ms(args: &str) -> Option<(u64, Duration)> {
    let (id, ms) = args.split_once(' ')?;
    Some((id.parse().ok()?, Duration::from_millis(ms.parse().ok()?)))
}

impl App for Timed {
    type State = TimerState;
    fn name(&self) -> &'static str {
        "timed"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut TimerState, _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        st: &mut TimerState,
        input: &[u8],
    ) -> usize {
        let (lines, used) = lines(input);
        for line in lines {
            let (cmd, args) = line.split_once(' ').unwrap_or((&line, ""));
            let reply = match (cmd, id_and_ms(args), args.parse::<u64>()) {
                ("name", _, _) => {
                    st.label = args.to_string();
                    "ok".to_string()
                }
                ("arm", Some((id, after)), _) => {
                    let timer = ctx.set_conn_timer(conn, after, id).expect("armed");
                    st.timers.insert(id, timer);
                    format!("armed {id}")
                }
                ("cancel", _, Ok(id)) => {
                    let timer = st.timers.get(&id).copied();
                    let cancelled = timer.is_some_and(|t| ctx.cancel_timer(t));
                    format!("cancel {id} {cancelled}")
                }
                ("garm", Some((id, after)), _) => {
                    let timer = ctx.set_timer(after, id).expect("armed");
                    self.global.insert(id, (timer, conn));
                    format!("garmed {id}")
                }
                ("gcancel", _, Ok(id)) => {
                    let timer = self.global.get(&id).map(|(t, _)| *t);
                    let cancelled = timer.is_some_and(|t| ctx.cancel_timer(t));
                    format!("gcancel {id} {cancelled}")
                }
                _ => "?".to_string(),
            };
            let _ = ctx.send(conn, format!("{reply}\n").as_bytes());
        }
        used
    }
    fn on_conn_timer(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, st: &mut TimerState, t: TimerId) {
        let id = t.tag();
        assert_eq!(
            st.timers.get(&id),
            Some(&t),
            "fired as set_conn_timer named it"
        );
        self.rec
            .note(ctx, conn, Ev::ConnTimer(id, st.label.clone()));
        let _ = ctx.send(conn, format!("fired {id}\n").as_bytes());
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, t: TimerId) {
        let id = t.tag();
        self.rec.global(ctx, Ev::Timer(id));
        if let Some(&(armed, conn)) = self.global.get(&id) {
            assert_eq!(armed, t, "fired as set_timer named it");
            let _ = ctx.send(conn, format!("gfired {id}\n").as_bytes());
        }
    }
    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: TimerState, reason: &CloseReason) {
        self.rec.close(ctx, conn, reason);
    }
}

/// Sends `script` in one write and reads lines until `replies` command
/// replies and the `fired` line `last` (if any) came; returns (replies,
/// fired).
pub(crate) fn run_script(
    c: &mut TcpStream,
    script: &str,
    replies: usize,
    last: Option<&str>,
) -> (Vec<String>, Vec<String>) {
    c.write_all(script.as_bytes()).unwrap();
    let (mut answers, mut fired) = (Vec::new(), Vec::new());
    let waiting = |fired: &Vec<String>| last.is_some_and(|l| !fired.iter().any(|f| f == l));
    while answers.len() < replies || waiting(&fired) {
        let line = read_line(c);
        if line.starts_with("fired ") || line.starts_with("gfired ") {
            fired.push(line);
        } else {
            answers.push(line);
        }
    }
    (answers, fired)
}

/// Connection timers fire with their id, for their connection, with its
/// state; a cancelled one never fires (a later one does, and timers fire in
/// deadline order); cancelling a fired or cancelled timer says false; a
/// connection that closes with timers armed never gets `on_conn_timer`
/// afterwards, nor does a new connection in its slot. Loop-wide
/// `set_timer`/`cancel_timer` likewise.
fn connection_and_loop_timers(backend: &str) {
    let journal = Journal::default();
    let app = Timed {
        rec: Rec::new(&journal),
        global: HashMap::new(),
    };
    let lp = LoopThread::start(backend, Config::default(), app);
    let mut a = lp.connect();
    let mut b = lp.connect();
    let (b_replies, b_fired) = run_script(&mut b, "name b\narm 7 30\n", 2, Some("fired 7"));
    let (a_replies, a_fired) = run_script(
        &mut a,
        "name a\narm 1 50\narm 2 100\ncancel 2\narm 3 150\n",
        5,
        Some("fired 3"),
    );
    assert_eq!(b_replies, ["ok", "armed 7"]);
    assert_eq!(b_fired, ["fired 7"]);
    assert_eq!(
        a_replies,
        ["ok", "armed 1", "armed 2", "cancel 2 true", "armed 3"]
    );
    assert_eq!(
        a_fired,
        ["fired 1", "fired 3"],
        "the cancelled 2 never fired"
    );
    assert_eq!(ask(&mut a, "cancel 1"), "cancel 1 false", "fired already");
    assert_eq!(
        ask(&mut a, "cancel 2"),
        "cancel 2 false",
        "cancelled already"
    );
    let label = |s: &str| s.to_string();
    assert_eq!(
        journal.of(peer_of(&a))[1..],
        [Ev::ConnTimer(1, label("a")), Ev::ConnTimer(3, label("a"))]
    );
    assert_eq!(journal.of(peer_of(&b))[1..], [Ev::ConnTimer(7, label("b"))]);

    // Closed with two timers armed; a new connection likely takes its slot.
    let mut c = lp.connect();
    let c_peer = peer_of(&c);
    let (replies, _) = run_script(&mut c, "name c\narm 9 100\narm 10 100\n", 3, None);
    assert_eq!(replies, ["ok", "armed 9", "armed 10"]);
    drop(c);
    journal.wait_closed(c_peer);
    let mut d = lp.connect();
    assert_eq!(ask(&mut d, "name d"), "ok");
    // Due after c's timers: once it fires, theirs were due too.
    let (_, fired) = run_script(&mut a, "arm 11 300\n", 1, Some("fired 11"));
    assert_eq!(fired, ["fired 11"]);
    let conn_timers = journal.count(|e| matches!(e, Ev::ConnTimer(..)));
    assert_eq!(conn_timers, 4, "7, 1, 3, 11 and nothing for c or d");
    assert_eq!(journal.of(peer_of(&d)), [Ev::Open]);

    // Loop-wide.
    let (replies, fired) = run_script(
        &mut a,
        "garm 100 50\ngarm 101 80\ngcancel 101\ngarm 102 120\n",
        4,
        Some("gfired 102"),
    );
    assert_eq!(
        replies,
        ["garmed 100", "garmed 101", "gcancel 101 true", "garmed 102"]
    );
    assert_eq!(fired, ["gfired 100", "gfired 102"]);
    assert_eq!(ask(&mut a, "gcancel 100"), "gcancel 100 false");
    assert_eq!(
        journal.count(|e| matches!(e, Ev::Timer(_))),
        2,
        "101 never fired"
    );
    drop((a, b, d));
    lp.stop(LIVENESS);
}

/// Arms a 300 µs timer again and again, for at most [`LIVENESS`], until
/// [`PROMPT`] of them fired less than 600 µs late; then stops.
struct Precise {
    armed: Instant,
    until: Instant,
    fired: usize,
    prompt: usize,
    least_late: Duration,
}

const SHORT: Duration = Duration::from_micros(300);
const PROMPT: usize = 20;

impl App for Precise {
    type State = ();
    fn name(&self) -> &'static str {
        "precise"
    }
    fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
        input.len()
    }
    fn on_start(&mut self, ctx: &mut Ctx<'_>) {
        self.armed = ctx.now();
        ctx.set_timer(SHORT, 0).expect("armed");
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _: TimerId) {
        // Timers count from the turn's start (`ctx.now()` when armed).
        let now = Instant::now();
        assert!(now >= self.armed + SHORT, "fired early");
        let late = now - (self.armed + SHORT);
        self.fired += 1;
        self.least_late = self.least_late.min(late);
        if late < Duration::from_micros(600) {
            self.prompt += 1;
        }
        if self.prompt >= PROMPT || now >= self.until {
            ctx.stop();
            return;
        }
        self.armed = ctx.now();
        ctx.set_timer(SHORT, 0).expect("armed");
    }
}

/// The loop waits for its next timer to the nanosecond, not in whole
/// milliseconds: a timer due in 300 µs fires less than 600 µs late again
/// and again (a loop that rounds its waits up to 1 ms fires it at least
/// 700 µs late but for a rare coincidence), and never early.
fn a_timer_due_in_300_us_is_not_held_to_a_millisecond(backend: &str) {
    let mut lp: EventLoop<()> =
        EventLoop::new(backend.parse().expect("a backend name"), Config::default())
            .expect("create the loop");
    let now = Instant::now();
    let mut app = Precise {
        armed: now,
        until: now + LIVENESS,
        fired: 0,
        prompt: 0,
        least_late: Duration::MAX,
    };
    lp.run(&mut app).expect("the loop runs");
    assert!(
        app.prompt >= PROMPT,
        "of {} timers of 300 µs, {} fired less than 600 µs late (the least late by {:?})",
        app.fired,
        app.prompt,
        app.least_late
    );
}
