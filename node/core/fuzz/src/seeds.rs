//! Hand-written runs, one per path of the loader, written to `seeds/loader/` by
//! `cargo run --example write_seeds` (through [`encode`](crate::encode)). Types are
//! 0 (3 chunks), 1 (40 chunks), 2 (1 chunk), 3 (no module hashes to it); peers 0 and 1 are
//! neighbours, 2..=4 strangers.

use crate::input::{Knobs, Op, Preset};

use Op::*;

const ALL: Op = Drain { n: u8::MAX };

/// `(file name, preset, operations)` of every seed.
pub fn scenarios() -> Vec<(&'static str, Preset, Vec<Op>)> {
    vec![
        (
            "fetch-and-serve",
            Preset::Default,
            vec![
                Hold {
                    ty: 0,
                    from: 0,
                    len: 64,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                Events { install: true },
                // A stranger we sent nothing to gets nothing; once we did, it is served.
                request(0, 2, 0b111),
                NoteSent { ty: 0, to: 2 },
                request(0, 2, 0b111),
                ALL,
            ],
        ),
        (
            "two-windows",
            Preset::Default,
            vec![
                Hold {
                    ty: 1,
                    from: 1,
                    len: 10,
                },
                Hold {
                    ty: 1,
                    from: 2,
                    len: 10,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                Events { install: true },
            ],
        ),
        (
            "lossy-small",
            Preset::Small,
            vec![
                Hold {
                    ty: 0,
                    from: 2,
                    len: 100,
                },
                ALL,
                Answer {
                    drop: 0b010,
                    lie: false,
                },
                Timeout,
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                Events { install: false },
                Compiled { ty: 0, ms: 900 },
                TakeHeld { ty: 0 },
            ],
        ),
        (
            "liar-then-honest",
            Preset::Small,
            vec![
                Hold {
                    ty: 0,
                    from: 1,
                    len: 8,
                },
                Hold {
                    ty: 0,
                    from: 2,
                    len: 8,
                },
                ALL,
                Answer { drop: 0, lie: true },
                ALL,
                Answer { drop: 0, lie: true },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                Events { install: true },
                Hold {
                    ty: 0,
                    from: 1,
                    len: 8,
                },
                ALL,
            ],
        ),
        (
            "ghost-not-found",
            Preset::Default,
            vec![
                Hold {
                    ty: 3,
                    from: 0,
                    len: 20,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                Events { install: false },
                Hold {
                    ty: 3,
                    from: 0,
                    len: 20,
                },
                Hold {
                    ty: 3,
                    from: 1,
                    len: 20,
                },
                ALL,
                Answer { drop: 0, lie: true },
                ALL,
                Answer { drop: 0, lie: true },
                Events { install: false },
            ],
        ),
        (
            "limits-and-timeouts",
            Preset::Small,
            vec![
                Hold {
                    ty: 0,
                    from: 0,
                    len: 300,
                },
                Hold {
                    ty: 0,
                    from: 0,
                    len: 300,
                },
                Hold {
                    ty: 0,
                    from: 0,
                    len: 300,
                },
                Hold {
                    ty: 0,
                    from: 0,
                    len: 300,
                },
                Hold {
                    ty: 2,
                    from: 0,
                    len: 300,
                },
                Hold {
                    ty: 3,
                    from: 1,
                    len: 300,
                },
                Hold {
                    ty: 1,
                    from: 2,
                    len: 300,
                },
                Advance {
                    ms: 500,
                    fire: true,
                },
                Advance {
                    ms: 500,
                    fire: true,
                },
                Timeout,
                Timeout,
                Timeout,
                Timeout,
                ALL,
                Events { install: false },
                Hold {
                    ty: 0,
                    from: 0,
                    len: 1,
                },
            ],
        ),
        (
            "local-compile",
            Preset::Small,
            vec![
                HoldLocal {
                    ty: 2,
                    from: 5,
                    len: 30,
                },
                HoldLocal {
                    ty: 2,
                    from: 0,
                    len: 30,
                },
                Compiled { ty: 2, ms: 300 },
                CompileFailed {
                    ty: 2,
                    invalid: true,
                },
                Hold {
                    ty: 2,
                    from: 1,
                    len: 30,
                },
                Advance {
                    ms: 1500,
                    fire: true,
                },
                HoldLocal {
                    ty: 0,
                    from: 1,
                    len: 30,
                },
                Timeout,
                Events { install: false },
            ],
        ),
        (
            "serve-limits",
            Preset::Small,
            vec![
                NoteSent { ty: 0, to: 3 },
                request(0, 3, 0b111),
                request(1, 0, 0),
                request(2, 1, 0),
                request(0, 3, 0b1),
                request(0, 3, 0b1),
                request(0, 4, 0b1),
                ALL,
            ],
        ),
        (
            "handmade-chunks",
            Preset::Default,
            vec![
                Hold {
                    ty: 0,
                    from: 4,
                    len: 5,
                },
                Chunk {
                    ty: 0,
                    from: 4,
                    total: 3000,
                    offset: 0,
                    len: 0,
                    fill: 7,
                    fit: true,
                },
                RealChunk {
                    ty: 0,
                    from: 4,
                    idx: 1,
                },
                CorruptChunk {
                    ty: 0,
                    from: 4,
                    idx: 2,
                    at: 5,
                    xor: 1,
                },
                Nack {
                    ty: 0,
                    from: 3,
                    reason: 0,
                },
                Nack {
                    ty: 0,
                    from: 4,
                    reason: 1,
                },
                ALL,
                Events { install: false },
            ],
        ),
        (
            "tuned-window-one",
            Preset::Tuned(Knobs {
                per_type: 2,
                total: 4,
                bytes: 1000,
                fetches: 2,
                per_peer: 1,
                module_kib: 8,
                request_ms: 50,
                backoff: 4,
                attempts: 2,
                load_ms: 2000,
                compile_ms: 500,
                window: 1,
                negative_ms: 500,
                distrust_ms: 1000,
                serve_ms: 1000,
                serve_rate: 2048,
                serve_burst: 1024,
                compile_rate_ms: 100,
                compile_burst_ms: 200,
                tables: 2,
                transmit: 2,
                allow: 0,
            }),
            vec![
                Hold {
                    ty: 0,
                    from: 0,
                    len: 5,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                ALL,
                Answer {
                    drop: 0,
                    lie: false,
                },
                Events { install: true },
                request(0, 1, 0),
                request(0, 1, 0),
                ALL,
            ],
        ),
    ]
}

/// A request for type `ty` from `from`: chunks named by `bits` (0: every chunk).
fn request(ty: u8, from: u8, bits: u8) -> Op {
    Request {
        ty,
        from,
        first: 0,
        bitmap: [bits, 0, 0, 0],
        bitmap_len: u8::from(bits != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode, run_ops};

    fn counters_of(name: &str) -> ants_core::LoaderCounters {
        let (_, preset, ops) = scenarios()
            .into_iter()
            .find(|s| s.0 == name)
            .expect("scenario");
        run_ops(&preset, &ops).counters().clone()
    }

    #[test]
    fn seeds_decode_to_their_scenarios() {
        for (name, preset, ops) in scenarios() {
            let (p, o) = decode(&encode(&preset, &ops)).expect("decodes");
            assert_eq!((p, o), (preset, ops), "{name}");
        }
    }

    #[test]
    fn scenarios_reach_their_paths() {
        let k = counters_of("fetch-and-serve");
        assert_eq!((k.verified, k.held_released), (1, 1));
        assert_eq!((k.requests_unauthorized, k.requests_served), (1, 1));
        assert_eq!(counters_of("two-windows").verified, 1);
        assert!(counters_of("lossy-small").retries >= 1);
        let k = counters_of("liar-then-honest");
        assert_eq!((k.hash_mismatches, k.verified), (2, 1));
        let k = counters_of("ghost-not-found");
        assert_eq!((k.negative_cache_refusals, k.hash_mismatches), (1, 2));
        let k = counters_of("limits-and-timeouts");
        assert!(k.held_dropped_queue_full >= 1 && k.fetches_refused >= 1);
        assert!(k.load_timeouts >= 1);
        let k = counters_of("local-compile");
        assert_eq!((k.local_loads, k.rejected_refusals), (2, 1));
        assert_eq!(k.compile_timeouts, 1);
        let k = counters_of("serve-limits");
        assert_eq!((k.requests_unauthorized, k.requests_served), (1, 3));
        assert_eq!(k.nacks_sent, 2, "too-large and not-found");
        assert_eq!(counters_of("handmade-chunks").conflicting_chunks, 0);
        let k = counters_of("tuned-window-one");
        assert_eq!((k.verified, k.requests_rate_limited), (1, 1));
    }
}
