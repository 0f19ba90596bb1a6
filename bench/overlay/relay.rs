//! The I/O threads: plain relay hops and the daemon-like loop they share, the generator.

use super::*;

#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    /// Datagrams received.
    pub(crate) received: AtomicU64,
    /// Datagrams relayed (sent on).
    pub(crate) sent: AtomicU64,
    /// Datagrams dropped by the relay (queue full or socket unwritable).
    pub(crate) dropped: AtomicU64,
    /// `recvmmsg` calls that returned datagrams.
    pub(crate) batches: AtomicU64,
}

/// A receive loop on its own thread: a sink (counts and drops) or a relay (sends every
/// datagram on to `next`, unchanged).
pub(crate) struct IoThread {
    pub(crate) addr: SocketAddr,
    pub(crate) tid: u32,
    pub(crate) counters: Arc<LoopCounters>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) thread: Option<JoinHandle<io::Result<()>>>,
}

impl IoThread {
    pub(crate) fn spawn(
        name: &str,
        sock: BatchSocket,
        next: Option<SocketAddr>,
    ) -> Result<IoThread> {
        let addr = sock.local_addr()?;
        let counters = Arc::new(LoopCounters::default());
        let (stop, stop_rx) = watch::channel(false);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(io_loop(sock, next, c, stop_rx))
            })?;
        let tid = tid_rx
            .recv()
            .ok()
            .flatten()
            .context("cannot read the thread id")?;
        Ok(IoThread {
            addr,
            tid,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn received(&self) -> u64 {
        self.counters.received.load(Ordering::Relaxed)
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("warning: {} loop failed: {e}", self.addr),
                Err(_) => eprintln!("warning: {} loop panicked", self.addr),
            }
        }
    }
}

/// The daemon's receive loop without the node: wake on readability, at most
/// `MAX_BATCHES_PER_TURN` `recvmmsg` batches per wake-up, queue every datagram for `next`
/// and `sendmmsg` after each batch.
pub(crate) async fn io_loop(
    sock: BatchSocket,
    next: Option<SocketAddr>,
    c: Arc<LoopCounters>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let cfg = udp_config();
    let sock = sock.into_async_fd()?;
    let mut rx = RecvBatch::new(&cfg);
    let mut tx = SendBatch::new(&cfg);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = sock.readable() => {
                let mut ready = r?;
                for _ in 0..MAX_BATCHES_PER_TURN {
                    if sock.get_ref().recv_batch(&mut rx)? == 0 {
                        ready.clear_ready();
                        break;
                    }
                    c.received.fetch_add(rx.len() as u64, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    let Some(next) = next else { continue };
                    let mut queued = 0;
                    for (_, data) in rx.iter() {
                        queued += u64::from(tx.push(next, data));
                    }
                    let lost = flush(&sock, &mut tx).await;
                    let refused = rx.len() as u64 - queued;
                    c.sent.fetch_add(queued - lost, Ordering::Relaxed);
                    c.dropped.fetch_add(lost + refused, Ordering::Relaxed);
                }
            }
        }
    }
}

// --- generator ----------------------------------------------------------------------------

/// What the generator thread shares with its controller.
#[derive(Debug, Default)]
pub(crate) struct GenShared {
    pub(crate) sent: AtomicU64,
    pub(crate) stop: AtomicBool,
    pub(crate) paused: AtomicBool,
}

/// Sends pre-encoded datagrams in batches of 64 (`sendmmsg`), flat out or paced; can be
/// paused (it then sleeps in 1 ms steps and sends nothing).
pub(crate) struct Generator {
    pub(crate) tid: u32,
    pub(crate) shared: Arc<GenShared>,
    pub(crate) thread: Option<JoinHandle<io::Result<()>>>,
}

impl Generator {
    pub(crate) fn spawn(
        to: SocketAddr,
        datagrams: Arc<Vec<Vec<u8>>>,
        rate: Option<f64>,
        paused: bool,
    ) -> Result<Self> {
        let cfg = udp_config();
        let sock = BatchSocket::bind(loopback0(), &cfg)?;
        let shared = Arc::new(GenShared::default());
        shared.paused.store(paused, Ordering::Relaxed);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || {
                let _ = tid_tx.send(current_tid());
                generate(&sock, to, &datagrams, rate, &sh, &cfg)
            })?;
        let tid = tid_rx
            .recv()
            .ok()
            .flatten()
            .context("cannot read the thread id")?;
        Ok(Generator {
            tid,
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }

    pub(crate) fn stop(mut self) -> Result<()> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => Ok(r?),
            _ => bail!("generator panicked"),
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn generate(
    sock: &BatchSocket,
    to: SocketAddr,
    datagrams: &[Vec<u8>],
    rate: Option<f64>,
    sh: &GenShared,
    cfg: &UdpConfig,
) -> io::Result<()> {
    let mut tx = SendBatch::new(cfg);
    let (mut total, mut next) = (0u64, 0usize);
    // Pacing restarts from here after every pause.
    let mut base: Option<(Instant, u64)> = None;
    while !sh.stop.load(Ordering::Relaxed) {
        if sh.paused.load(Ordering::Relaxed) {
            base = None;
            tx.clear();
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let (t0, c0) = *base.get_or_insert((Instant::now(), total));
        if let Some(rate) = rate {
            let due = t0 + Duration::from_secs_f64((total - c0) as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(Duration::from_millis(10)));
                continue;
            }
        }
        while tx.len() < cfg.batch && tx.push(to, &datagrams[next]) {
            next = (next + 1) % datagrams.len();
        }
        let n = sock.send_batch(&mut tx)?;
        total += n as u64;
        sh.sent.store(total, Ordering::Relaxed);
        if n == 0 {
            // The send buffer is full: let the receivers run.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(())
}

/// `count` distinct `forward` capsules from the generator to the sink, encoded once.
pub(crate) fn capsule_datagrams(ty: CapsuleType, payload_len: usize, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|k| {
            let mut payload = vec![0u8; payload_len.max(4)];
            payload[..4].copy_from_slice(&(k as u32).to_be_bytes());
            let m = Message::Capsule(CapsuleRepr {
                flags: 0,
                resource: 64,
                capsule_type: ty,
                src: addr(GEN_ADDR),
                dst: addr(SINK_ADDR),
                prev: addr(GEN_ADDR),
                header: &[],
                payload: &payload,
                trace: None,
            });
            let mut buf = vec![0u8; m.buffer_len()];
            m.emit(&mut buf).expect("capsule encodes");
            buf
        })
        .collect()
}

// --- the 3-hop chain ----------------------------------------------------------------------
