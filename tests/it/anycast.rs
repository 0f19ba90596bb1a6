//! End-to-end tests of the anycast capsule on real overlay nodes.
//!
//! Topology: a line 1 — 2 — 3 — 4 — 5 — 6 — 7 with a branch 5 — 8. The sender's app is on
//! node 3; members of the group run on nodes 1 (2 hops from the sender), 8 (3 hops) and 7
//! (4 hops), each advertising every [`REFRESH`] from its own thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ants_app::{AppClient, Inject};
use ants_wire::Address;

use crate::support::capsule_bytes;
use crate::topology::Topology;

const GROUP: u32 = 0xA1;
/// How often members advertise.
const REFRESH: Duration = Duration::from_millis(300);
/// How long nodes hold an advertisement: one refresh period plus a margin for jitter.
const HOLD_MS: u16 = 400;

fn advertise_header(member: Address) -> Vec<u8> {
    let mut h = vec![1];
    h.extend(GROUP.to_be_bytes());
    h.extend(member.0);
    h.push(0);
    h.extend(HOLD_MS.to_be_bytes());
    h
}

fn data_header() -> Vec<u8> {
    let mut h = vec![2];
    h.extend(GROUP.to_be_bytes());
    h
}

/// A member app on its own thread: advertises every [`REFRESH`] until told to stop.
struct Member {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Received>,
}

/// What a member saw: the sequence numbers delivered to it, when it last advertised.
struct Received {
    seqs: Vec<u32>,
    last_advert: Instant,
}

impl Member {
    /// Start advertising from the node at `sock`; once stopped, collect deliveries until
    /// none came for `drain`.
    fn start(sock: PathBuf, drain: Duration) -> Member {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut app = AppClient::connect(sock, 0).expect("member connects");
            let code = capsule_bytes("anycast");
            let header = advertise_header(app.node());
            let mut adv = Inject::with_code(code, Address::UNSPECIFIED, 16, header, vec![]);
            let (mut seqs, mut last_advert) = (Vec::new(), Instant::now());
            let mut tick = Instant::now();
            let seq =
                |d: ants_app::Delivery| u32::from_be_bytes(d.payload[..4].try_into().unwrap());
            while !flag.load(Ordering::Relaxed) {
                if Instant::now() >= tick {
                    app.inject(&adv).expect("advertise");
                    (adv.code, last_advert) = (None, Instant::now());
                    tick += REFRESH;
                }
                let wait = tick.saturating_duration_since(Instant::now());
                if let Some(d) = app
                    .recv_timeout(wait.min(Duration::from_millis(20)))
                    .unwrap()
                {
                    seqs.push(seq(d));
                }
            }
            // Silent now; take what is still on its way.
            while let Some(d) = app.recv_timeout(drain).unwrap() {
                seqs.push(seq(d));
            }
            Received { seqs, last_advert }
        });
        Member { stop, thread }
    }

    fn stop(self) -> Received {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("member thread")
    }
}

/// Sends numbered data capsules to the group and remembers when it sent each.
struct Sender {
    app: AppClient,
    data: Inject,
    sent_at: Vec<Instant>,
}

impl Sender {
    fn send_for(&mut self, span: Duration, every: Duration) {
        let end = Instant::now() + span;
        while Instant::now() < end {
            let seq = u32::try_from(self.sent_at.len()).unwrap();
            self.data.payload = seq.to_be_bytes().to_vec();
            self.sent_at.push(Instant::now());
            self.app.inject(&self.data).expect("send");
            self.data.code = None;
            thread::sleep(every);
        }
    }
}

/// The sequence numbers in order, after checking that none came twice.
fn once(name: &str, seqs: &[u32]) -> Vec<u32> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "{name} received a capsule twice");
    sorted
}

#[test]
fn nearest_member_receives_and_the_next_nearest_takes_over_within_one_refresh() {
    let edges = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (5, 8)];
    let mut net = Topology::start(8, &edges, "");
    let (m1, m8, m7) = (
        // Member 1's node is killed right after it falls silent: nothing left to collect.
        Member::start(net.sock(1), Duration::ZERO),
        Member::start(net.sock(8), Duration::from_millis(200)),
        Member::start(net.sock(7), Duration::from_millis(200)),
    );
    let mut tx = Sender {
        app: AppClient::connect(net.sock(3), 7).unwrap(),
        data: Inject::with_code(
            capsule_bytes("anycast"),
            Address::UNSPECIFIED,
            32,
            data_header(),
            vec![],
        ),
        sent_at: Vec::new(),
    };
    // The floods demand-load the code everywhere (compiling takes a while in debug builds);
    // once every node runs it, two more rounds fill every table.
    let deadline = Instant::now() + Duration::from_secs(30);
    while (1..=8).any(|i| net.stats(i).node.runs == 0) {
        assert!(
            Instant::now() < deadline,
            "the advertisements never reached every node"
        );
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(2 * REFRESH);

    tx.send_for(Duration::from_millis(300), Duration::from_millis(2));
    let before = tx.sent_at.len();
    thread::sleep(Duration::from_millis(200)); // the last ones land; member 1 still advertises
    let got1 = m1.stop();
    net.kill(1);
    let killed = Instant::now();
    tx.send_for(4 * REFRESH, Duration::from_millis(5));
    let (got8, got7) = (m8.stop(), m7.stop());

    let (seqs1, seqs8) = (once("member 1", &got1.seqs), once("member 8", &got8.seqs));
    let want: Vec<u32> = (0..u32::try_from(before).unwrap()).collect();
    assert_eq!(
        seqs1, want,
        "the nearest member receives every capsule (8: {seqs8:?})"
    );
    assert!(
        got7.seqs.is_empty(),
        "the farthest member never receives: {:?}",
        got7.seqs
    );
    let first = *seqs8.first().expect("the next nearest takes over") as usize;
    assert!(
        first >= before,
        "member 8 received {first} while member 1 was alive"
    );
    // Member 1's entries expire `HOLD_MS` after its last advertisement, at most one refresh
    // period (plus the margin in `HOLD_MS`) after the kill.
    let silent = tx.sent_at[first].saturating_duration_since(got1.last_advert);
    let after_kill = tx.sent_at[first].saturating_duration_since(killed);
    eprintln!("failover: {silent:?} after the last advertisement, {after_kill:?} after the kill");
    let hold = Duration::from_millis(u64::from(HOLD_MS));
    assert!(
        silent <= hold + Duration::from_millis(50),
        "failover took {silent:?}"
    );
    assert!(
        after_kill <= REFRESH + Duration::from_millis(150),
        "{after_kill:?}"
    );
    // From then on, every capsule reaches member 8, exactly once.
    let want: Vec<u32> = (first..tx.sent_at.len())
        .map(|s| u32::try_from(s).unwrap())
        .collect();
    assert_eq!(seqs8, want);
}
