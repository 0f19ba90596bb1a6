//! Property test: arbitrary sequences of inputs from arbitrary peers never panic, every
//! bound holds after every step, and everything the loader transmits parses.

use std::sync::Arc;
use std::time::Duration;

use ants_wire::code::CHUNK_LEN;
use ants_wire::{CapsuleType, CodeChunk, CodeNack, CodeRequest, Message, NackReason};
use proptest::prelude::*;

use super::tests::module;
use super::*;
use crate::CodeCache;

#[derive(Debug, Clone)]
enum Op {
    Hold {
        ty: u8,
        from: u8,
        len: usize,
    },
    /// A chunk of the real module of type 0 (so loads can complete).
    RealChunk {
        from: u8,
        idx: usize,
    },
    /// A well-formed chunk of made-up bytes and length.
    Chunk {
        ty: u8,
        from: u8,
        total: u32,
        idx: u32,
        fill: u8,
    },
    /// Random bytes offered as a chunk; handled only if they parse.
    RawChunk {
        from: u8,
        bytes: Vec<u8>,
    },
    Nack {
        ty: u8,
        from: u8,
        reason: u8,
    },
    Request {
        ty: u8,
        from: u8,
        first: u32,
        bitmap: Vec<u8>,
        neighbour: bool,
    },
    NoteSent {
        ty: u8,
        to: u8,
    },
    Advance {
        ms: u64,
    },
    Take {
        ty: u8,
    },
    CompileFailed {
        ty: u8,
        invalid: bool,
    },
    /// A capsule whose code is local (`from` 4 stands for a local app).
    HoldLocal {
        ty: u8,
        from: u8,
        len: usize,
    },
    /// The node reports a compile that took `ms`.
    Compiled {
        ty: u8,
        ms: u64,
    },
    Drain {
        n: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4u8, 0..5u8, 0..700usize).prop_map(|(ty, from, len)| Op::Hold { ty, from, len }),
        (0..5u8, 0..5usize).prop_map(|(from, idx)| Op::RealChunk { from, idx }),
        (0..4u8, 0..5u8, 1..9000u32, 0..9u32, any::<u8>()).prop_map(
            |(ty, from, total, idx, fill)| Op::Chunk {
                ty,
                from,
                total,
                idx,
                fill
            }
        ),
        (0..5u8, proptest::collection::vec(any::<u8>(), 0..1100))
            .prop_map(|(from, bytes)| Op::RawChunk { from, bytes }),
        (0..4u8, 0..5u8, 1..4u8).prop_map(|(ty, from, reason)| Op::Nack { ty, from, reason }),
        (
            0..4u8,
            0..5u8,
            0..10u32,
            proptest::collection::vec(any::<u8>(), 0..4),
            any::<bool>()
        )
            .prop_map(|(ty, from, first, bitmap, neighbour)| Op::Request {
                ty,
                from,
                first,
                bitmap,
                neighbour
            }),
        (0..4u8, 0..5u8).prop_map(|(ty, to)| Op::NoteSent { ty, to }),
        (0..3000u64).prop_map(|ms| Op::Advance { ms }),
        (0..4u8).prop_map(|ty| Op::Take { ty }),
        (0..4u8, any::<bool>()).prop_map(|(ty, invalid)| Op::CompileFailed { ty, invalid }),
        (0..4u8, 0..5u8, 0..700usize).prop_map(|(ty, from, len)| Op::HoldLocal { ty, from, len }),
        (0..4u8, 0..2000u64).prop_map(|(ty, ms)| Op::Compiled { ty, ms }),
        (0..6usize).prop_map(|n| Op::Drain { n }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_inputs_never_panic_and_bounds_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let config = LoaderConfig::tight();
        let (real_ty, real) = module(5000, 0);
        let types = [real_ty, CapsuleType([1; 32]), CapsuleType([2; 32]), CapsuleType([3; 32])];
        let mut cache = CodeCache::new(1 << 20);
        cache.insert(real_ty, Arc::from(real.clone())).unwrap();
        cache.insert(types[1], Arc::from(vec![7u8; 7000])).unwrap(); // above max_module_bytes
        let mut l: CodeLoader<u8> = CodeLoader::new(config.clone());
        let mut now = Duration::ZERO;
        for op in ops {
            match op {
                Op::Hold { ty, from, len } => {
                    l.hold(now, types[usize::from(ty)], from, vec![0; len]);
                }
                Op::RealChunk { from, idx } => {
                    let off = idx * CHUNK_LEN;
                    let chunk = CodeChunk {
                        capsule_type: real_ty,
                        total_len: real.len() as u32,
                        offset: off as u32,
                        bytes: &real[off..real.len().min(off + CHUNK_LEN)],
                    };
                    l.handle_chunk(now, from, &chunk);
                }
                Op::Chunk { ty, from, total, idx, fill } => {
                    let chunks = CodeChunk::chunk_count(total);
                    let idx = idx % chunks;
                    let off = idx as usize * CHUNK_LEN;
                    let bytes = vec![fill; CHUNK_LEN.min(total as usize - off)];
                    let chunk = CodeChunk {
                        capsule_type: types[usize::from(ty)],
                        total_len: total,
                        offset: off as u32,
                        bytes: &bytes,
                    };
                    l.handle_chunk(now, from, &chunk);
                }
                Op::RawChunk { from, bytes } => {
                    if let Ok(chunk) = CodeChunk::parse(&bytes) {
                        l.handle_chunk(now, from, &chunk);
                    }
                }
                Op::Nack { ty, from, reason } => {
                    let reason = match reason {
                        1 => NackReason::NotFound,
                        2 => NackReason::RateLimited,
                        _ => NackReason::TooLarge,
                    };
                    let nack = CodeNack { capsule_type: types[usize::from(ty)], reason };
                    l.handle_nack(now, from, &nack);
                }
                Op::Request { ty, from, first, bitmap, neighbour } => {
                    let req = CodeRequest {
                        capsule_type: types[usize::from(ty)],
                        first_chunk: first,
                        bitmap: &bitmap,
                    };
                    l.handle_request(now, from, &req, neighbour, &mut cache);
                }
                Op::NoteSent { ty, to } => l.note_sent(now, types[usize::from(ty)], to),
                Op::Advance { ms } => {
                    now += Duration::from_millis(ms);
                    l.handle_timeout(now);
                }
                Op::Take { ty } => {
                    l.take_held(&types[usize::from(ty)]);
                }
                Op::CompileFailed { ty, invalid } => {
                    l.compile_failed(now, &types[usize::from(ty)], invalid);
                }
                Op::HoldLocal { ty, from, len } => {
                    let from = (from < 4).then_some(from);
                    l.hold_local(now, types[usize::from(ty)], from, vec![0; len]);
                }
                Op::Compiled { ty, ms } => {
                    l.compiled(now, &types[usize::from(ty)], Duration::from_millis(ms));
                }
                Op::Drain { n } => {
                    for _ in 0..n {
                        if let Some((_, msg)) = l.poll_transmit() {
                            prop_assert!(Message::parse(&msg).is_ok());
                        }
                    }
                    while let Some(ev) = l.poll_event() {
                        if let LoaderEvent::Verified { ty, code } = ev {
                            prop_assert_eq!(ty, real_ty);
                            prop_assert_eq!(&code[..], &real[..]);
                        }
                    }
                }
            }
            let o = l.occupancy();
            prop_assert!(o.fetches <= config.max_concurrent_fetches);
            prop_assert!(o.held <= config.max_pending_total);
            prop_assert!(o.held_bytes <= config.max_pending_bytes);
            prop_assert!(types.iter().all(|t| l.held_count(t) <= config.max_pending_per_type));
            prop_assert!(o.reassembly_bytes <= config.max_concurrent_fetches * config.max_module_bytes);
            prop_assert!(o.transmit_queue <= config.max_transmit_queue);
            prop_assert!(o.negative <= config.max_negative_entries);
            prop_assert!(o.rejected <= config.max_negative_entries);
            prop_assert!(o.budget_peers <= config.max_budget_peers);
            prop_assert!(o.distrusted <= config.max_distrust_entries);
            prop_assert!(o.authorizations <= config.max_authorizations);
            prop_assert!(o.serve_peers <= config.max_serve_peers);
            if let Some(t) = l.poll_timeout() {
                // A deadline never lies past the load timeout of a fetch started by now.
                prop_assert!(t <= now + config.load_timeout.max(config.compile_timeout));
            }
        }
        while let Some((_, msg)) = l.poll_transmit() {
            prop_assert!(Message::parse(&msg).is_ok());
        }
    }
}
