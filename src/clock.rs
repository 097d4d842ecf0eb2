//! Time, behind one seam (CONTRACT §9 rule 9). Two clocks, never mixed:
//! - the **wall clock** stamps what people read and what Omnium receives; it may jump hours
//!   back or a year forward, so nothing is ever *scheduled* on it;
//! - the **monotonic clock** runs back-off, pauses, timeouts and schedules; it never goes
//!   back, but it restarts from zero with the process, so a schedule that must survive a
//!   restart is stored as "due" and re-armed from the monotonic clock at open.
//!
//! Production code takes an `Arc<dyn Clock>`; tests and the deterministic simulation pass a
//! [`ManualClock`] and move both clocks by hand.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

pub trait Clock: Send + Sync {
    /// Wall-clock milliseconds since the Unix epoch. May jump either way.
    fn wall_ms(&self) -> i64;
    /// Monotonic milliseconds since an arbitrary origin fixed for this process. Never
    /// decreases.
    fn mono_ms(&self) -> i64;
    /// True for the machine's clocks ([`SystemClock`]): times on it may be shared with
    /// other clients of the process (a pause of the API user they share).
    fn is_process_clock(&self) -> bool {
        false
    }
}

/// The real clocks of the machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn wall_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn mono_ms(&self) -> i64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        i64::try_from(origin.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn is_process_clock(&self) -> bool {
        true
    }
}

/// A clock moved by hand: `advance` moves both clocks together (time passing), `jump_wall`
/// moves only the wall clock (an NTP step, a mis-set BIOS clock).
#[derive(Debug)]
pub struct ManualClock {
    wall: AtomicI64,
    mono: AtomicI64,
}

impl ManualClock {
    pub fn new(wall_ms: i64) -> ManualClock {
        ManualClock {
            wall: AtomicI64::new(wall_ms),
            mono: AtomicI64::new(0),
        }
    }

    /// Time passes: both clocks move forward by `ms` (negative values are ignored).
    pub fn advance(&self, ms: i64) {
        let ms = ms.max(0);
        self.wall.fetch_add(ms, Ordering::SeqCst);
        self.mono.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall clock is stepped by `ms` (either way); the monotonic clock does not move.
    pub fn jump_wall(&self, ms: i64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn wall_ms(&self) -> i64 {
        self.wall.load(Ordering::SeqCst)
    }

    fn mono_ms(&self) -> i64 {
        self.mono.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_jump_leaves_the_monotonic_clock_alone() {
        let c = ManualClock::new(1_000_000);
        c.advance(500);
        c.jump_wall(-3_600_000);
        assert_eq!(c.mono_ms(), 500);
        assert_eq!(c.wall_ms(), 1_000_500 - 3_600_000);
        c.advance(-10);
        assert_eq!(c.mono_ms(), 500, "time never runs backwards");
    }

    #[test]
    fn the_system_monotonic_clock_never_decreases() {
        let c = SystemClock;
        let a = c.mono_ms();
        let b = c.mono_ms();
        assert!(b >= a);
        assert!(c.wall_ms() > 1_600_000_000_000);
    }
}
