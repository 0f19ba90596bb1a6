//! The UDP overlay underlay: one batched socket ([`BatchSocket`], `recvmmsg`/`sendmmsg`)
//! polled through tokio's `AsyncFd`; each turn reads at most [`MAX_BATCHES_PER_TURN`]
//! batches so timers and apps are served under load.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::io::unix::AsyncFd;
use tracing::warn;

use super::{Driver, MAX_BATCHES_PER_TURN, Stats, Underlay, wall};
use crate::config::Config;
use crate::udp::{BatchSocket, RecvBatch, SendBatch, UdpConfig, flush};

/// The overlay socket and its batches.
pub(super) struct Overlay {
    sock: AsyncFd<BatchSocket>,
    local: SocketAddr,
    recv: RecvBatch,
    send: SendBatch,
    /// Datagrams dropped because the socket stayed unwritable.
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
    /// Bind `[node] listen`.
    pub(super) fn bind(cfg: &Config) -> anyhow::Result<Overlay> {
        let udp_cfg = udp_config(cfg);
        let sock = BatchSocket::bind(cfg.node.listen, &udp_cfg)
            .with_context(|| format!("cannot bind UDP {}", cfg.node.listen))?
            .into_async_fd()?;
        let local = sock.get_ref().local_addr()?;
        Ok(Overlay {
            sock,
            local,
            recv: RecvBatch::new(&udp_cfg),
            send: SendBatch::new(&udp_cfg),
            flush_dropped: 0,
        })
    }
}

impl Underlay for Overlay {
    fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn readable(&mut self) -> std::io::Result<()> {
        // Edge-triggered: clear now, then `receive` drains until the socket is empty or the
        // turn ends (and then the loop comes back without waiting).
        self.sock.readable().await?.clear_ready();
        Ok(())
    }

    async fn receive(&mut self, driver: &mut Driver) -> bool {
        for _ in 0..MAX_BATCHES_PER_TURN {
            match self.sock.get_ref().recv_batch(&mut self.recv) {
                Ok(0) => return false,
                Ok(_) => {
                    let now = wall();
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
        let send = &mut self.send;
        driver.drain_transmits(|to, bytes| {
            send.push(to, bytes);
        });
        self.flush_dropped += flush(&self.sock, &mut self.send).await;
    }

    fn stats(&mut self, stats: &mut Stats) {
        stats.udp_dropped = self.send.dropped() + self.flush_dropped;
    }
}
