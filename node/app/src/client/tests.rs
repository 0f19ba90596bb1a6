//! Tests of `AppClient` against a fake node listening on a Unix socket.

use super::*;
use std::os::unix::net::UnixListener;
use std::thread;

use crate::proto::split_frame;

/// A scripted node: accepts one connection, answers `Register`, then runs `script`.
/// The thread returns the `Register` frame it received.
fn fake_node(
    script: impl FnOnce(&mut UnixStream) + Send + 'static,
) -> (tempfile::TempDir, PathBuf, thread::JoinHandle<AppFrame>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let t = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let register = read_app_frame(&mut s);
        match register {
            AppFrame::Register { app, .. } => write(
                &mut s,
                &NodeFrame::Registered {
                    app,
                    node: "198.18.0.1".parse().unwrap(),
                },
            ),
            ref other => panic!("expected Register, got {other:?}"),
        }
        script(&mut s);
        register
    });
    (dir, path, t)
}

fn read_app_frame(s: &mut UnixStream) -> AppFrame {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if let Some((frame, _)) = split_frame(&buf).unwrap() {
            return AppFrame::decode(frame).unwrap();
        }
        s.read_exact(&mut byte).unwrap();
        buf.push(byte[0]);
    }
}

fn write(s: &mut UnixStream, f: &NodeFrame) {
    s.write_all(&f.to_bytes().unwrap()).unwrap();
}

fn delivery(n: u8) -> Delivery {
    Delivery {
        capsule_type: CapsuleType([n; 32]),
        src: Address::UNSPECIFIED,
        dst: Address::UNSPECIFIED,
        prev: Address::UNSPECIFIED,
        resource: 1,
        header: vec![n],
        payload: vec![n; 10],
        node_time_ns: u64::from(n),
    }
}

fn inject() -> Inject {
    Inject::with_code(b"code".to_vec(), Address::UNSPECIFIED, 8, vec![], vec![])
}

#[test]
fn deliveries_during_an_inject_are_queued_and_overflow_counted() {
    let (_dir, path, node) = fake_node(|s| {
        let AppFrame::Inject(i) = read_app_frame(s) else {
            panic!("expected Inject")
        };
        for n in 0..5 {
            write(s, &NodeFrame::Delivery(delivery(n)));
        }
        // A stale ack for another type is skipped, the right one ends the wait.
        write(
            s,
            &NodeFrame::Injected {
                capsule_type: CapsuleType([9; 32]),
            },
        );
        write(
            s,
            &NodeFrame::Injected {
                capsule_type: i.capsule_type,
            },
        );
        write(s, &NodeFrame::Delivery(delivery(5)));
    });
    let mut c = AppClient::connect(&path, 3).unwrap();
    assert_eq!(c.node().to_string(), "198.18.0.1");
    assert_eq!(c.app(), 3);
    c.set_queue_len(3);
    assert_eq!(c.inject(&inject()).unwrap(), inject().capsule_type);
    assert_eq!(c.queued_deliveries(), 3);
    assert_eq!(c.dropped_deliveries(), 2);
    for n in [0, 1, 2, 5] {
        assert_eq!(c.recv().unwrap(), delivery(n));
    }
    node.join().unwrap();
    assert!(matches!(c.recv(), Err(ClientError::Closed)));
}

#[test]
fn a_frame_split_across_a_timeout_is_kept() {
    let (_dir, path, node) = fake_node(|s| {
        let bytes = NodeFrame::Delivery(delivery(7)).to_bytes().unwrap();
        s.write_all(&bytes[..20]).unwrap();
        thread::sleep(Duration::from_millis(150));
        s.write_all(&bytes[20..]).unwrap();
        let _ = read_app_frame(s); // wait until the client is done
    });
    let mut c = AppClient::connect(&path, 1).unwrap();
    assert_eq!(c.recv_timeout(Duration::from_millis(20)).unwrap(), None);
    assert_eq!(
        c.recv_timeout(Duration::from_secs(5)).unwrap(),
        Some(delivery(7))
    );
    c.send(&AppFrame::Ping).unwrap();
    node.join().unwrap();
}

#[test]
fn refusals_and_timeouts() {
    let (_dir, path, node) = fake_node(|s| {
        let _ = read_app_frame(s);
        write(
            s,
            &NodeFrame::Error {
                message: "unknown capsule type and no code given".into(),
            },
        );
        let _ = read_app_frame(s); // a Ping left unanswered
        let _ = read_app_frame(s); // wait until the client is done
    });
    let mut c = AppClient::connect(&path, 1).unwrap();
    let e = c.inject(&inject()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the node refused the request: unknown capsule type and no code given"
    );
    c.set_reply_timeout(Duration::from_millis(50));
    assert!(matches!(
        c.ping(),
        Err(ClientError::Timeout {
            waiting_for: "Pong",
            ..
        })
    ));
    c.send(&AppFrame::Ping).unwrap();
    node.join().unwrap();
}

#[test]
fn the_accept_list_goes_out_with_register() {
    let (a, b) = (CapsuleType([4; 32]), CapsuleType([5; 32]));
    let (_dir, path, node) = fake_node(|_| {});
    let c = AppClient::connect_accepting(&path, 9, &[a, b]).unwrap();
    assert_eq!(c.accepted_types(), [a, b]);
    assert_eq!(
        node.join().unwrap(),
        AppFrame::Register {
            app: 9,
            accept: vec![a, b]
        }
    );

    // The builder adds up its `accept` calls; plain `connect` sends the 4-byte frame.
    let (_dir, path, node) = fake_node(|_| {});
    let c = AppClient::builder(2)
        .accept([a])
        .accept([b])
        .queue_len(0)
        .connect(&path)
        .unwrap();
    assert_eq!(c.accepted_types(), [a, b]);
    node.join().unwrap();
    let (_dir, path, node) = fake_node(|_| {});
    assert!(
        AppClient::connect(&path, 3)
            .unwrap()
            .accepted_types()
            .is_empty()
    );
    assert_eq!(
        node.join().unwrap(),
        AppFrame::Register {
            app: 3,
            accept: vec![]
        }
    );
}

#[test]
fn too_long_an_accept_list_fails_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.sock");
    // Bound but never accepted: the connection succeeds, the encoding does not.
    let _listener = UnixListener::bind(&path).unwrap();
    let types = vec![CapsuleType([1; 32]); proto::MAX_ACCEPT_TYPES + 1];
    let e = AppClient::builder(1)
        .accept(types)
        .connect(&path)
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Encode(EncodeError::TooManyAcceptTypes { count: 65, .. })
        ),
        "{e}"
    );
}

#[test]
fn connect_error_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sock");
    let e = AppClient::connect(&path, 1).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("missing.sock: no such file"), "{msg}");
    assert!(msg.contains("[node] app_socket"), "{msg}");

    // A stale socket file: bound once, nobody listening.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let msg = AppClient::connect(&stale, 1).unwrap_err().to_string();
    assert!(msg.contains("connection refused"), "{msg}");
}
