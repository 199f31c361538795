//! Process limits that a server with thousands of sockets needs raised.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the open-files soft limit to the hard limit; returns the soft
/// limit now in force (`None`: unlimited).
pub fn raise_nofile_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}
