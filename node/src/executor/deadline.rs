//! The execution deadline: [`Ticker`], the thread that advances an engine's epoch, and
//! [`Watch`], what an execution that reaches its epoch deadline does (wasmtime epoch
//! interruption with a callback).
//!
//! Fuel bounds what a capsule *computes*; the deadline bounds what it *takes*, whatever the
//! cost model misses (bulk memory operations, a slow host call). But a node's thread may be
//! preempted by the OS in the middle of an honest capsule, and wall time alone would then
//! kill it. So the deadline is checked against the thread's CPU time:
//!
//! - the ticker advances the epoch every `max_exec_time / 8`; an execution's first check
//!   comes after [`TICKS`] epochs (between 3/8 and 1/2 of `max_exec_time`), and records the
//!   thread's CPU time;
//! - each following check, [`TICKS`] epochs later, stops the execution (a `Deadline` trap)
//!   if the thread had the CPU for at least half of that interval, and otherwise gives it
//!   another interval;
//! - after [`MAX_EXTENSIONS`] intervals it is stopped whatever its CPU share.
//!
//! So a capsule spinning on the CPU is stopped about `max_exec_time` after it started, and
//! never later than about `(MAX_EXTENSIONS + 2) / 2 × max_exec_time`; executions shorter than
//! `3/8 × max_exec_time` never pay for a check.
//!
//! An idle node should not wake up thousands of times a second for nothing: after
//! [`IDLE_TICKS`] ticks without an execution the ticker parks, and the next execution wakes
//! it. Executions only read two flags (and write one once per tick), so the forwarding path
//! pays a few nanoseconds. The hand-over is race-free in practice: the ticker announces it is
//! parking, waits one more tick, and parks only if no execution marked itself busy in that
//! tick; an execution that starts after the announcement sees it and wakes the ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// Epoch ticks between two checks of a long execution (half a deadline).
pub(super) const TICKS: u64 = 4;
/// Checks that may find the thread mostly preempted before an execution is stopped anyway.
pub(super) const MAX_EXTENSIONS: u32 = 16;
/// Ticks without an execution before the ticker parks.
pub(super) const IDLE_TICKS: u32 = 64;
/// The shortest tick: a deadline below `TICKS` × this is rounded up.
const MIN_TICK: Duration = Duration::from_micros(50);

#[derive(Debug, Default)]
struct Flags {
    /// An execution ran since the ticker last looked.
    busy: AtomicBool,
    /// The ticker is parking or parked: an execution must wake it.
    parked: AtomicBool,
    /// Stop the thread (the last [`Ticker`] handle was dropped).
    stop: AtomicBool,
}

/// Advances an engine's epoch while executions run. Dropping it stops the thread.
#[derive(Debug)]
pub struct Ticker {
    flags: Arc<Flags>,
    thread: Thread,
    tick: Duration,
}

impl Ticker {
    /// Start ticking `engine` so that two check intervals (8 epochs) are `max_exec_time`.
    pub fn start(engine: &Engine, max_exec_time: Duration) -> std::io::Result<Ticker> {
        let tick = (max_exec_time / (2 * TICKS as u32)).max(MIN_TICK);
        let flags = Arc::new(Flags::default());
        let engine = engine.clone();
        let f = flags.clone();
        let handle = thread::Builder::new()
            .name("ants-epoch".into())
            .spawn(move || run(&engine, &f, tick))?;
        Ok(Ticker {
            flags,
            thread: handle.thread().clone(),
            tick,
        })
    }

    /// The epoch period.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// An execution is about to start: mark the ticker busy and wake it if it parked.
    #[inline]
    pub fn note_run(&self) {
        let f = &self.flags;
        if !f.busy.load(Ordering::Relaxed) {
            f.busy.store(true, Ordering::Relaxed);
        }
        if f.parked.load(Ordering::Relaxed) && f.parked.swap(false, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// The deadline state of one execution: reset when it starts, consulted only if it reaches
/// its first epoch deadline.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Watch {
    /// The thread's CPU time at the previous check.
    mark: Option<Duration>,
    /// Checks that gave the execution another interval.
    extensions: u32,
}

impl Watch {
    /// The execution reached an epoch deadline: stop it (`true`), or give it another
    /// interval of [`TICKS`] epochs. `interval` is the wall time of one interval.
    pub(super) fn expired(&mut self, interval: Duration) -> bool {
        let cpu = thread_cpu_time();
        let stop = match self.mark {
            None => false,
            Some(prev) => {
                cpu.saturating_sub(prev) >= interval / 2 || self.extensions >= MAX_EXTENSIONS
            }
        };
        if !stop {
            self.extensions += u32::from(self.mark.is_some());
            self.mark = Some(cpu);
        }
        stop
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if r != 0 {
        // Cannot measure: count the interval as used, so the deadline still holds.
        return Duration::MAX;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn run(engine: &Engine, f: &Flags, tick: Duration) {
    let mut idle = 0u32;
    while !f.stop.load(Ordering::Acquire) {
        thread::sleep(tick);
        engine.increment_epoch();
        if f.busy.swap(false, Ordering::AcqRel) {
            idle = 0;
            continue;
        }
        idle += 1;
        if idle < IDLE_TICKS {
            continue;
        }
        // Announce, give a running execution one more tick to show itself, then park.
        f.parked.store(true, Ordering::SeqCst);
        thread::sleep(tick);
        engine.increment_epoch();
        if f.busy.swap(false, Ordering::AcqRel) || !f.parked.load(Ordering::Acquire) {
            f.parked.store(false, Ordering::Release);
            idle = 0;
            continue;
        }
        while f.parked.load(Ordering::Acquire) && !f.stop.load(Ordering::Acquire) {
            thread::park();
        }
        idle = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_while_busy_parks_when_idle_and_wakes_on_demand() {
        let engine = Engine::new(wasmtime::Config::new().epoch_interruption(true)).unwrap();
        let t = Ticker::start(&engine, Duration::from_millis(4)).unwrap();
        assert_eq!(t.tick(), Duration::from_micros(500));
        // Busy for a while: it ticks.
        for _ in 0..20 {
            t.note_run();
            thread::sleep(Duration::from_millis(1));
        }
        // Idle: it parks within IDLE_TICKS + 1 ticks.
        let limit = std::time::Instant::now() + Duration::from_secs(5);
        while !t.flags.parked.load(Ordering::Acquire) && std::time::Instant::now() < limit {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(5));
        assert!(t.flags.parked.load(Ordering::Acquire), "parked when idle");
        t.note_run();
        assert!(
            !t.flags.parked.load(Ordering::Acquire),
            "woken by an execution"
        );
    }

    #[test]
    fn a_busy_thread_is_stopped_a_starved_one_is_extended() {
        let interval = Duration::from_millis(20);
        // First check: only marks.
        let mut w = Watch::default();
        assert!(!w.expired(interval));
        // Spin for an interval: stopped.
        let end = std::time::Instant::now() + interval;
        while std::time::Instant::now() < end {
            std::hint::black_box(0u64);
        }
        assert!(w.expired(interval));
        // Sleeping (as if preempted) is not CPU time: extended, up to the cap.
        let mut w = Watch::default();
        assert!(!w.expired(interval));
        for _ in 0..MAX_EXTENSIONS {
            thread::sleep(Duration::from_millis(1));
            assert!(!w.expired(interval));
        }
        assert!(
            w.expired(interval),
            "stopped after MAX_EXTENSIONS whatever its share"
        );
    }
}
