//! [`CompilePool`]: a bounded queue of compile jobs served by a fixed number of compile
//! threads, off the forwarding threads, shared by all of a node's workers (each takes a
//! [`CompileQueue`] into it, whose results come back to that worker).
//!
//! Compiling is the most expensive thing a capsule can make a node do, so it is bounded three
//! ways: jobs come only from loads (at most `max_concurrent_fetches` at once, at most
//! `max_fetches_per_peer` per peer, each peer charged its compile time by the node core), the
//! one queue holds at most `capacity` jobs (a job that does not fit fails at once as
//! "unavailable", counted), and `compile_workers` threads (default 1) compile one module each
//! at a time, single-threaded, so compiling never takes more than `compile_workers` cores
//! from forwarding, however many workers forward.
//!
//! Compile threads are plain threads, not tokio's blocking pool: a node that is asked to stop
//! does not wait for a compile in progress (the thread is left to finish on its own and its
//! result is dropped, and not persisted once its worker is gone; the node waits up to a
//! second for a write in progress and prunes the code directory to its bound once more as
//! it stops).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ants_core::LoadError;
use ants_wire::CapsuleType;
use tokio::sync::mpsc as tokio_mpsc;

use super::persist;
use crate::{CompiledModule, Compiler};

/// What to compile.
#[derive(Debug)]
pub(super) enum Job {
    /// Verified module bytes: compile, then persist into the code directory if there is one.
    Compile {
        ty: CapsuleType,
        code: Arc<[u8]>,
        dir: Option<PathBuf>,
    },
    /// A module in the code directory: read it back (verifying its hash), reuse its compiled
    /// form if wasmtime accepts it, else compile it again.
    Restore { ty: CapsuleType, dir: PathBuf },
}

impl Job {
    fn ty(&self) -> CapsuleType {
        match self {
            Job::Compile { ty, .. } | Job::Restore { ty, .. } => *ty,
        }
    }
}

/// A finished job.
#[derive(Debug)]
pub(super) struct Done {
    pub(super) ty: CapsuleType,
    /// The compiled module and its bytes (read back from disk for a restore), or why not.
    pub(super) result: Result<(CompiledModule, Arc<[u8]>), LoadError>,
    /// Wall time the job took on its worker.
    pub(super) took: Duration,
    /// Bytes the job wrote to (or found in) the code directory; 0 if none.
    pub(super) stored_bytes: u64,
    /// A restore reused the compiled form (no compile).
    pub(super) reused: bool,
}

/// A job and where its result goes (the worker that asked).
type Ticket = (Job, tokio_mpsc::UnboundedSender<Done>);

/// The compile threads and their bounded queue, shared by all of a node's workers. Dropping
/// every handle lets the threads exit once idle.
#[derive(Debug, Clone)]
pub(super) struct CompilePool {
    jobs: SyncSender<Ticket>,
    /// Compile threads writing into the code directory right now.
    persisting: Arc<AtomicUsize>,
}

impl CompilePool {
    /// Start `workers` threads serving a queue of `capacity` jobs.
    pub(super) fn start(
        compiler: &Compiler,
        workers: usize,
        capacity: usize,
    ) -> std::io::Result<CompilePool> {
        let (jobs, rx) = mpsc::sync_channel::<Ticket>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let persisting = Arc::new(AtomicUsize::new(0));
        for n in 0..workers.max(1) {
            let (rx, compiler, busy) = (rx.clone(), compiler.clone(), persisting.clone());
            std::thread::Builder::new()
                .name(format!("ants-compile-{n}"))
                .spawn(move || work(&rx, &compiler, &busy))?;
        }
        Ok(CompilePool { jobs, persisting })
    }

    /// Wait, at most `max`, until no compile thread is writing into the code directory.
    pub(super) fn wait_persisted(&self, max: Duration) {
        let end = Instant::now() + max;
        while self.persisting.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A queue into the pool whose results go to `done`.
    pub(super) fn queue(&self, done: tokio_mpsc::UnboundedSender<Done>) -> CompileQueue {
        CompileQueue {
            jobs: self.jobs.clone(),
            done,
            refused: 0,
        }
    }
}

/// One worker's way into the [`CompilePool`].
#[derive(Debug)]
pub(super) struct CompileQueue {
    jobs: SyncSender<Ticket>,
    done: tokio_mpsc::UnboundedSender<Done>,
    /// Jobs refused because the queue was full.
    pub(super) refused: u64,
}

impl CompileQueue {
    /// Queue a job; if the queue is full or its workers are gone, the job's failure (an
    /// "unavailable" result to report at once).
    pub(super) fn submit(&mut self, job: Job) -> Option<Done> {
        let ty = job.ty();
        let why = match self.jobs.try_send((job, self.done.clone())) {
            Ok(()) => return None,
            Err(TrySendError::Full(_)) => {
                self.refused += 1;
                "the compile queue is full"
            }
            Err(TrySendError::Disconnected(_)) => "the compile workers stopped",
        };
        Some(Done {
            ty,
            result: Err(LoadError::Unavailable(why.into())),
            took: Duration::ZERO,
            stored_bytes: 0,
            reused: false,
        })
    }
}

fn work(rx: &Mutex<Receiver<Ticket>>, compiler: &Compiler, persisting: &AtomicUsize) {
    loop {
        // Hold the lock only to take a job, not while compiling.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((job, done)) = job else { return };
        let start = Instant::now();
        let (ty, result, stored_bytes, reused) = match job {
            Job::Compile { ty, code, dir } => {
                let r = compiler.compile(&code);
                // A worker that stopped would never index (and bound) what is written now.
                // Counted as writing *before* the check: a node that stops waits for the
                // count to reach 0 after its workers are gone, so a write it does not wait
                // for would see the worker gone and not happen.
                let stored = match (&dir, &r) {
                    (Some(dir), Ok(m)) => {
                        persisting.fetch_add(1, Ordering::SeqCst);
                        let n = if done.is_closed() {
                            0
                        } else {
                            persist::store(dir, compiler, &code, m)
                        };
                        persisting.fetch_sub(1, Ordering::SeqCst);
                        n
                    }
                    _ => 0,
                };
                (ty, r.map(|m| (m, code)), stored, false)
            }
            Job::Restore { ty, dir } => match persist::restore(&dir, &ty, compiler) {
                Ok(r) => (ty, Ok((r.module, r.code)), r.stored, r.reused),
                Err(e) => (ty, Err(e), 0, false),
            },
        };
        let d = Done {
            ty,
            result,
            took: start.elapsed(),
            stored_bytes,
            reused,
        };
        // A worker that stopped no longer wants it; the others may.
        let _ = done.send(d);
    }
}
