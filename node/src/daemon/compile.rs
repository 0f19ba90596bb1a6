//! [`CompileQueue`]: a bounded queue of compile jobs served by a fixed number of worker
//! threads, off the forwarding thread.
//!
//! Compiling is the most expensive thing a capsule can make a node do, so it is bounded three
//! ways: jobs come only from loads (at most `max_concurrent_fetches` at once, at most
//! `max_fetches_per_peer` per peer, each peer charged its compile time by the node core), the
//! queue holds at most `capacity` jobs (a job that does not fit fails at once as
//! "unavailable", counted), and `workers` threads (default 1) compile one module each at a
//! time, single-threaded, so compiling never takes more than `workers` cores from forwarding.
//!
//! Workers are plain threads, not tokio's blocking pool: a node that is asked to stop does not
//! wait for a compile in progress (the thread is left to finish on its own and its result is
//! dropped).

use std::path::PathBuf;
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

/// The queue and its workers. Dropping it lets the workers exit once idle.
#[derive(Debug)]
pub(super) struct CompileQueue {
    jobs: SyncSender<Job>,
    /// Jobs refused because the queue was full.
    pub(super) refused: u64,
}

impl CompileQueue {
    /// Start `workers` threads serving a queue of `capacity` jobs; results go to `done`.
    pub(super) fn start(
        compiler: &Compiler,
        workers: usize,
        capacity: usize,
        done: tokio_mpsc::UnboundedSender<Done>,
    ) -> std::io::Result<CompileQueue> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers.max(1) {
            let (rx, done, compiler) = (rx.clone(), done.clone(), compiler.clone());
            std::thread::Builder::new()
                .name(format!("ants-compile-{n}"))
                .spawn(move || work(&rx, &done, &compiler))?;
        }
        Ok(CompileQueue { jobs, refused: 0 })
    }

    /// Queue a job; if the queue is full or its workers are gone, the job's failure (an
    /// "unavailable" result to report at once).
    pub(super) fn submit(&mut self, job: Job) -> Option<Done> {
        let ty = job.ty();
        let why = match self.jobs.try_send(job) {
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

fn work(rx: &Mutex<Receiver<Job>>, done: &tokio_mpsc::UnboundedSender<Done>, compiler: &Compiler) {
    loop {
        // Hold the lock only to take a job, not while compiling.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let start = Instant::now();
        let (ty, result, stored_bytes, reused) = match job {
            Job::Compile { ty, code, dir } => {
                let r = compiler.compile(&code);
                let stored = match (&dir, &r) {
                    (Some(dir), Ok(m)) => persist::store(dir, compiler, &code, m),
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
        if done.send(d).is_err() {
            return;
        }
    }
}
