//! Stopping a loop, or a group of loops, from any thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::mailbox::Group;
use crate::waker::Waker;

/// Asks a running loop, or every loop of a group, to shut down
/// gracefully, from any thread. Cheap to clone.
///
/// ```
/// use iomux::{App, Backend, Config, ConnId, Ctx, EventLoop};
///
/// struct Idle;
/// impl App for Idle {
///     type State = ();
///     fn on_data(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &mut (), input: &[u8]) -> usize {
///         input.len()
///     }
/// }
///
/// let mut lp = EventLoop::new(Backend::Auto, Config::default())?;
/// let stop = lp.stop_handle();
/// let stopper = std::thread::spawn(move || stop.stop());
/// lp.run(&mut Idle)?; // returns once the stop is asked and the loop is empty
/// stopper.join().unwrap();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct StopHandle {
    pub(crate) target: StopTarget,
}

#[derive(Clone)]
pub(crate) enum StopTarget {
    Loop {
        requested: Arc<AtomicBool>,
        waker: Waker,
    },
    Group(Arc<Group>),
}

impl std::fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.target {
            StopTarget::Loop { .. } => "loop",
            StopTarget::Group(_) => "group",
        };
        f.debug_struct("StopHandle").field("stops", &what).finish()
    }
}

impl StopHandle {
    /// Starts the graceful shutdown (stop accepting, flush, close).
    pub fn stop(&self) {
        match &self.target {
            StopTarget::Loop { requested, waker } => {
                requested.store(true, Ordering::SeqCst);
                let _ = waker.ring();
            }
            StopTarget::Group(group) => group.request_stop(),
        }
    }
}
