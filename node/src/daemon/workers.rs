//! A node's workers: one thread per worker, each a whole node core ([`super::Driver`]) for
//! the capsule types it owns, sharing nothing on the forwarding path.
//!
//! - [`Shard`]: which types a worker owns, `steer(type) = u32(type[0..4]) % workers`, the
//!   same function the kernel's reuseport program applies to arriving datagrams
//!   ([`crate::udp::steer`]), so each worker's socket receives its own types' capsules and
//!   code messages. A protocol's soft-store namespace, code loads, held capsules and code
//!   serving therefore live on exactly one worker, and its capsules run in arrival order —
//!   what a one-worker node guarantees, per protocol.
//! - [`Steering`]: what the kernel cannot split (a GRO buffer or a peer's GSO send with
//!   datagrams of several types is steered by its first) a worker hands to the owner: the
//!   datagrams are copied into one [`Bytes`] per destination and turn, sent over a bounded
//!   channel (a full inbox drops and counts them).
//! - [`hub`]: the node's one view from outside. Stats requests (the [`DaemonHandle`], the
//!   metrics endpoint, `ants status`) are answered with the sum of every worker's snapshot;
//!   app registrations go to every worker (deliveries may come from any of them), an app's
//!   injected capsule to the worker that owns its type.
//!
//! [`DaemonHandle`]: super::DaemonHandle

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use ants_wire::CapsuleType;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::tap::Tap;
use super::{Stats, recv_opt};
use crate::app_server::AppRequest;
use crate::config::Config;

/// Datagrams a worker's inbox holds, in handoffs (each up to [`HANDOFF_BYTES`]).
pub(super) const INBOX_HANDOFFS: usize = 64;
/// Bytes a worker stages for one other worker before sending them.
pub(super) const HANDOFF_BYTES: usize = 256 * 1024;

/// Which types a worker owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shard {
    /// This worker, `0..count`.
    pub(super) index: usize,
    /// Workers of the node.
    pub(super) count: usize,
}

impl Shard {
    /// The worker that owns the message `datagram` (by its type bytes; 0 if it has none).
    pub(super) fn owner_of_datagram(&self, datagram: &[u8]) -> usize {
        crate::udp::steer(datagram, self.count)
    }

    /// The worker that owns `ty`.
    pub(super) fn owner_of_type(&self, ty: &CapsuleType) -> usize {
        crate::udp::steer_type(ty.as_bytes(), self.count)
    }

    /// Whether this worker owns `ty`.
    pub(super) fn owns(&self, ty: &CapsuleType) -> bool {
        self.owner_of_type(ty) == self.index
    }
}

/// Datagrams one worker received for another: one buffer, and each datagram's source and
/// place in it.
#[derive(Debug)]
pub(super) struct Handoff {
    pub(super) data: Bytes,
    pub(super) items: Vec<(SocketAddr, Range<usize>)>,
}

impl Handoff {
    /// The datagrams.
    pub(super) fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        self.items
            .iter()
            .filter_map(|(from, r)| Some((*from, self.data.get(r.clone())?)))
    }
}

/// Datagrams being staged for one other worker.
#[derive(Debug, Default)]
struct Staged {
    data: BytesMut,
    items: Vec<(SocketAddr, Range<usize>)>,
}

/// A worker's side of steering: its shard, the other workers' inboxes, what it stages for
/// them, and counters.
#[derive(Debug)]
pub(super) struct Steering {
    pub(super) shard: Shard,
    inboxes: Arc<[mpsc::Sender<Handoff>]>,
    staged: Vec<Staged>,
    /// Datagrams handed to the worker that owns their type.
    pub(super) handed_off: u64,
    /// Datagrams dropped because the owner's inbox was full (or it had stopped).
    pub(super) handoff_dropped: u64,
}

impl Steering {
    pub(super) fn new(shard: Shard, inboxes: Arc<[mpsc::Sender<Handoff>]>) -> Steering {
        Steering {
            shard,
            inboxes,
            staged: (0..shard.count).map(|_| Staged::default()).collect(),
            handed_off: 0,
            handoff_dropped: 0,
        }
    }

    /// The worker that owns `datagram`, if not this one.
    pub(super) fn foreign_owner(&self, datagram: &[u8]) -> Option<usize> {
        if self.shard.count <= 1 {
            return None;
        }
        let owner = self.shard.owner_of_datagram(datagram);
        (owner != self.shard.index).then_some(owner)
    }

    /// Stage `datagram` for worker `owner` (sent with the next [`flush`](Self::flush), or
    /// now if the stage is full).
    pub(super) fn stage(&mut self, owner: usize, from: SocketAddr, datagram: &[u8]) {
        let Some(stage) = self.staged.get_mut(owner) else {
            return;
        };
        let start = stage.data.len();
        stage.data.extend_from_slice(datagram);
        stage.items.push((from, start..stage.data.len()));
        if stage.data.len() >= HANDOFF_BYTES {
            self.send(owner);
        }
    }

    /// Send everything staged.
    pub(super) fn flush(&mut self) {
        for owner in 0..self.staged.len() {
            self.send(owner);
        }
    }

    fn send(&mut self, owner: usize) {
        let (Some(stage), Some(inbox)) = (self.staged.get_mut(owner), self.inboxes.get(owner))
        else {
            return;
        };
        if stage.items.is_empty() {
            return;
        }
        let n = stage.items.len() as u64;
        // `split` keeps the buffer's spare room for the next turn; its memory comes back to
        // this stage once the owner has dropped the handoff.
        let handoff = Handoff {
            data: stage.data.split().freeze(),
            items: std::mem::take(&mut stage.items),
        };
        match inbox.try_send(handoff) {
            Ok(()) => self.handed_off += n,
            Err(_) => self.handoff_dropped += n,
        }
    }
}

/// The hub's line to one worker.
#[derive(Debug)]
pub(super) struct WorkerLink {
    pub(super) stats: mpsc::Sender<oneshot::Sender<Stats>>,
    pub(super) apps: mpsc::Sender<AppRequest>,
}

/// Every worker's snapshot, summed (`None` if none answered).
pub(super) async fn gather(workers: &[WorkerLink]) -> Option<Stats> {
    let mut total: Option<Stats> = None;
    for w in workers {
        let (tx, rx) = oneshot::channel();
        if w.stats.send(tx).await.is_err() {
            continue;
        }
        let Ok(s) = rx.await else { continue };
        match &mut total {
            Some(t) => t.merge(s),
            None => total = Some(s),
        }
    }
    total
}

/// Serve stats requests and app requests for all workers, until both channels close.
pub(super) async fn hub(
    mut stats_rx: mpsc::Receiver<oneshot::Sender<Stats>>,
    mut app_rx: Option<mpsc::Receiver<AppRequest>>,
    mut control_rx: mpsc::Receiver<AppRequest>,
    workers: Vec<WorkerLink>,
    shard: Shard,
    tap: Arc<Tap>,
    mut running: Arc<Config>,
) {
    loop {
        tokio::select! {
            Some(reply) = stats_rx.recv() => {
                if let Some(s) = gather(&workers).await {
                    let _ = reply.send(s);
                }
            }
            Some(req) = control_rx.recv() => {
                hub_request(req, &workers, shard, &tap, &mut running).await;
            }
            Some(req) = recv_opt(&mut app_rx) => {
                hub_request(req, &workers, shard, &tap, &mut running).await;
            }
            else => break,
        }
    }
}

/// A request to the hub: a reload here, the rest through [`app_request`].
async fn hub_request(
    req: AppRequest,
    workers: &[WorkerLink],
    shard: Shard,
    tap: &Tap,
    running: &mut Arc<Config>,
) {
    match req {
        AppRequest::Reload { reply } => {
            let r = reload(workers, running).await;
            match &r {
                Ok(text) => info!("reloaded: {text}"),
                Err(e) => warn!("reload refused, the running config stays: {e}"),
            }
            let _ = reply.send(r);
        }
        other => app_request(other, workers, shard, tap).await,
    }
}

/// Read the config file again; hand every worker the running config with the new live
/// parts; say what changed and what needs a restart.
async fn reload(workers: &[WorkerLink], running: &mut Arc<Config>) -> Result<String, String> {
    let Some(path) = running.path.clone() else {
        return Err("this node was not started from a config file".into());
    };
    let (new, text) = Config::load_with_text(&path).map_err(|e| e.to_string())?;
    let text: Arc<str> = text.into();
    let live = Arc::new(running.with_live_changes(&new));
    let restart = running.restart_needed(&new);
    let changed = *live != **running;
    for w in workers {
        let (config, text) = (Arc::clone(&live), Arc::clone(&text));
        match ask(w, |reply| AppRequest::Apply {
            config,
            text,
            reply,
        })
        .await
        {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err("the node is stopping".into()),
        }
    }
    *running = live;
    let mut text = format!(
        "{}: {}",
        path.display(),
        if changed {
            "applied (neighbours, routes, [code], [trace], [[watch]] and the live [limits] keys)"
        } else {
            "nothing to change in place"
        }
    );
    if !restart.is_empty() {
        text.push_str("; needs a restart to change: ");
        text.push_str(&restart.join(", "));
    }
    Ok(text)
}

/// The type whose worker answers `req` alone (an injection, an eviction, one namespace's
/// dump); `None` for the requests every worker (or the hub) answers.
fn routed_type(req: &AppRequest) -> Option<CapsuleType> {
    match req {
        AppRequest::Inject { inject, .. } => Some(inject.capsule_type),
        AppRequest::Evict { ty, .. } | AppRequest::StoreDump { ty: Some(ty), .. } => Some(*ty),
        _ => None,
    }
}

/// Ask worker `w` and wait for its answer; `None` if it has stopped.
async fn ask<T>(
    w: &WorkerLink,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> AppRequest,
) -> Option<Result<T, String>> {
    let (tx, rx) = oneshot::channel();
    w.apps.send(make(tx)).await.ok()?;
    rx.await.ok()
}

async fn app_request(req: AppRequest, workers: &[WorkerLink], shard: Shard, tap: &Tap) {
    if let Some(ty) = routed_type(&req) {
        if let Some(w) = workers.get(shard.owner_of_type(&ty)) {
            let _ = w.apps.send(req).await;
        }
        return;
    }
    match req {
        AppRequest::Capture { out, reply } => {
            let r = tap.start(out);
            if r.is_ok() {
                tracing::info!("capture started");
            }
            let _ = reply.send(r);
        }
        AppRequest::Register {
            app,
            accept,
            conn,
            reply,
        } => {
            // Every worker keeps the registration table: any of them may deliver.
            let mut result = Ok(());
            for w in workers {
                let accept = accept.clone();
                let answer = ask(w, |reply| AppRequest::Register {
                    app,
                    accept,
                    conn,
                    reply,
                });
                match answer.await {
                    Some(Ok(())) => {}
                    Some(Err(e)) => result = Err(e),
                    None => result = Err("the node is stopping".to_string()),
                }
            }
            let _ = reply.send(result);
        }
        AppRequest::Disconnected { app } => {
            for w in workers {
                let _ = w.apps.send(AppRequest::Disconnected { app }).await;
            }
        }
        AppRequest::StoreDump { reply, .. } => {
            // Every worker's namespaces (each type lives on one), in one object.
            let mut namespaces = Vec::new();
            let (mut truncated, mut bytes) = (false, 0usize);
            for w in workers {
                let answer = ask(w, |reply| AppRequest::StoreDump { ty: None, reply });
                let Some(Ok(v)) = answer.await else { continue };
                truncated |= v["truncated"] == true;
                // The whole answer must fit one app frame: stop at the byte budget.
                for ns in v["namespaces"].as_array().into_iter().flatten() {
                    let len = ns.to_string().len();
                    if bytes + len > super::STORE_DUMP_BYTES {
                        truncated = true;
                        break;
                    }
                    bytes += len;
                    namespaces.push(ns.clone());
                }
            }
            namespaces.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
            let v = serde_json::json!({"namespaces": namespaces, "truncated": truncated});
            let _ = reply.send(Ok(v));
        }
        AppRequest::Traces { id, reply } => {
            // A trace lives on the worker of its capsule type: ask each, keep what they know.
            let mut list = Vec::new();
            let mut found = serde_json::Value::Null;
            for w in workers {
                let Some(Ok(v)) = ask(w, |reply| AppRequest::Traces { id, reply }).await else {
                    continue;
                };
                list.extend(v["traces"].as_array().into_iter().flatten().cloned());
                if !v["trace"].is_null() {
                    found = v["trace"].clone();
                }
            }
            let v = match id {
                Some(_) => serde_json::json!({ "trace": found }),
                None => {
                    list.sort_by(|a, b| {
                        a["started_s"]
                            .as_f64()
                            .partial_cmp(&b["started_s"].as_f64())
                            .unwrap_or(std::cmp::Ordering::Equal)
                    });
                    serde_json::json!({ "traces": list })
                }
            };
            let _ = reply.send(Ok(v));
        }
        AppRequest::Stats { reply } => {
            let r = gather(workers)
                .await
                .map(|s| s.to_json().to_string())
                .ok_or_else(|| "the node is stopping".to_string());
            let _ = reply.send(r);
        }
        // Routed above.
        AppRequest::Reload { reply } => {
            let _ = reply.send(Err("reloads are the hub's".into()));
        }
        AppRequest::Apply {
            config,
            text,
            reply,
        } => {
            // Not sent to the hub by anyone but itself; pass it on to every worker.
            for w in workers {
                let (config, text) = (Arc::clone(&config), Arc::clone(&text));
                let _ = ask(w, |reply| AppRequest::Apply {
                    config,
                    text,
                    reply,
                })
                .await;
            }
            let _ = reply.send(Ok(()));
        }
        AppRequest::Inject { .. } | AppRequest::Evict { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_and_its_messages_have_one_owner() {
        for count in 1..=5 {
            for seed in 0..64u8 {
                let ty = CapsuleType([seed.wrapping_mul(37); 32]);
                let mut capsule = vec![0xA7, 0x5C, 1, 1, 0, 0, 0, 9];
                capsule.extend_from_slice(ty.as_bytes());
                let shard = Shard { index: 0, count };
                assert_eq!(
                    shard.owner_of_datagram(&capsule),
                    shard.owner_of_type(&ty),
                    "count {count}"
                );
                assert!(shard.owner_of_type(&ty) < count);
            }
        }
        // Too short to name a type: worker 0, whose node counts it as malformed.
        assert_eq!(Shard { index: 1, count: 3 }.owner_of_datagram(&[1; 11]), 0);
    }

    #[test]
    fn foreign_datagrams_are_handed_off_in_one_buffer_and_bounded() {
        let (tx, mut rx) = mpsc::channel(1);
        let (own_tx, _own_rx) = mpsc::channel(1);
        let inboxes: Arc<[mpsc::Sender<Handoff>]> = vec![own_tx, tx].into();
        let mut s = Steering::new(Shard { index: 0, count: 2 }, inboxes);
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // What a worker does with a datagram it received: stage it if it is another's.
        let hand = |s: &mut Steering, d: &[u8]| match s.foreign_owner(d) {
            Some(owner) => {
                s.stage(owner, from, d);
                true
            }
            None => false,
        };
        let mut mine = vec![0u8; 40];
        mine[11] = 2; // type word 2: worker 0
        let mut theirs = vec![0u8; 40];
        theirs[11] = 3; // type word 3: worker 1
        assert!(!hand(&mut s, &mine));
        assert!(hand(&mut s, &theirs));
        theirs[39] = 7;
        assert!(hand(&mut s, &theirs));
        s.flush();
        assert_eq!(s.handed_off, 2);
        // The inbox holds one handoff: the next is dropped and counted, never waited for.
        assert!(hand(&mut s, &theirs));
        s.flush();
        assert_eq!((s.handed_off, s.handoff_dropped), (2, 1));
        let h = rx.try_recv().unwrap();
        let got: Vec<_> = h.iter().map(|(f, d)| (f, d.to_vec())).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], (from, theirs.clone()));
        assert!(rx.try_recv().is_err());
    }
}
