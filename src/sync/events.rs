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
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<String>,
    closed: bool,
}

impl EventQueue {
    pub fn push(&self, event: Value) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = q.events.len() >= CAPACITY;
        if dropped {
            q.events.pop_front();
        }
        q.events.push_back(event.to_string());
        drop(q);
        self.ready.notify_one();
        // Logged outside the lock: a log callback may itself read events.
        if dropped {
            log::warn!("event queue full ({CAPACITY}); the oldest event was dropped");
        }
    }

    /// Wakes every waiting reader; from now on `next` returns at once.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// The next event, waiting up to `timeout`; `Ok(None)` when none came, `Err(())` once
    /// the queue is closed.
    #[allow(clippy::result_unit_err)]
    pub fn next(&self, timeout: Duration) -> Result<Option<String>, ()> {
        let deadline = Instant::now() + timeout;
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if q.closed {
                return Err(());
            }
            if let Some(e) = q.events.pop_front() {
                return Ok(Some(e));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            q = self
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
