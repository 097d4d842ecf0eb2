//! The writer connection as it is held, and an optional trace of long holds.
//!
//! Every transaction on the main file's writer (a recording call, the worker's claims and
//! outcomes, stock pages, the expansion of recorded stock movements) holds one `Mutex`. A
//! recording call that finds it held waits for the rest of that transaction (issue 10
//! target 4). [`trace_writer_holds`] records each hold longer than a threshold: where it was
//! taken (the caller's source line, through `#[track_caller]`), how long it was held, how
//! much of that the holding thread ran on a CPU, how long it was runnable but not running
//! (preempted: the kernel's per-thread `schedstat`), and whether a caller was blocked waiting
//! for it when it was released. Off by default: then a hold costs one relaxed atomic load
//! when taken and one when released.

use rusqlite::Connection;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One hold of the writer longer than the trace's threshold.
#[derive(Clone, Debug)]
pub struct WriterHold {
    /// Where the writer was taken (file and line of the library's call).
    pub caller: &'static Location<'static>,
    /// When it was taken, from the start of the trace.
    pub at: Duration,
    /// How long it was held.
    pub held: Duration,
    /// Of it, CPU time of the holding thread (`CLOCK_THREAD_CPUTIME_ID`).
    pub cpu: Duration,
    /// Of it, time the holding thread was runnable but waiting for a CPU (preempted), from
    /// `/proc/thread-self/schedstat`; zero where that file cannot be read.
    pub run_delay: Duration,
    /// Whether a caller was blocked waiting for the writer when it was released.
    pub waited_for: bool,
}

struct Trace {
    start: Instant,
    min: Duration,
    holds: Vec<WriterHold>,
}

static TRACING: AtomicBool = AtomicBool::new(false);
static TRACE: Mutex<Option<Trace>> = Mutex::new(None);
/// At most this many holds are kept (a trace left on is bounded).
const MAX_HOLDS: usize = 1_000_000;

/// Starts (`Some(threshold)`) or stops (`None`) tracing holds of every store's writer
/// longer than the threshold, in this process. Starting again clears what was traced.
pub fn trace_writer_holds(min: Option<Duration>) {
    let mut t = TRACE.lock().unwrap_or_else(|p| p.into_inner());
    *t = min.map(|min| Trace {
        start: Instant::now(),
        min,
        holds: Vec::new(),
    });
    TRACING.store(t.is_some(), Ordering::SeqCst);
}

/// The holds traced since the trace started or since the last call of this.
pub fn take_writer_holds() -> Vec<WriterHold> {
    TRACE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .map(|t| std::mem::take(&mut t.holds))
        .unwrap_or_default()
}

/// What is read when a traced hold starts.
struct Started {
    caller: &'static Location<'static>,
    at: Instant,
    cpu: Duration,
    run_delay: Duration,
}

/// The writer connection, held. Derefs to the connection; releasing it records the hold
/// when a trace runs.
pub(crate) struct WriterGuard<'a> {
    // Dropped after `drop` below has read the clocks: the lock is released last.
    guard: MutexGuard<'a, Connection>,
    waiting: &'a AtomicUsize,
    started: Option<Started>,
}

impl<'a> WriterGuard<'a> {
    pub(crate) fn new(
        guard: MutexGuard<'a, Connection>,
        waiting: &'a AtomicUsize,
        caller: &'static Location<'static>,
    ) -> WriterGuard<'a> {
        let started = TRACING.load(Ordering::Relaxed).then(|| Started {
            caller,
            at: Instant::now(),
            cpu: thread_cpu(),
            run_delay: run_delay(),
        });
        WriterGuard {
            guard,
            waiting,
            started,
        }
    }
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.guard
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.guard
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        let Some(s) = self.started.take() else {
            return;
        };
        let held = s.at.elapsed();
        let waited_for = self.waiting.load(Ordering::SeqCst) > 0;
        let mut t = TRACE.lock().unwrap_or_else(|p| p.into_inner());
        let Some(t) = t.as_mut() else { return };
        if held < t.min || t.holds.len() >= MAX_HOLDS {
            return;
        }
        t.holds.push(WriterHold {
            caller: s.caller,
            at: s.at.saturating_duration_since(t.start),
            held,
            cpu: thread_cpu().saturating_sub(s.cpu),
            run_delay: run_delay().saturating_sub(s.run_delay),
            waited_for,
        });
    }
}

/// CPU time of the calling thread.
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Time the calling thread has spent runnable without a CPU (Linux `schedstat`, second
/// field, ns); zero elsewhere.
fn run_delay() -> Duration {
    #[cfg(target_os = "linux")]
    {
        use std::io::Read;
        let mut buf = [0u8; 96];
        let Ok(mut f) = std::fs::File::open("/proc/thread-self/schedstat") else {
            return Duration::ZERO;
        };
        let Ok(n) = f.read(&mut buf) else {
            return Duration::ZERO;
        };
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .map(Duration::from_nanos)
            .unwrap_or(Duration::ZERO)
    }
    #[cfg(not(target_os = "linux"))]
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trace records a hold over its threshold with its caller's line and leaves shorter
    /// ones out; stopped, it records nothing.
    #[test]
    fn a_long_hold_is_traced_with_its_caller_and_a_short_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("a.db")).unwrap();
        trace_writer_holds(Some(Duration::from_millis(20)));
        drop(store.conn());
        let line = line!() + 1;
        let held = store.conn();
        std::thread::sleep(Duration::from_millis(40));
        drop(held);
        let holds: Vec<_> = take_writer_holds()
            .into_iter()
            .filter(|h| h.caller.file().ends_with("holds.rs"))
            .collect();
        trace_writer_holds(None);
        assert_eq!(holds.len(), 1, "{holds:?}");
        assert_eq!(holds[0].caller.line(), line);
        assert!(holds[0].held >= Duration::from_millis(40));
        assert!(holds[0].cpu < holds[0].held, "{:?}", holds[0]);
        drop(store.conn());
        std::thread::sleep(Duration::from_millis(1));
        assert!(take_writer_holds().is_empty());
    }
}
