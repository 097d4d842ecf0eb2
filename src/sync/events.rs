//! Events for the POS, pulled with `fo_next_event` (the library never calls into app code
//! from its own threads for these).

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Beyond this the oldest events are dropped (and the drop is logged): a POS that never
/// reads events must not grow the process without bound.
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct EventQueue {
    queue: Mutex<VecDeque<String>>,
    ready: Condvar,
}

impl EventQueue {
    pub fn push(&self, event: Value) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= CAPACITY {
            q.pop_front();
            log::warn!("event queue full ({CAPACITY}); the oldest event was dropped");
        }
        q.push_back(event.to_string());
        self.ready.notify_one();
    }

    /// The next event, waiting up to `timeout`; `None` when none came.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = q.pop_front() {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            q = self
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
