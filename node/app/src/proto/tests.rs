//! Tests of the app protocol's frames: encodings, limits, and decoding of bad input.

use super::*;
use proptest::prelude::*;

fn decode_app(bytes: &[u8]) -> Result<AppFrame, DecodeError> {
    let (frame, used) = split_frame(bytes)?.expect("complete frame");
    assert_eq!(used, bytes.len());
    AppFrame::decode(frame)
}

fn decode_node(bytes: &[u8]) -> Result<NodeFrame, DecodeError> {
    let (frame, used) = split_frame(bytes)?.expect("complete frame");
    assert_eq!(used, bytes.len());
    NodeFrame::decode(frame)
}

fn register(app: u32, accept: &[CapsuleType]) -> AppFrame {
    AppFrame::Register {
        app,
        accept: accept.to_vec(),
    }
}

#[test]
fn register_layout() {
    // Without a list: exactly the original frame, which accepts any type.
    let b = register(7, &[]).to_bytes().unwrap();
    assert_eq!(b, [0, 0, 0, 5, 0x01, 0, 0, 0, 7]);
    assert_eq!(decode_app(&b).unwrap(), register(7, &[]));
    assert_eq!(AppFrame::Ping.to_bytes().unwrap(), [0, 0, 0, 1, 0x03]);
    assert_eq!(NodeFrame::Pong.to_bytes().unwrap(), [0, 0, 0, 1, 0x85]);
    assert_eq!(AppFrame::Stats.to_bytes().unwrap(), [0, 0, 0, 1, 0x04]);
    let stats = NodeFrame::Stats { json: "{}".into() };
    assert_eq!(stats.to_bytes().unwrap(), [0, 0, 0, 3, 0x86, b'{', b'}']);
    let evict = AppFrame::Evict {
        capsule_type: CapsuleType([7; 32]),
    };
    let b = evict.to_bytes().unwrap();
    assert_eq!(&b[..5], [0, 0, 0, 33, 0x05]);
    assert_eq!(decode_app(&b).unwrap(), evict);
    let evicted = NodeFrame::Evicted {
        capsule_type: CapsuleType([7; 32]),
        removed: true,
    };
    let b = evicted.to_bytes().unwrap();
    assert_eq!((&b[..5], b[37]), (&[0, 0, 0, 34, 0x87][..], 1));
    let all = AppFrame::StoreDump { capsule_type: None };
    assert_eq!(all.to_bytes().unwrap(), [0, 0, 0, 1, 0x06]);
    let mut bad = b.clone();
    bad[37] = 2;
    assert!(NodeFrame::decode(&bad[4..]).is_err(), "removed is 0 or 1");
}

#[test]
fn register_with_accept_list_layout() {
    let (a, b) = (CapsuleType([0xaa; 32]), CapsuleType([0xbb; 32]));
    let bytes = register(0x0102_0304, &[a, b]).to_bytes().unwrap();
    assert_eq!(bytes.len(), 4 + 1 + 6 + 2 * 32);
    assert_eq!(&bytes[..5], &[0, 0, 0, 71, 0x01]);
    assert_eq!(&bytes[5..9], &[1, 2, 3, 4]); // app
    assert_eq!(&bytes[9..11], &[0, 2]); // count
    assert_eq!(&bytes[11..43], a.as_bytes());
    assert_eq!(&bytes[43..75], b.as_bytes());
    assert_eq!(decode_app(&bytes).unwrap(), register(0x0102_0304, &[a, b]));

    let full = vec![a; MAX_ACCEPT_TYPES];
    let bytes = register(1, &full).to_bytes().unwrap();
    assert_eq!(decode_app(&bytes).unwrap(), register(1, &full));
}

#[test]
fn register_accept_count_is_checked() {
    // Count 0: an empty list has one encoding, the 4-byte body.
    assert_eq!(
        AppFrame::decode(&[0x01, 0, 0, 0, 1, 0, 0]),
        Err(DecodeError::BadAcceptCount {
            count: 0,
            max: MAX_ACCEPT_TYPES
        })
    );
    // One over the limit, with every byte present: still refused, on the count.
    let mut frame = vec![0x01, 0, 0, 0, 1, 0, 65];
    frame.extend_from_slice(&[0x11; 65 * 32]);
    assert_eq!(
        AppFrame::decode(&frame),
        Err(DecodeError::BadAcceptCount { count: 65, max: 64 })
    );
    assert_eq!(
        AppFrame::decode(&[0x01, 0, 0, 0, 1, 0xff, 0xff]),
        Err(DecodeError::BadAcceptCount {
            count: u16::MAX,
            max: 64
        })
    );
    // Short and long lists.
    let mut frame = vec![0x01, 0, 0, 0, 1, 0, 2];
    frame.extend_from_slice(&[0x22; 63]);
    assert_eq!(
        AppFrame::decode(&frame),
        Err(DecodeError::Truncated {
            frame: "register",
            needed: 70,
            actual: 69
        })
    );
    frame.extend_from_slice(&[0x22; 2]);
    assert_eq!(
        AppFrame::decode(&frame),
        Err(DecodeError::TrailingBytes {
            frame: "register",
            extra: 1
        })
    );
}

#[test]
fn too_many_accept_types_are_refused_without_writing() {
    let mut out = vec![9];
    let f = register(1, &vec![CapsuleType::default(); MAX_ACCEPT_TYPES + 1]);
    assert_eq!(
        f.encode(&mut out),
        Err(EncodeError::TooManyAcceptTypes {
            count: 65,
            max: MAX_ACCEPT_TYPES
        })
    );
    assert_eq!(out, [9]);
}

#[test]
fn inject_layout() {
    let i = Inject::with_code(
        b"\0asm".to_vec(),
        "198.18.0.9".parse().unwrap(),
        16,
        vec![0xaa],
        b"hi".to_vec(),
    );
    let b = AppFrame::Inject(i.clone()).to_bytes().unwrap();
    assert_eq!(b.len(), 4 + 1 + 59 + 4 + 1 + 2);
    assert_eq!(&b[5..37], i.capsule_type.as_bytes());
    assert_eq!(&b[37..53], &i.dst.octets());
    assert_eq!(&b[53..55], &[0, 16]); // resource
    assert_eq!(b[55], INJECT_FLAG_CODE);
    assert_eq!(&b[56..60], &[0, 0, 0, 4]); // code len
    assert_eq!(&b[60..62], &[0, 1]); // header len
    assert_eq!(&b[62..64], &[0, 2]); // payload len
    assert_eq!(&b[64..], b"\0asm\xaahi");
    assert_eq!(decode_app(&b).unwrap(), AppFrame::Inject(i.clone()));
    assert!(i.code_matches_type());

    let without = Inject { code: None, ..i };
    let b = AppFrame::Inject(without.clone()).to_bytes().unwrap();
    assert_eq!(b[55], 0);
    assert_eq!(decode_app(&b).unwrap(), AppFrame::Inject(without));
}

#[test]
fn inject_flags_are_checked() {
    let i = Inject {
        code: None,
        capsule_type: CapsuleType([1; 32]),
        dst: Address::UNSPECIFIED,
        resource: 1,
        header: vec![],
        payload: vec![],
        trace: None,
    };
    let mut b = AppFrame::Inject(i).to_bytes().unwrap();
    b[55] = 0x04;
    assert_eq!(
        decode_app(&b),
        Err(DecodeError::BadInjectFlags {
            flags: 4,
            code_len: 0
        })
    );
    b[55] = 0;
    b[59] = 1; // code length 1 without the code flag
    assert!(matches!(
        decode_app(&b),
        Err(DecodeError::BadInjectFlags { .. })
    ));
}

#[test]
fn length_prefix_is_checked_before_the_body_arrives() {
    assert_eq!(split_frame(&[0, 0, 0]), Ok(None));
    assert_eq!(split_frame(&[0, 0, 0, 0]), Err(DecodeError::EmptyFrame));
    assert!(matches!(
        split_frame(&[0, 0x11, 0, 1]),
        Err(DecodeError::FrameTooLong { len: 0x110001, .. })
    ));
    assert_eq!(split_frame(&[0, 0x11, 0, 0]), Ok(None)); // exactly the limit: wait for it
    assert_eq!(split_frame(&[0, 0, 0, 2, 0x85]), Ok(None));
}

#[test]
fn oversized_fields_are_refused_without_writing() {
    let mut out = vec![9];
    let i = Inject {
        code: None,
        capsule_type: CapsuleType::default(),
        dst: Address::UNSPECIFIED,
        resource: 0,
        header: vec![0; 70_000],
        payload: vec![],
        trace: None,
    };
    assert!(matches!(
        AppFrame::Inject(i).encode(&mut out),
        Err(EncodeError::FieldTooLong { .. })
    ));
    let big = Inject {
        code: Some(vec![0; MAX_FRAME_LEN]),
        capsule_type: CapsuleType::default(),
        dst: Address::UNSPECIFIED,
        resource: 0,
        header: vec![],
        payload: vec![],
        trace: None,
    };
    assert!(matches!(
        AppFrame::Inject(big).encode(&mut out),
        Err(EncodeError::FrameTooLong { .. })
    ));
    assert_eq!(out, [9]);
}

#[test]
fn wrong_direction_and_trailing_bytes() {
    let pong = NodeFrame::Pong.to_bytes().unwrap();
    assert!(matches!(
        decode_app(&pong),
        Err(DecodeError::UnknownFrameType {
            frame_type: 0x85,
            ..
        })
    ));
    // A register body is 4 bytes, or 6 and more with a list: 5 is a truncated count.
    assert_eq!(
        AppFrame::decode(&[0x01, 0, 0, 0, 1, 9]),
        Err(DecodeError::Truncated {
            frame: "register",
            needed: 6,
            actual: 5
        })
    );
    assert!(matches!(
        NodeFrame::decode(&[0x83, 1, 2]),
        Err(DecodeError::Truncated { needed: 32, .. })
    ));
    assert_eq!(
        NodeFrame::decode(&[0x84, 0xff]),
        Err(DecodeError::InvalidUtf8)
    );
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 16]>().prop_map(Address)
}

fn capsule_type() -> impl Strategy<Value = CapsuleType> {
    any::<[u8; 32]>().prop_map(CapsuleType)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn app_frame() -> impl Strategy<Value = AppFrame> {
    prop_oneof![
        (
            any::<u32>(),
            prop::collection::vec(capsule_type(), 0..=MAX_ACCEPT_TYPES)
        )
            .prop_map(|(app, accept)| AppFrame::Register { app, accept }),
        Just(AppFrame::Ping),
        Just(AppFrame::Stats),
        Just(AppFrame::Capture),
        capsule_type().prop_map(|capsule_type| AppFrame::Evict { capsule_type }),
        prop::option::of(capsule_type())
            .prop_map(|capsule_type| AppFrame::StoreDump { capsule_type }),
        (
            prop::option::of(bytes(300)),
            capsule_type(),
            address(),
            any::<u16>(),
            bytes(100),
            bytes(300),
            prop::option::of(any::<u64>()),
        )
            .prop_map(
                |(code, capsule_type, dst, resource, header, payload, trace)| {
                    AppFrame::Inject(Inject {
                        code,
                        capsule_type,
                        dst,
                        resource,
                        header,
                        payload,
                        trace,
                    })
                }
            ),
    ]
}

fn node_frame() -> impl Strategy<Value = NodeFrame> {
    prop_oneof![
        (any::<u32>(), address()).prop_map(|(app, node)| NodeFrame::Registered { app, node }),
        capsule_type().prop_map(|capsule_type| NodeFrame::Injected { capsule_type }),
        ".{0,80}".prop_map(|message| NodeFrame::Error { message }),
        Just(NodeFrame::Pong),
        "[ -~]{0,64}".prop_map(|json| NodeFrame::Stats { json }),
        "[ -~]{0,64}".prop_map(|json| NodeFrame::StoreDump { json }),
        Just(NodeFrame::CaptureStarted),
        (
            any::<u64>(),
            any::<bool>(),
            any::<u32>(),
            (any::<[u8; 4]>(), any::<u16>()),
            (any::<[u8; 16]>(), any::<u16>()),
            bytes(300)
        )
            .prop_map(|(ts_ns, outbound, lost, (v4, p4), (mut v6, p6), data)| {
                // A v4-mapped IPv6 address reads back as IPv4: keep this one IPv6.
                v6[0] |= 0x20;
                NodeFrame::Captured(Captured {
                    ts_ns,
                    outbound,
                    lost,
                    peer: std::net::SocketAddr::from((v4, p4)),
                    local: std::net::SocketAddr::from((std::net::Ipv6Addr::from(v6), p6)),
                    data,
                })
            }),
        (capsule_type(), any::<bool>()).prop_map(|(capsule_type, removed)| NodeFrame::Evicted {
            capsule_type,
            removed
        }),
        (
            capsule_type(),
            (address(), address(), address()),
            any::<u16>(),
            bytes(100),
            bytes(300),
            any::<u64>()
        )
            .prop_map(
                |(capsule_type, (src, dst, prev), resource, header, payload, node_time_ns)| {
                    NodeFrame::Delivery(Delivery {
                        capsule_type,
                        src,
                        dst,
                        prev,
                        resource,
                        header,
                        payload,
                        node_time_ns,
                    })
                }
            ),
    ]
}

proptest! {
    #[test]
    fn app_frames_round_trip(f in app_frame()) {
        let b = f.to_bytes().unwrap();
        prop_assert_eq!(decode_app(&b).unwrap(), f);
    }

    #[test]
    fn node_frames_round_trip(f in node_frame()) {
        let b = f.to_bytes().unwrap();
        prop_assert_eq!(decode_node(&b).unwrap(), f);
    }

    #[test]
    fn register_counts_outside_the_limit_are_refused(
        app in any::<u32>(),
        count in prop_oneof![Just(0u16), 65u16..],
        list in bytes(300),
    ) {
        let mut frame = vec![frame_type::REGISTER];
        frame.extend_from_slice(&app.to_be_bytes());
        frame.extend_from_slice(&count.to_be_bytes());
        frame.extend_from_slice(&list);
        prop_assert_eq!(
            AppFrame::decode(&frame),
            Err(DecodeError::BadAcceptCount { count, max: MAX_ACCEPT_TYPES })
        );
    }

    #[test]
    fn a_stream_splits_into_its_frames(frames in prop::collection::vec(app_frame(), 0..6)) {
        let mut stream = Vec::new();
        for f in &frames {
            f.encode(&mut stream).unwrap();
        }
        let mut rest = &stream[..];
        for f in &frames {
            let (frame, used) = split_frame(rest).unwrap().expect("a whole frame");
            prop_assert_eq!(used, LEN_PREFIX + frame.len());
            prop_assert_eq!(&AppFrame::decode(frame).unwrap(), f);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
        prop_assert_eq!(split_frame(rest), Ok(None));
    }

    #[test]
    fn a_cut_frame_is_incomplete(f in node_frame(), at in any::<prop::sample::Index>()) {
        let b = f.to_bytes().unwrap();
        prop_assert_eq!(split_frame(&b[..at.index(b.len())]), Ok(None));
    }

    #[test]
    fn random_bytes_decode_or_error(b in bytes(400)) {
        let _ = AppFrame::decode(&b);
        let _ = NodeFrame::decode(&b);
        if let Ok(Some((frame, used))) = split_frame(&b) {
            prop_assert!(used <= b.len());
            let _ = AppFrame::decode(frame);
            let _ = NodeFrame::decode(frame);
        }
    }

    #[test]
    fn mutated_frames_decode_or_error(
        f in app_frame(), g in node_frame(), at in any::<prop::sample::Index>(), v in any::<u8>()
    ) {
        for mut b in [f.to_bytes().unwrap(), g.to_bytes().unwrap()] {
            let i = at.index(b.len());
            b[i] = v;
            if let Ok(Some((frame, _))) = split_frame(&b) {
                let _ = AppFrame::decode(frame);
                let _ = NodeFrame::decode(frame);
            }
        }
    }
}
