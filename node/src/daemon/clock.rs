//! [`Clock`]: the node's time. Monotonic (timers, soft-state TTLs and budgets never jump when
//! the wall clock is stepped), but reads as time since the Unix epoch so capsules' `node_time`
//! stays meaningful: the wall clock at start-up plus the monotonic time elapsed since.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Node time: wall clock at start, advanced by a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    wall_at_start: Duration,
    start: Instant,
}

impl Clock {
    pub(super) fn start() -> Clock {
        Clock {
            wall_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: Instant::now(),
        }
    }

    /// Time since the node started.
    pub(super) fn uptime(&self) -> Duration {
        self.start.elapsed()
    }

    /// Now, in node time.
    pub(super) fn now(&self) -> Duration {
        self.wall_at_start.saturating_add(self.start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_goes_back() {
        let c = Clock::start();
        let mut last = c.now();
        for _ in 0..1000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
        assert!(
            last > Duration::from_secs(1_600_000_000),
            "reads as Unix time"
        );
    }
}
