//! 10. Wake-ups and job results.

use crate::prelude::*;

backend_suite! {
    wake_calls_on_wake_but_job_results_do_not,
}

/// `job`: offloads a closure returning 7, answered `done 7` from
/// `on_job_done`. Wake-ups are journaled.
pub(crate) struct Waking {
    rec: Rec,
}

impl App for Waking {
    type State = ();
    fn name(&self) -> &'static str {
        "waking"
    }
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), _: iomux::Origin) {
        self.rec.open(ctx, conn);
    }
    fn on_data(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, _: &mut (), input: &[u8]) -> usize {
        let (lines, used) = lines(input);
        for _ in lines {
            if ctx.offload(conn, || Box::new(7u32) as JobResult).is_none() {
                let _ = ctx.send(conn, b"no pool\n");
            }
        }
        used
    }
    fn on_job_done(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _: &mut (),
        _: JobId,
        result: JobResult,
    ) {
        self.rec.note(ctx, conn, Ev::JobDone);
        let value = result.downcast::<u32>().map_or(0, |v| *v);
        let _ = ctx.send(conn, format!("done {value}\n").as_bytes());
    }
    fn on_wake(&mut self, ctx: &mut Ctx<'_>) {
        self.rec.global(ctx, Ev::Wake);
    }
}

/// `Waker::wake` calls `on_wake`; the pool's job results ring the same
/// doorbell but must not.
fn wake_calls_on_wake_but_job_results_do_not(backend: &str) {
    let journal = Journal::default();
    let mut config = Config::default();
    config.workers = 1;
    let app = Waking {
        rec: Rec::new(&journal),
    };
    let lp = LoopThread::start(backend, config, app);
    let mut c = lp.connect();
    let wakes = || journal.count(|e| *e == Ev::Wake);
    for _ in 0..5 {
        assert_eq!(ask(&mut c, "job"), "done 7");
    }
    c.write_all(b"job\njob\njob\n").unwrap();
    assert_eq!(read_n(&mut c, 21), b"done 7\ndone 7\ndone 7\n");
    // Each reply came after its result's doorbell was handled.
    assert_eq!(wakes(), 0, "job results called on_wake");
    lp.waker.wake().unwrap();
    journal.wait("on_wake", |es| es.iter().any(|e| e.ev == Ev::Wake));
    assert_eq!(ask(&mut c, "job"), "done 7");
    assert_eq!(wakes(), 1);
    lp.waker.wake().unwrap();
    journal.wait("a second on_wake", |es| {
        es.iter().filter(|e| e.ev == Ev::Wake).count() == 2
    });
    assert_eq!(journal.count(|e| *e == Ev::JobDone), 9);
    drop(c);
    lp.stop(LIVENESS);
}
