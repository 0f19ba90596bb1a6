//! Recording a node core's inputs (`ants run --record DIR`, `[record]`) and reading them
//! back (`ants replay`).
//!
//! The node core ([`ants_core::Node`]) is deterministic given its configuration and the
//! sequence of calls into it: each call carries the node time it happens at, and the core's
//! randomness comes from its seed. What makes a live run unrepeatable is outside it — which
//! datagrams arrive, from whom and when, when timers fire, when a compile finishes and how
//! long it took, what apps ask. A [`Recorder`] in each worker's driver writes every such
//! call, in order, to `DIR/<address>/worker-<i>.rec`, and the modules the worker installed
//! to `DIR/<address>/modules/<type>.wasm`. `ants replay` (module `crate::replay`) makes the
//! same calls on a fresh node core with the same configuration and modules.
//!
//! To check that a replay reproduced the run, the recorder also hashes the node's outputs as
//! the driver takes them — every datagram sent (destination and bytes) and every delivery to
//! an app (app id and capsule) — with xxh3, and writes a checkpoint of both counts and hashes
//! every [`CHECKPOINT_EVERY`] inputs and at the end, with the node's counters. Only the
//! sequence matters, not when the driver drained it: a replay compares its own hash after the
//! same number of outputs.
//!
//! # File format (little-endian)
//!
//! Header: `ANTSREC\0`, format `u16` = [`FORMAT`], worker `u16`, workers `u16`, the node's
//! version string and its config file's text (each `u32` length + bytes). Then records: a
//! kind byte, the node time in nanoseconds (`u64`), and the kind's fields (see [`Input`]).
//! Addresses are a family byte (4 or 6), the address and a port; byte strings a `u32`
//! length and the bytes; types their 32 bytes.
//!
//! # Bounds
//!
//! A worker's file stops growing at `[record] max_bytes`: the recorder then writes a
//! `Truncated` record and records nothing more (a log line says so; the node runs on). It is
//! not a ring: the node core's state after dropped inputs could not be rebuilt from what
//! remains, so a rotated log could not be replayed. A write error stops it the same way.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use ants_core::node::NodeCounters;
use ants_wire::{Address, CapsuleType};
use tracing::warn;
use xxhash_rust::xxh3::Xxh3;

/// File magic.
pub const MAGIC: &[u8; 8] = b"ANTSREC\0";
/// Format version this build writes and reads (2: a reload carries the config file's text).
pub const FORMAT: u16 = 2;
/// Inputs between two checkpoints.
pub const CHECKPOINT_EVERY: u64 = 256;
/// Bytes of records collected before they go to the writer thread.
pub const BUFFER: usize = 1 << 20;

/// Longest datagram, module, config text, header or payload a record may hold (a reader
/// refuses longer ones as corrupt).
const MAX_FIELD: u32 = 64 << 20;
/// Most types one app registration lists.
const MAX_ACCEPT: u16 = 4096;

const KIND_DATAGRAM: u8 = 1;
const KIND_TIMEOUT: u8 = 2;
const KIND_MODULE_READY: u8 = 3;
const KIND_SET_STORED: u8 = 4;
const KIND_REGISTER: u8 = 5;
const KIND_UNREGISTER: u8 = 6;
const KIND_INJECT: u8 = 7;
const KIND_EVICT: u8 = 8;
const KIND_RECONFIGURED: u8 = 9;
const KIND_CHECKPOINT: u8 = 10;
const KIND_END: u8 = 11;
const KIND_TRUNCATED: u8 = 12;
const KIND_DRAINED: u8 = 13;
const KIND_DELIVERED: u8 = 14;

/// How a module load ended, as the node core was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleResult {
    /// Installed.
    Ok,
    /// The module was refused (invalid, over a limit …), with the message.
    Refused(String),
    /// It could not be compiled now (queue full, no directory …), with the message.
    Unavailable(String),
}

/// One recorded call into the node core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `handle_datagram(from, data)`.
    Datagram { from: SocketAddr, data: Vec<u8> },
    /// `handle_timeout`.
    Timeout,
    /// A compile or restore finished: `add_code` (when `added`, with the module saved beside
    /// the recording) then `module_ready` with `result` and the wall time it `took`.
    ModuleReady {
        ty: CapsuleType,
        added: bool,
        took: Duration,
        result: ModuleResult,
    },
    /// `set_stored(ty, stored)`: the code directory gained or lost the type.
    SetStored { ty: CapsuleType, stored: bool },
    /// `register_app_accepting(app, accept)`.
    Register { app: u32, accept: Vec<CapsuleType> },
    /// `unregister_app(app)`.
    Unregister { app: u32 },
    /// `inject(app, …)`.
    Inject {
        app: u32,
        ty: CapsuleType,
        code: Option<Vec<u8>>,
        dst: Address,
        resource: u16,
        header: Vec<u8>,
        payload: Vec<u8>,
        trace: Option<u64>,
    },
    /// `evict(ty)` (and the executor's unload).
    Evict { ty: CapsuleType },
    /// The node was reconfigured (a reload) from `config`, its file's text then.
    Reconfigured { config: String },
    /// Outputs so far.
    Checkpoint(Checkpoint),
    /// The run ended: outputs and counters.
    End(Checkpoint, EndCounters),
    /// Recording stopped at its bound (or a write error) after this many inputs.
    Truncated { inputs: u64 },
    /// The driver took this many datagrams from the node's transmit queue
    /// (`drain_transmits_up_to`): when it does matters, since the queue is bounded.
    Drained(u32),
    /// The driver took this many deliveries (`poll_delivery`).
    Delivered(u32),
}

/// Counts and running hashes of a node's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// Datagrams the node sent, and the hash of all of them in order.
    pub sent: u64,
    pub sent_hash: u64,
    /// Deliveries to apps, and their hash.
    pub delivered: u64,
    pub delivered_hash: u64,
}

/// The node counters compared at the end of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndCounters {
    pub datagrams_in: u64,
    pub capsules_in: u64,
    pub runs: u64,
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
}

impl EndCounters {
    /// The compared counters of `c`.
    pub fn of(c: &NodeCounters) -> EndCounters {
        EndCounters {
            datagrams_in: c.datagrams_in,
            capsules_in: c.capsules_in,
            runs: c.runs,
            sent: c.sent,
            delivered: c.delivered,
            dropped: c.drops.values().sum(),
        }
    }
}

/// The running hashes of a node's outputs.
pub struct Outputs {
    sent: u64,
    sent_hash: Xxh3,
    delivered: u64,
    delivered_hash: Xxh3,
}

impl std::fmt::Debug for Outputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outputs")
            .field("sent", &self.sent)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs {
            sent: 0,
            sent_hash: Xxh3::new(),
            delivered: 0,
            delivered_hash: Xxh3::new(),
        }
    }
}

impl Outputs {
    /// The node sent `bytes` to `to`.
    pub fn sent(&mut self, to: &SocketAddr, bytes: &[u8]) {
        hash_sent(&mut self.sent_hash, to, bytes);
        self.sent += 1;
    }

    /// The node delivered `capsule` to app `app`.
    pub fn delivered(&mut self, app: u32, capsule: &[u8]) {
        hash_delivery(&mut self.delivered_hash, app, capsule);
        self.delivered += 1;
    }

    /// Counts and hashes so far.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            sent: self.sent,
            sent_hash: self.sent_hash.digest(),
            delivered: self.delivered,
            delivered_hash: self.delivered_hash.digest(),
        }
    }
}

/// Add a datagram sent to `to` to the running hash `h` of a node's sends (the recording's
/// and a replay's).
pub fn hash_sent(h: &mut Xxh3, to: &SocketAddr, bytes: &[u8]) {
    let mut head = [0u8; 24];
    let n = encode_addr(to, &mut head);
    h.update(&head[..n]);
    h.update(&(bytes.len() as u32).to_le_bytes());
    h.update(bytes);
}

/// Add a delivery of `capsule` to app `app` to the running hash `h` of a node's deliveries.
pub fn hash_delivery(h: &mut Xxh3, app: u32, capsule: &[u8]) {
    h.update(&app.to_le_bytes());
    h.update(&(capsule.len() as u32).to_le_bytes());
    h.update(capsule);
}

/// `to` as family, address and port into `out` (as recorded and hashed); returns the length.
fn encode_addr(to: &SocketAddr, out: &mut [u8; 24]) -> usize {
    let port = to.port().to_le_bytes();
    match to.ip() {
        IpAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.octets());
            out[5..7].copy_from_slice(&port);
            7
        }
        IpAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.octets());
            out[17..19].copy_from_slice(&port);
            19
        }
    }
}

/// The paths of one node's recording under `dir`.
pub fn node_dir(dir: &Path, address: &Address) -> PathBuf {
    dir.join(address.to_string().replace(':', "_"))
}

/// Where worker `i`'s records go in a node's recording directory.
pub fn worker_file(node_dir: &Path, worker: usize) -> PathBuf {
    node_dir.join(format!("worker-{worker}.rec"))
}

/// Where module `ty` is saved in a node's recording directory.
pub fn module_file(node_dir: &Path, ty: &CapsuleType) -> PathBuf {
    node_dir.join("modules").join(format!("{ty}.wasm"))
}

/// One worker's recording.
///
/// The forwarding thread only appends records to an in-memory buffer; a writer thread
/// compresses full buffers (LZ4 frames) into the file. At most [`QUEUED_BUFFERS`] buffers of
/// [`BUFFER`] bytes wait for it: if the disk cannot keep up, recording stops (with a
/// `Truncated` record after the last buffer that made it) rather than slow the node or grow
/// without bound. A buffer also goes out after [`SEND_EVERY`] of node time, so a node that
/// dies loses at most that much of its recording.
pub struct Recorder {
    out: Option<Sink>,
    path: PathBuf,
    node_dir: PathBuf,
    /// Uncompressed bytes recorded (what `max_bytes` bounds).
    written: u64,
    max_bytes: u64,
    inputs: u64,
    saved: HashSet<CapsuleType>,
    outputs: Outputs,
}

/// The buffer being filled and the writer thread's ends.
struct Sink {
    buf: Vec<u8>,
    to_writer: SyncSender<Vec<u8>>,
    /// Empty buffers coming back for reuse.
    back: Receiver<Vec<u8>>,
    writer: Option<std::thread::JoinHandle<()>>,
    failed: Arc<AtomicBool>,
    /// Node time of the last buffer sent, and inputs recorded by then.
    sent_at: Duration,
    inputs_sent: u64,
}

/// Buffers waiting for the writer thread, at most.
pub const QUEUED_BUFFERS: usize = 8;
/// Node time after which a partly filled buffer is sent anyway.
pub const SEND_EVERY: Duration = Duration::from_millis(200);

/// The writer thread: compress every buffer into `file`, hand the buffer back.
fn write_loop(
    file: File,
    path: PathBuf,
    rx: Receiver<Vec<u8>>,
    back: SyncSender<Vec<u8>>,
    failed: Arc<AtomicBool>,
) {
    let mut enc = lz4_flex::frame::FrameEncoder::new(BufWriter::with_capacity(256 << 10, file));
    for mut buf in rx {
        if !failed.load(Ordering::Relaxed)
            && let Err(e) = enc.write_all(&buf).and_then(|()| enc.flush())
        {
            warn!(file = %path.display(), "recording stopped: {e}");
            failed.store(true, Ordering::Relaxed);
        }
        buf.clear();
        let _ = back.try_send(buf);
    }
    if !failed.load(Ordering::Relaxed) {
        match enc.finish() {
            Ok(mut w) => {
                if let Err(e) = w.flush() {
                    warn!(file = %path.display(), "recording: {e}");
                }
            }
            Err(e) => warn!(file = %path.display(), "recording: {e}"),
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("written", &self.written)
            .field("inputs", &self.inputs)
            .field("on", &self.on())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Start recording worker `worker` of `workers` of the node `address` under `dir`; the
    /// header carries `config_text`, which replay parses again.
    pub fn create(
        dir: &Path,
        address: &Address,
        (worker, workers): (usize, usize),
        config_text: &str,
        max_bytes: u64,
    ) -> io::Result<Recorder> {
        let node_dir = node_dir(dir, address);
        std::fs::create_dir_all(node_dir.join("modules"))?;
        let path = worker_file(&node_dir, worker);
        let file = File::create(&path)?;
        let (to_writer, rx) = mpsc::sync_channel(QUEUED_BUFFERS);
        let (give_back, back) = mpsc::sync_channel(QUEUED_BUFFERS);
        let failed = Arc::new(AtomicBool::new(false));
        let writer = {
            let (path, failed) = (path.clone(), Arc::clone(&failed));
            std::thread::Builder::new()
                .name(format!("ants-record-{worker}"))
                .spawn(move || write_loop(file, path, rx, give_back, failed))?
        };
        let mut buf = Vec::with_capacity(BUFFER + (64 << 10));
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT.to_le_bytes());
        buf.extend_from_slice(&(worker as u16).to_le_bytes());
        buf.extend_from_slice(&(workers as u16).to_le_bytes());
        put_bytes(&mut buf, crate::VERSION.as_bytes());
        put_bytes(&mut buf, config_text.as_bytes());
        Ok(Recorder {
            written: buf.len() as u64,
            out: Some(Sink {
                buf,
                to_writer,
                back,
                writer: Some(writer),
                failed,
                sent_at: Duration::ZERO,
                inputs_sent: 0,
            }),
            path,
            node_dir,
            max_bytes,
            inputs: 0,
            saved: HashSet::new(),
            outputs: Outputs::default(),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether it still records.
    pub fn on(&self) -> bool {
        self.out.is_some()
    }

    /// Inputs recorded.
    pub fn inputs(&self) -> u64 {
        self.inputs
    }

    /// Bytes recorded (uncompressed; what `max_bytes` bounds).
    pub fn bytes(&self) -> u64 {
        self.written
    }

    /// The output hashes.
    pub fn outputs(&mut self) -> &mut Outputs {
        &mut self.outputs
    }

    /// Append one record with `body`, or stop at the bound.
    fn record(&mut self, kind: u8, now: Duration, body: impl FnOnce(&mut Vec<u8>)) {
        let Some(sink) = &mut self.out else { return };
        let start = sink.buf.len();
        sink.buf.push(kind);
        sink.buf.extend_from_slice(&nanos(now).to_le_bytes());
        body(&mut sink.buf);
        let len = (sink.buf.len() - start) as u64;
        // Room is kept for the last record that says where it stopped.
        if self.written + len + 32 > self.max_bytes {
            sink.buf.truncate(start);
            warn!(
                file = %self.path.display(),
                max_bytes = self.max_bytes,
                inputs = self.inputs,
                "recording stopped at [record] max_bytes; the node runs on"
            );
            self.stop(now, self.inputs);
            return;
        }
        self.written += len;
        if sink.buf.len() >= BUFFER || now.saturating_sub(sink.sent_at) >= SEND_EVERY {
            self.send(now);
        }
    }

    /// Hand the buffer to the writer thread; if it is behind (or failed), stop recording.
    fn send(&mut self, now: Duration) {
        let Some(sink) = &mut self.out else { return };
        if sink.failed.load(Ordering::Relaxed) {
            self.out = None;
            return;
        }
        let next = sink
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER + (64 << 10)));
        let full = std::mem::replace(&mut sink.buf, next);
        match sink.to_writer.try_send(full) {
            Ok(()) => {
                sink.sent_at = now;
                sink.inputs_sent = self.inputs;
            }
            Err(_) => {
                warn!(
                    file = %self.path.display(),
                    "recording stopped: the disk cannot keep up with the node; the node runs on"
                );
                let inputs = sink.inputs_sent;
                sink.buf.clear();
                self.stop(now, inputs);
            }
        }
    }

    /// Stop recording: a `Truncated` record after the `inputs` that made it, then close.
    fn stop(&mut self, now: Duration, inputs: u64) {
        if let Some(sink) = &mut self.out {
            sink.buf.push(KIND_TRUNCATED);
            sink.buf.extend_from_slice(&nanos(now).to_le_bytes());
            sink.buf.extend_from_slice(&inputs.to_le_bytes());
        }
        self.close();
    }

    /// An input record; a checkpoint follows every [`CHECKPOINT_EVERY`].
    fn input(&mut self, kind: u8, now: Duration, body: impl FnOnce(&mut Vec<u8>)) {
        self.record(kind, now, body);
        self.inputs += 1;
        if self.inputs.is_multiple_of(CHECKPOINT_EVERY) {
            let cp = self.outputs.checkpoint();
            self.record(KIND_CHECKPOINT, now, |b| put_checkpoint(b, &cp));
        }
    }

    pub fn datagram(&mut self, now: Duration, from: &SocketAddr, data: &[u8]) {
        self.input(KIND_DATAGRAM, now, |b| {
            put_addr(b, from);
            put_bytes(b, data);
        });
    }

    pub fn timeout(&mut self, now: Duration) {
        self.input(KIND_TIMEOUT, now, |_| {});
    }

    /// A load finished; `code` is the module when it was added to the node's code.
    pub fn module_ready(
        &mut self,
        now: Duration,
        ty: &CapsuleType,
        code: Option<&[u8]>,
        took: Duration,
        result: &ModuleResult,
    ) {
        if let Some(code) = code
            && self.on()
            && self.saved.insert(*ty)
        {
            let path = module_file(&self.node_dir, ty);
            if !path.exists()
                && let Err(e) = write_atomically(&path, code)
            {
                warn!(file = %path.display(), "recording stopped: cannot save the module: {e}");
                self.close();
                return;
            }
        }
        self.input(KIND_MODULE_READY, now, |b| {
            b.extend_from_slice(&ty.0);
            b.push(u8::from(code.is_some()));
            b.extend_from_slice(&nanos(took).to_le_bytes());
            match result {
                ModuleResult::Ok => b.push(0),
                ModuleResult::Refused(m) => {
                    b.push(1);
                    put_bytes(b, m.as_bytes());
                }
                ModuleResult::Unavailable(m) => {
                    b.push(2);
                    put_bytes(b, m.as_bytes());
                }
            }
        });
    }

    pub fn set_stored(&mut self, now: Duration, ty: &CapsuleType, stored: bool) {
        self.input(KIND_SET_STORED, now, |b| {
            b.extend_from_slice(&ty.0);
            b.push(u8::from(stored));
        });
    }

    pub fn register(&mut self, now: Duration, app: u32, accept: &[CapsuleType]) {
        self.input(KIND_REGISTER, now, |b| {
            b.extend_from_slice(&app.to_le_bytes());
            let n = accept.len().min(usize::from(MAX_ACCEPT));
            b.extend_from_slice(&(n as u16).to_le_bytes());
            for t in &accept[..n] {
                b.extend_from_slice(&t.0);
            }
        });
    }

    pub fn unregister(&mut self, now: Duration, app: u32) {
        self.input(KIND_UNREGISTER, now, |b| {
            b.extend_from_slice(&app.to_le_bytes())
        });
    }

    pub fn inject(&mut self, now: Duration, app: u32, inj: &ants_core::node::Injection<'_>) {
        self.input(KIND_INJECT, now, |b| {
            b.extend_from_slice(&app.to_le_bytes());
            b.extend_from_slice(&inj.ty.0);
            match inj.code {
                Some(c) => {
                    b.push(1);
                    put_bytes(b, c);
                }
                None => b.push(0),
            }
            b.extend_from_slice(&inj.dst.0);
            b.extend_from_slice(&inj.resource.to_le_bytes());
            put_bytes(b, inj.header);
            put_bytes(b, inj.payload);
            match inj.trace {
                Some(t) => {
                    b.push(1);
                    b.extend_from_slice(&t.to_le_bytes());
                }
                None => b.push(0),
            }
        });
    }

    /// The driver took `n` datagrams from the node (nothing recorded for 0).
    pub fn drained(&mut self, now: Duration, n: usize) {
        self.taken(KIND_DRAINED, now, n);
    }

    /// The driver took `n` deliveries from the node (nothing recorded for 0).
    pub fn delivered(&mut self, now: Duration, n: usize) {
        self.taken(KIND_DELIVERED, now, n);
    }

    /// A take of `n` outputs, of kind `kind`.
    fn taken(&mut self, kind: u8, now: Duration, n: usize) {
        if n > 0 {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            self.input(kind, now, |b| b.extend_from_slice(&n.to_le_bytes()));
        }
    }

    pub fn evict(&mut self, now: Duration, ty: &CapsuleType) {
        self.input(KIND_EVICT, now, |b| b.extend_from_slice(&ty.0));
    }

    /// A reload: the node now runs the live parts of `config_text` (its file's text).
    pub fn reconfigured(&mut self, now: Duration, config_text: &str) {
        self.input(KIND_RECONFIGURED, now, |b| {
            put_bytes(b, config_text.as_bytes())
        });
    }

    /// The run ended with `counters`: the last checkpoint, then the file is closed.
    pub fn finish(&mut self, now: Duration, counters: &EndCounters) {
        let cp = self.outputs.checkpoint();
        self.record(KIND_END, now, |b| {
            put_checkpoint(b, &cp);
            for n in [
                counters.datagrams_in,
                counters.capsules_in,
                counters.runs,
                counters.sent,
                counters.delivered,
                counters.dropped,
            ] {
                b.extend_from_slice(&n.to_le_bytes());
            }
        });
        self.close();
    }

    /// Send what is buffered (blocking: once, at the end), let the writer finish the file.
    fn close(&mut self) {
        let Some(mut sink) = self.out.take() else {
            return;
        };
        let buf = std::mem::take(&mut sink.buf);
        if !buf.is_empty() {
            let _ = sink.to_writer.send(buf);
        }
        drop(sink.to_writer);
        if let Some(w) = sink.writer.take()
            && w.join().is_err()
        {
            warn!(file = %self.path.display(), "recording: the writer thread panicked");
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    b.extend_from_slice(bytes);
}

fn put_addr(b: &mut Vec<u8>, a: &SocketAddr) {
    let mut head = [0u8; 24];
    let n = encode_addr(a, &mut head);
    b.extend_from_slice(&head[..n]);
}

fn put_checkpoint(b: &mut Vec<u8>, cp: &Checkpoint) {
    for n in [cp.sent, cp.sent_hash, cp.delivered, cp.delivered_hash] {
        b.extend_from_slice(&n.to_le_bytes());
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A recording's header.
#[derive(Debug, Clone)]
pub struct Header {
    pub worker: u16,
    pub workers: u16,
    /// The version of `ants` that recorded it.
    pub version: String,
    /// The node's config file, as it was when the node started.
    pub config: String,
}

/// Why a recording cannot be read: the file, the byte offset (in the uncompressed stream),
/// and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: at byte {offset}: {what}")]
pub struct ReadError {
    pub file: String,
    pub offset: u64,
    pub what: String,
    /// The file just ends there (a node that died, or a copy cut short), as opposed to
    /// holding something wrong.
    pub truncated: bool,
}

/// Reads one worker's recording, record by record.
pub struct RecordReader {
    r: BufReader<lz4_flex::frame::FrameDecoder<File>>,
    file: String,
    offset: u64,
}

impl std::fmt::Debug for RecordReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordReader")
            .field("file", &self.file)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl RecordReader {
    /// Open `path` and read its header.
    pub fn open(path: &Path) -> Result<(RecordReader, Header), ReadError> {
        let file = path.display().to_string();
        let f = File::open(path).map_err(|e| ReadError {
            file: file.clone(),
            offset: 0,
            what: format!("cannot open: {e}"),
            truncated: false,
        })?;
        let mut r = RecordReader {
            r: BufReader::with_capacity(256 << 10, lz4_flex::frame::FrameDecoder::new(f)),
            file,
            offset: 0,
        };
        let mut magic = [0u8; 8];
        r.exact(&mut magic, "the header").map_err(|e| ReadError {
            what: format!("{} — not an ants recording?", e.what),
            ..e
        })?;
        if &magic != MAGIC {
            return Err(r.error(0, "not an ants recording (no ANTSREC header)".into()));
        }
        let format = r.u16("the header")?;
        if format != FORMAT {
            return Err(r.error(
                8,
                format!("recording format {format}; this ants reads format {FORMAT}"),
            ));
        }
        let worker = r.u16("the header")?;
        let workers = r.u16("the header")?;
        let version = r.string("the header")?;
        let config = r.string("the header")?;
        if workers == 0 || worker >= workers {
            return Err(r.error(10, format!("worker {worker} of {workers}")));
        }
        Ok((
            r,
            Header {
                worker,
                workers,
                version,
                config,
            },
        ))
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn error(&self, offset: u64, what: String) -> ReadError {
        ReadError {
            file: self.file.clone(),
            offset,
            what,
            truncated: false,
        }
    }

    /// An I/O error reading `what` at the current offset: the file ending early (truncated),
    /// or corrupt compressed data.
    fn io_error(&self, e: &io::Error, what: &str) -> ReadError {
        let truncated = e.kind() == io::ErrorKind::UnexpectedEof;
        let why = if truncated {
            format!("the file ends inside {what} (truncated)")
        } else if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::Other {
            format!("cannot decompress {what} (corrupt): {e}")
        } else {
            format!("cannot read {what}: {e}")
        };
        ReadError {
            truncated,
            ..self.error(self.offset, why)
        }
    }

    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), ReadError> {
        self.r
            .read_exact(buf)
            .map_err(|e| self.io_error(&e, what))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8, ReadError> {
        let mut b = [0u8; 1];
        self.exact(&mut b, what)?;
        Ok(b[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, ReadError> {
        let mut b = [0u8; 2];
        self.exact(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ReadError> {
        let mut b = [0u8; 4];
        self.exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.exact(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn ty(&mut self, what: &str) -> Result<CapsuleType, ReadError> {
        let mut b = [0u8; 32];
        self.exact(&mut b, what)?;
        Ok(CapsuleType(b))
    }

    fn bytes(&mut self, what: &str) -> Result<Vec<u8>, ReadError> {
        let at = self.offset;
        let n = self.u32(what)?;
        if n > MAX_FIELD {
            return Err(self.error(
                at,
                format!("{what} of {n} bytes: corrupt (limit {MAX_FIELD})"),
            ));
        }
        let mut v = vec![0u8; n as usize];
        self.exact(&mut v, what)?;
        Ok(v)
    }

    fn string(&mut self, what: &str) -> Result<String, ReadError> {
        let at = self.offset;
        String::from_utf8(self.bytes(what)?)
            .map_err(|_| self.error(at, format!("{what} is not UTF-8")))
    }

    fn addr(&mut self, what: &str) -> Result<SocketAddr, ReadError> {
        let at = self.offset;
        match self.u8(what)? {
            4 => {
                let mut a = [0u8; 4];
                self.exact(&mut a, what)?;
                let port = self.u16(what)?;
                Ok(SocketAddr::from((a, port)))
            }
            6 => {
                let mut a = [0u8; 16];
                self.exact(&mut a, what)?;
                let port = self.u16(what)?;
                Ok(SocketAddr::from((a, port)))
            }
            f => Err(self.error(at, format!("{what}: address family {f}"))),
        }
    }

    fn checkpoint(&mut self) -> Result<Checkpoint, ReadError> {
        Ok(Checkpoint {
            sent: self.u64("a checkpoint")?,
            sent_hash: self.u64("a checkpoint")?,
            delivered: self.u64("a checkpoint")?,
            delivered_hash: self.u64("a checkpoint")?,
        })
    }

    /// The next record and its node time; `None` at the end of the file (a file that ends
    /// without an `End` or `Truncated` record was cut short: the node did not stop cleanly).
    pub fn next_record(&mut self) -> Result<Option<(Duration, Input)>, ReadError> {
        let at = self.offset;
        let mut kind = [0u8; 1];
        match self.r.read(&mut kind) {
            Ok(0) => return Ok(None),
            Ok(_) => self.offset += 1,
            Err(e) => return Err(self.io_error(&e, "a record")),
        }
        let now = Duration::from_nanos(self.u64("a record's time")?);
        let input = match kind[0] {
            KIND_DATAGRAM => Input::Datagram {
                from: self.addr("a datagram's source")?,
                data: self.bytes("a datagram")?,
            },
            KIND_TIMEOUT => Input::Timeout,
            KIND_MODULE_READY => {
                let ty = self.ty("a module record")?;
                let added = self.u8("a module record")? != 0;
                let took = Duration::from_nanos(self.u64("a module record")?);
                let result = match self.u8("a module record")? {
                    0 => ModuleResult::Ok,
                    1 => ModuleResult::Refused(self.string("a module record")?),
                    2 => ModuleResult::Unavailable(self.string("a module record")?),
                    s => return Err(self.error(at, format!("module record with status {s}"))),
                };
                Input::ModuleReady {
                    ty,
                    added,
                    took,
                    result,
                }
            }
            KIND_SET_STORED => Input::SetStored {
                ty: self.ty("a stored record")?,
                stored: self.u8("a stored record")? != 0,
            },
            KIND_REGISTER => {
                let app = self.u32("an app registration")?;
                let n = self.u16("an app registration")?;
                if n > MAX_ACCEPT {
                    return Err(self.error(at, format!("app registration with {n} types")));
                }
                let mut accept = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    accept.push(self.ty("an app registration")?);
                }
                Input::Register { app, accept }
            }
            KIND_UNREGISTER => Input::Unregister {
                app: self.u32("an app record")?,
            },
            KIND_INJECT => {
                let w = "an injected capsule";
                let app = self.u32(w)?;
                let ty = self.ty(w)?;
                let code = match self.u8(w)? {
                    0 => None,
                    _ => Some(self.bytes(w)?),
                };
                let mut dst = [0u8; 16];
                self.exact(&mut dst, w)?;
                let resource = self.u16(w)?;
                let header = self.bytes(w)?;
                let payload = self.bytes(w)?;
                let trace = match self.u8(w)? {
                    0 => None,
                    _ => Some(self.u64(w)?),
                };
                Input::Inject {
                    app,
                    ty,
                    code,
                    dst: Address(dst),
                    resource,
                    header,
                    payload,
                    trace,
                }
            }
            KIND_EVICT => Input::Evict {
                ty: self.ty("an evict record")?,
            },
            KIND_RECONFIGURED => Input::Reconfigured {
                config: self.string("a reload record")?,
            },
            KIND_CHECKPOINT => Input::Checkpoint(self.checkpoint()?),
            KIND_END => {
                let cp = self.checkpoint()?;
                let mut n = [0u64; 6];
                for v in &mut n {
                    *v = self.u64("the end record")?;
                }
                Input::End(
                    cp,
                    EndCounters {
                        datagrams_in: n[0],
                        capsules_in: n[1],
                        runs: n[2],
                        sent: n[3],
                        delivered: n[4],
                        dropped: n[5],
                    },
                )
            }
            KIND_TRUNCATED => Input::Truncated {
                inputs: self.u64("the truncation record")?,
            },
            KIND_DRAINED => Input::Drained(self.u32("a drain record")?),
            KIND_DELIVERED => Input::Delivered(self.u32("a delivery record")?),
            k => return Err(self.error(at, format!("unknown record kind {k} (corrupt)"))),
        };
        Ok(Some((now, input)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The uncompressed stream of a recording.
    fn plain(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(File::open(path).unwrap())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// `bytes` as a recording file.
    fn pack(bytes: &[u8]) -> Vec<u8> {
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn every_input_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let node: Address = "198.18.0.1".parse().unwrap();
        let ty = CapsuleType([7; 32]);
        let mut r = Recorder::create(dir.path(), &node, (1, 2), "[node]\n", 1 << 20).unwrap();
        let t = Duration::from_micros;
        r.set_stored(t(1), &ty, true);
        r.datagram(t(2), &addr("127.0.0.1:7001"), b"abc");
        r.datagram(t(3), &addr("[::1]:9"), b"");
        r.timeout(t(4));
        r.module_ready(t(5), &ty, Some(b"\0asm"), t(30), &ModuleResult::Ok);
        r.module_ready(
            t(6),
            &ty,
            None,
            t(1),
            &ModuleResult::Unavailable("full".into()),
        );
        r.register(t(7), 3, &[ty]);
        let inj = ants_core::node::Injection {
            ty,
            code: Some(b"code"),
            dst: node,
            resource: 9,
            header: b"h",
            payload: b"p",
            trace: Some(5),
        };
        r.inject(t(8), 3, &inj);
        r.unregister(t(9), 3);
        r.evict(t(10), &ty);
        r.reconfigured(t(11), "[node]\n# reloaded\n");
        r.outputs().sent(&addr("127.0.0.1:7002"), b"out");
        r.outputs().delivered(3, b"capsule");
        let cp = r.outputs().checkpoint();
        let end = EndCounters {
            runs: 4,
            ..EndCounters::default()
        };
        r.finish(t(12), &end);
        let path = worker_file(&node_dir(dir.path(), &node), 1);
        assert_eq!(
            std::fs::read(module_file(&node_dir(dir.path(), &node), &ty)).unwrap(),
            b"\0asm"
        );
        let (mut rd, h) = RecordReader::open(&path).unwrap();
        assert_eq!((h.worker, h.workers, h.config.as_str()), (1, 2, "[node]\n"));
        let mut got = Vec::new();
        while let Some(x) = rd.next_record().unwrap() {
            got.push(x);
        }
        assert_eq!(got.len(), 12);
        assert!(
            got.iter().any(|(at, x)| *at == t(11)
                && *x
                    == Input::Reconfigured {
                        config: "[node]\n# reloaded\n".into()
                    }),
            "{got:?}"
        );
        assert_eq!(
            got[1].1,
            Input::Datagram {
                from: addr("127.0.0.1:7001"),
                data: b"abc".to_vec()
            }
        );
        assert_eq!(
            got[2].1,
            Input::Datagram {
                from: addr("[::1]:9"),
                data: vec![]
            }
        );
        assert_eq!(
            got[5].1,
            Input::ModuleReady {
                ty,
                added: false,
                took: t(1),
                result: ModuleResult::Unavailable("full".into())
            }
        );
        let Input::Inject {
            code, trace, dst, ..
        } = &got[7].1
        else {
            panic!("{:?}", got[7])
        };
        assert_eq!(
            (code.as_deref(), *trace, *dst),
            (Some(&b"code"[..]), Some(5), node)
        );
        assert_eq!(got[11], (t(12), Input::End(cp, end)));
    }

    #[test]
    fn the_bound_stops_recording_with_a_record_that_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let node: Address = "198.18.0.2".parse().unwrap();
        let mut r = Recorder::create(dir.path(), &node, (0, 1), "", 4096).unwrap();
        for i in 0..100u64 {
            r.datagram(Duration::from_nanos(i), &addr("127.0.0.1:1"), &[0; 100]);
        }
        assert!(!r.on());
        drop(r);
        let path = worker_file(&node_dir(dir.path(), &node), 0);
        assert!(plain(&path).len() <= 4096);
        let (mut rd, _) = RecordReader::open(&path).unwrap();
        let mut last = None;
        let mut n = 0;
        while let Some((_, i)) = rd.next_record().unwrap() {
            n += 1;
            last = Some(i);
        }
        assert_eq!(last, Some(Input::Truncated { inputs: n - 1 }));
    }

    #[test]
    fn corrupt_and_truncated_files_are_refused_with_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let node: Address = "198.18.0.3".parse().unwrap();
        let mut r = Recorder::create(dir.path(), &node, (0, 1), "cfg", 1 << 20).unwrap();
        r.datagram(Duration::ZERO, &addr("127.0.0.1:1"), &[1; 40]);
        r.finish(Duration::ZERO, &EndCounters::default());
        drop(r);
        let path = worker_file(&node_dir(dir.path(), &node), 0);
        let packed = std::fs::read(&path).unwrap();
        let good = plain(&path);
        let read_packed = |bytes: &[u8]| -> Result<usize, ReadError> {
            std::fs::write(&path, bytes).unwrap();
            let (mut rd, _) = RecordReader::open(&path)?;
            let mut n = 0;
            while rd.next_record()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        // A file cut short (a node that died) says so, as truncated.
        let e = read_packed(&packed[..packed.len() - 12]).unwrap_err();
        assert!(e.truncated && e.to_string().contains("truncated"), "{e}");
        // Garbage instead of compressed data.
        let e = read_packed(b"this is not a recording at all").unwrap_err();
        assert!(
            !e.truncated && e.to_string().contains("not an ants recording"),
            "{e}"
        );
        let read_all = |bytes: &[u8]| -> Result<usize, ReadError> {
            std::fs::write(&path, pack(bytes)).unwrap();
            let (mut rd, _) = RecordReader::open(&path)?;
            let mut n = 0;
            while rd.next_record()?.is_some() {
                n += 1;
            }
            Ok(n)
        };
        assert_eq!(read_all(&good).unwrap(), 2);
        let e = read_all(&good[..good.len() - 5]).unwrap_err();
        assert!(e.truncated, "{e}");
        let e = e.to_string();
        assert!(e.contains("worker-0.rec") && e.contains("truncated"), "{e}");
        let e = read_all(&good[..5]).unwrap_err().to_string();
        assert!(e.contains("at byte 0"), "{e}");
        let mut bad = good.clone();
        bad[..8].copy_from_slice(b"NOTANTS!");
        assert!(
            read_all(&bad)
                .unwrap_err()
                .to_string()
                .contains("not an ants recording")
        );
        let mut newer = good.clone();
        newer[8] = 99;
        assert!(
            read_all(&newer)
                .unwrap_err()
                .to_string()
                .contains("format 99")
        );
        // The datagram's length field, made huge.
        let mut huge = good.clone();
        let at = good.len() - (1 + 8 + 32 + 48) - 40 - 4;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = read_all(&huge).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        // An unknown record kind.
        let mut kind = good;
        let first = kind.len() - (1 + 8 + 32 + 48) - 40 - 4 - 7 - 8 - 1;
        kind[first] = 200;
        assert!(
            read_all(&kind)
                .unwrap_err()
                .to_string()
                .contains("unknown record kind 200")
        );
    }

    #[test]
    fn output_hashes_depend_on_order_and_content() {
        let (mut a, mut b) = (Outputs::default(), Outputs::default());
        a.sent(&addr("127.0.0.1:1"), b"x");
        a.sent(&addr("127.0.0.1:1"), b"y");
        b.sent(&addr("127.0.0.1:1"), b"y");
        b.sent(&addr("127.0.0.1:1"), b"x");
        assert_eq!(a.checkpoint().sent, b.checkpoint().sent);
        assert_ne!(a.checkpoint().sent_hash, b.checkpoint().sent_hash);
    }
}
