//! Any bytes, read two ways, never make the app-socket protocol panic:
//!
//! - as one frame (type byte + body) handed straight to `AppFrame::decode` and
//!   `NodeFrame::decode`, so the fuzzer reaches the bodies without having to guess a length
//!   prefix;
//! - as a byte stream cut by `split_frame` into frames, each decoded both ways.
//!
//! Whatever decodes re-encodes to exactly the bytes it came from, behind the right length
//! prefix, and decodes again to the same value: every frame has one encoding. The splitter
//! consumes exactly `4 + length` bytes per frame, agrees with `check_frame_len` on every
//! prefix, reports a frame one byte short of complete as incomplete, and errors only on a bad
//! length prefix.
#![no_main]

use ants_app::proto::{
    AppFrame, DecodeError, EncodeError, LEN_PREFIX, MAX_ACCEPT_TYPES, MAX_FRAME_LEN, NodeFrame,
    check_frame_len, split_frame,
};
use libfuzzer_sys::fuzz_target;

fn one_line(s: &str) {
    assert!(!s.is_empty() && !s.contains('\n'), "bad Display: {s:?}");
}

/// A decoded `frame` re-encodes to `LEN_PREFIX` + `frame` and decodes to itself; a frame
/// too long for the stream cannot be re-encoded (it could not have come from `split_frame`).
fn check_round_trip<F: PartialEq + std::fmt::Debug>(
    frame: &[u8],
    decoded: &F,
    encoded: Result<Vec<u8>, EncodeError>,
    decode: impl Fn(&[u8]) -> Result<F, DecodeError>,
) {
    let _ = format!("{decoded:?}");
    if frame.len() > MAX_FRAME_LEN {
        assert!(
            matches!(encoded, Err(EncodeError::FrameTooLong { .. })),
            "{decoded:?}"
        );
        return;
    }
    let bytes = encoded.expect("a decoded frame re-encodes");
    let (prefix, again) = bytes.split_at(LEN_PREFIX);
    let len = u32::try_from(frame.len()).expect("at most MAX_FRAME_LEN");
    assert_eq!(prefix, len.to_be_bytes(), "{decoded:?}");
    assert_eq!(again, frame, "non-canonical: {decoded:?}");
    assert_eq!(decode(again).as_ref(), Ok(decoded));
}

fn check_app(frame: &[u8]) {
    match AppFrame::decode(frame) {
        Ok(f) => {
            if let AppFrame::Register { accept, .. } = &f {
                assert!(accept.len() <= MAX_ACCEPT_TYPES);
                // The 4-byte body (any type) or app + count + a non-empty list.
                assert_eq!(accept.is_empty(), frame.len() == 1 + 4);
            }
            check_round_trip(frame, &f, f.to_bytes(), AppFrame::decode);
        }
        Err(e) => one_line(&e.to_string()),
    }
}

fn check_node(frame: &[u8]) {
    match NodeFrame::decode(frame) {
        Ok(f) => check_round_trip(frame, &f, f.to_bytes(), NodeFrame::decode),
        Err(e) => one_line(&e.to_string()),
    }
}

fuzz_target!(|data: &[u8]| {
    check_app(data);
    check_node(data);

    let mut rest = data;
    let mut rebuilt = Vec::with_capacity(data.len());
    loop {
        let prefix = rest
            .first_chunk::<LEN_PREFIX>()
            .map(|p| u32::from_be_bytes(*p));
        match split_frame(rest) {
            Ok(Some((frame, used))) => {
                assert_eq!(used, LEN_PREFIX + frame.len());
                assert!(used <= rest.len());
                let len = prefix.expect("a frame has a whole prefix");
                assert_eq!(check_frame_len(len), Ok(frame.len()));
                assert_eq!(split_frame(&rest[..used - 1]), Ok(None));
                rebuilt.extend_from_slice(&len.to_be_bytes());
                rebuilt.extend_from_slice(frame);
                check_app(frame);
                check_node(frame);
                rest = &rest[used..];
            }
            Ok(None) => {
                // Too short for the prefix, or for the frame a valid prefix announces.
                if let Some(len) = prefix {
                    let n = check_frame_len(len).expect("waiting only on a valid prefix");
                    assert!(rest.len() < LEN_PREFIX + n);
                }
                break;
            }
            Err(e) => {
                let len = prefix.expect("an error only once the prefix is in");
                assert_eq!(check_frame_len(len), Err(e.clone()));
                assert!(matches!(
                    e,
                    DecodeError::EmptyFrame | DecodeError::FrameTooLong { .. }
                ));
                one_line(&e.to_string());
                break;
            }
        }
    }
    // The frames account for every byte consumed, and for nothing else.
    assert_eq!(rebuilt, data[..data.len() - rest.len()]);
});
