//! The UDP overlay underlay: per worker one batched socket ([`BatchSocket`], `recvmmsg`/`sendmmsg`)
//! polled through tokio's `AsyncFd`; each turn reads at most [`MAX_BATCHES_PER_TURN`]
//! batches, for at most [`MAX_TURN_TIME`], so timers, apps and a stop request are served
//! under load.
//!
//! Nothing is dropped silently on the way out: the node's transmits are moved into the send
//! batch at most a batch at a time, and the batch is flushed before more are taken; a
//! datagram is dropped only when the kernel refuses it (counted by the batch) or the socket
//! stays unwritable (counted here).

use anyhow::Context;
use tokio::io::unix::AsyncFd;
use tracing::warn;

use super::{Driver, MAX_BATCHES_PER_TURN, MAX_TURN_TIME, Stats, Underlay};
use crate::config::Config;
use crate::udp::{BatchSocket, RecvBatch, SendBatch, UdpConfig, flush};

/// The overlay socket and its batches.
pub(super) struct Overlay {
    sock: AsyncFd<BatchSocket>,
    recv: RecvBatch,
    send: SendBatch,
    /// Datagrams dropped because the socket stayed unwritable, or refused by the batch.
    flush_dropped: u64,
}

/// Socket settings: datagram slots large enough for the largest capsule the node accepts.
fn udp_config(cfg: &Config) -> UdpConfig {
    UdpConfig {
        max_datagram: (ants_wire::capsule::FIXED_LEN + cfg.limits.max_capsule_bytes).max(2048),
        ..UdpConfig::default()
    }
}

impl Overlay {
    /// Bind `[node] listen` once per worker, steered by capsule type
    /// ([`BatchSocket::bind_group`]).
    pub(super) fn bind_group(cfg: &Config, workers: usize) -> anyhow::Result<Vec<BatchSocket>> {
        BatchSocket::bind_group(cfg.node.listen, &udp_config(cfg), workers)
            .with_context(|| format!("cannot bind UDP {}", cfg.node.listen))
    }

    /// One worker's socket, registered with the current runtime.
    pub(super) fn new(socket: BatchSocket, cfg: &Config) -> anyhow::Result<Overlay> {
        let udp_cfg = udp_config(cfg);
        let sock = socket.into_async_fd()?;
        Ok(Overlay {
            sock,
            recv: RecvBatch::new(&udp_cfg),
            send: SendBatch::new(&udp_cfg),
            flush_dropped: 0,
        })
    }
}

impl Underlay for Overlay {
    async fn readable(&mut self) -> std::io::Result<()> {
        // Edge-triggered: clear now, then `receive` drains until the socket is empty or the
        // turn ends (and then the loop comes back without waiting).
        self.sock.readable().await?.clear_ready();
        Ok(())
    }

    async fn receive(&mut self, driver: &mut Driver) -> bool {
        let started = std::time::Instant::now();
        for _ in 0..MAX_BATCHES_PER_TURN {
            if started.elapsed() > MAX_TURN_TIME {
                return true;
            }
            match self.sock.get_ref().recv_batch(&mut self.recv) {
                Ok(0) => return false,
                Ok(_) => {
                    let now = driver.now();
                    for (from, data) in self.recv.iter() {
                        driver.datagram(now, from, data);
                    }
                    // Send as we go so a long turn does not overflow the queue.
                    self.flush(driver).await;
                }
                Err(e) => {
                    warn!("receive error: {e}");
                    return false;
                }
            }
        }
        true
    }

    async fn flush(&mut self, driver: &mut Driver) {
        loop {
            let (send, refused) = (&mut self.send, &mut self.flush_dropped);
            let left = driver.drain_transmits(send.room(), |to, bytes| {
                if !send.push(to, bytes) {
                    *refused += 1;
                }
            });
            self.flush_dropped += flush(&self.sock, &mut self.send).await;
            if left == 0 {
                break;
            }
        }
    }

    fn stats(&mut self, stats: &mut Stats) {
        stats.udp_dropped = self.send.dropped() + self.flush_dropped;
    }
}
