//! The offload pool: worker threads for handlers too heavy for the loop.
//!
//! The one weakness of I/O multiplexing is that detection and
//! handling share a thread. An app hands heavy work to the pool with
//! [`crate::Ctx::offload`]; the loop goes on serving everyone else. A
//! worker runs the job, queues the result and rings the loop's
//! [`Waker`] (a doorbell: the results themselves wait in a queue). The
//! loop then hands each result to [`crate::App::on_job_done`] on its own
//! thread, so apps never need locks.

use crate::conn::ConnId;
use crate::waker::Waker;
use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// What a job returns; the app downcasts it in `on_job_done`.
pub type JobResult = Box<dyn Any + Send>;

/// A job given to the pool.
pub(crate) type Job = Box<dyn FnOnce() -> JobResult + Send>;

/// Identifies an offloaded job: returned by [`crate::Ctx::offload`],
/// handed back with its result. Ids grow in the order jobs were given.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(u64);

impl JobId {
    /// A number for logs and maps.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// The result of a job that panicked (the worker survives it).
#[derive(Debug)]
pub struct JobPanicked;

struct Inner {
    queue: Mutex<VecDeque<(JobId, ConnId, Job)>>,
    work: Condvar,
    done: Mutex<Vec<(JobId, ConnId, JobResult)>>,
    closed: AtomicBool,
    waker: Waker,
}

/// A fixed set of worker threads.
pub(crate) struct Pool {
    inner: Arc<Inner>,
    workers: usize,
    next_id: u64,
}

/// A poisoned lock only means a job panicked while another thread held
/// it; the queues themselves stay consistent, so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    pub(crate) fn new(workers: usize, waker: Waker) -> std::io::Result<Pool> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(VecDeque::new()),
            work: Condvar::new(),
            done: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            waker,
        });
        for i in 0..workers {
            let shared = inner.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("iomux-worker-{i}"))
                .spawn(move || worker(&shared));
            if let Err(e) = spawned {
                // Let the workers already started exit.
                inner.closed.store(true, Ordering::SeqCst);
                inner.work.notify_all();
                return Err(e);
            }
        }
        Ok(Pool {
            inner,
            workers,
            next_id: 0,
        })
    }

    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    pub(crate) fn submit(&mut self, conn: ConnId, job: Job) -> JobId {
        self.next_id += 1;
        let id = JobId(self.next_id);
        lock(&self.inner.queue).push_back((id, conn, job));
        self.inner.work.notify_one();
        id
    }

    /// Drops the queued (not yet running) jobs of `conn`, which closed.
    pub(crate) fn cancel(&self, conn: ConnId) {
        lock(&self.inner.queue).retain(|(_, c, _)| *c != conn);
    }

    /// Jobs waiting for a worker.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.inner.queue).len()
    }

    /// Results that came back since the last call.
    pub(crate) fn take_done(&self) -> Vec<(JobId, ConnId, JobResult)> {
        std::mem::take(&mut *lock(&self.inner.done))
    }
}

impl Drop for Pool {
    /// Queued jobs are dropped; running ones finish on their detached
    /// thread and their results are discarded.
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        lock(&self.inner.queue).clear();
        self.inner.work.notify_all();
    }
}

fn worker(inner: &Inner) {
    loop {
        let (id, conn, job) = {
            let mut queue = lock(&inner.queue);
            loop {
                if inner.closed.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(item) = queue.pop_front() {
                    break item;
                }
                queue = inner.work.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|_| Box::new(JobPanicked));
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        lock(&inner.done).push((id, conn, result));
        let _ = inner.waker.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(pool: &Pool, n: usize) -> Vec<(JobId, ConnId, JobResult)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            got.extend(pool.take_done());
            std::thread::sleep(Duration::from_millis(1));
        }
        got
    }

    #[test]
    fn results_come_back_with_their_ids_and_ring_the_waker() {
        let waker = Waker::new().unwrap();
        let mut pool = Pool::new(2, waker.clone()).unwrap();
        let conn = ConnId::new(1, 1);
        let ids: Vec<JobId> = (0..10u64)
            .map(|i| pool.submit(conn, Box::new(move || Box::new(i * i) as JobResult)))
            .collect();
        let mut got = wait_for(&pool, 10);
        assert_eq!(got.len(), 10);
        got.sort_by_key(|(id, _, _)| *id);
        for (i, (id, c, result)) in got.into_iter().enumerate() {
            assert_eq!(id, ids[i]);
            assert_eq!(c, conn);
            assert_eq!(*result.downcast::<u64>().unwrap(), (i * i) as u64);
        }
        let mut buf = [0u8; 8];
        assert!(
            rustix::io::read(waker.fd(), &mut buf).is_ok(),
            "the waker rang"
        );
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_worker_survives() {
        let mut pool = Pool::new(1, Waker::new().unwrap()).unwrap();
        let conn = ConnId::new(2, 1);
        pool.submit(conn, Box::new(|| panic!("job failed on purpose")));
        pool.submit(conn, Box::new(|| Box::new("after") as JobResult));
        let got = wait_for(&pool, 2);
        assert_eq!(got.len(), 2);
        assert!(got[0].2.is::<JobPanicked>());
        assert_eq!(*got[1].2.downcast_ref::<&str>().unwrap(), "after");
    }

    #[test]
    fn cancel_drops_only_that_connections_queued_jobs() {
        let mut pool = Pool::new(1, Waker::new().unwrap()).unwrap();
        let (a, b) = (ConnId::new(1, 1), ConnId::new(2, 1));
        let gate = std::sync::Arc::new(std::sync::Barrier::new(2));
        let g = gate.clone();
        // Occupies the only worker until the queue below is settled.
        pool.submit(
            b,
            Box::new(move || {
                g.wait();
                Box::new(0u8) as JobResult
            }),
        );
        for _ in 0..5 {
            pool.submit(a, Box::new(|| Box::new(1u8) as JobResult));
        }
        pool.submit(b, Box::new(|| Box::new(2u8) as JobResult));
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.queued() != 6 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1)); // the worker takes the gated job
        }
        pool.cancel(a);
        assert_eq!(pool.queued(), 1, "only b's queued job is left");
        gate.wait();
        let got = wait_for(&pool, 2);
        assert!(got.iter().all(|(_, c, _)| *c == b), "no job of a ran");
        assert_eq!(got.len(), 2);
    }
}
