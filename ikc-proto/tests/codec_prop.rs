//! Property tests: any sequence of frames, encoded back to back and cut into
//! chunks at random points, decodes to the same frames, for the frame codec
//! alone and behind a handshake.

mod support;

use bytes::BytesMut;
use ikc_proto::{FrameCodec, HandshakeCodec, pb};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use tokio_util::codec::{Decoder, Encoder};

fn arb_arg() -> impl Strategy<Value = Option<pb::Value>> {
    proptest::option::of(support::arb_value().prop_map(pb::Value::from))
}

fn arb_frame() -> impl Strategy<Value = pb::Frame> {
    prop_oneof![
        (
            any::<u64>(),
            "[a-z:/]{0,24}",
            arb_arg(),
            ".{0,8}",
            any::<u32>()
        )
            .prop_map(|(id, target, arg, from, deadline_ms)| {
                pb::Request {
                    id,
                    target,
                    arg,
                    from,
                    deadline_ms,
                }
                .into()
            }),
        (any::<u64>(), arb_arg()).prop_map(|(id, value)| pb::Reply { id, value }.into()),
        (
            any::<u64>(),
            0..=10i32,
            ".{0,16}",
            any::<bool>(),
            any::<u32>()
        )
            .prop_map(|(id, kind, message, may_have_run, retry_after_ms)| {
                pb::Error {
                    id,
                    kind,
                    message,
                    may_have_run,
                    retry_after_ms,
                }
                .into()
            }),
        any::<u64>().prop_map(|id| pb::Cancel { id }.into()),
        (any::<u64>(), ".{0,8}").prop_map(|(id, session)| pb::Subscribe { id, session }.into()),
        ".{0,8}".prop_map(|session| pb::Unsubscribe { session }.into()),
        any::<u64>().prop_map(|nonce| pb::Ping { nonce }.into()),
        any::<u64>().prop_map(|nonce| pb::Pong { nonce }.into()),
        (".{0,16}", any::<u64>())
            .prop_map(|(reason, last_id)| pb::GoAway { reason, last_id }.into()),
        Just(pb::Frame::default()),
    ]
}

fn arb_hello() -> impl Strategy<Value = pb::Handshake> {
    (
        "[A-Za-z0-9_.-]{0,16}",
        vec(".{0,8}", 0..4),
        any::<u32>(),
        vec("[a-z]{1,8}", 0..4),
        vec(any::<u8>(), 0..16),
        proptest::option::of((any::<u32>(), any::<u32>(), any::<u32>())),
    )
        .prop_map(|(kernel, aliases, pid, features, auth, limits)| {
            pb::Hello {
                version: 1,
                kernel,
                aliases,
                pid,
                features,
                auth: auth.into(),
                limits: limits.map(|(max_frame_len, max_in_flight, keepalive_ms)| pb::Limits {
                    max_frame_len,
                    max_in_flight,
                    keepalive_ms,
                }),
            }
            .into()
        })
}

/// `bytes` cut at the given points (any number, any order, repeats allowed).
fn chunks(bytes: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn encode_frames(frames: &[pb::Frame], wire: &mut BytesMut) {
    let mut codec = FrameCodec::new();
    for frame in frames {
        codec.encode(frame, wire).expect("frame encodes");
    }
}

/// Feeds `chunks` one at a time, decoding all it can after each.
fn decode_in_chunks(
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    chunks: &[Vec<u8>],
) -> Vec<pb::Frame> {
    let mut decoded = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(buf).expect("valid frames") {
            decoded.push(frame);
        }
    }
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn frames_cut_at_random_points_decode_to_the_same_frames(
        frames in vec(arb_frame(), 0..12),
        cuts in vec(any::<Index>(), 0..16),
    ) {
        let mut wire = BytesMut::new();
        encode_frames(&frames, &mut wire);

        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::new();
        let decoded = decode_in_chunks(&mut codec, &mut buf, &chunks(&wire, &cuts));
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
        prop_assert_eq!(codec.decode_eof(&mut buf).expect("clean end"), None);
    }

    #[test]
    fn handshake_then_frames_cut_at_random_points_decode_to_the_same_messages(
        hello in arb_hello(),
        frames in vec(arb_frame(), 0..8),
        cuts in vec(any::<Index>(), 0..16),
    ) {
        let mut wire = BytesMut::new();
        HandshakeCodec::client().encode(hello.clone(), &mut wire).expect("hello encodes");
        encode_frames(&frames, &mut wire);
        let chunks = chunks(&wire, &cuts);

        let mut handshake = HandshakeCodec::server();
        let mut buf = BytesMut::new();
        let mut rest = chunks.as_slice();
        let mut received = None;
        // Feed chunks to the handshake codec until the Hello is out; what
        // stays in `buf` belongs to the frame codec.
        while let Some((chunk, tail)) = rest.split_first() {
            buf.extend_from_slice(chunk);
            rest = tail;
            if let Some(message) = handshake.decode(&mut buf).expect("valid handshake") {
                received = Some(message);
                break;
            }
        }
        prop_assert_eq!(received, Some(hello));

        let mut codec = handshake.into_frame_codec();
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
            decoded.push(frame);
        }
        decoded.extend(decode_in_chunks(&mut codec, &mut buf, rest));
        prop_assert_eq!(decoded, frames);
        prop_assert!(buf.is_empty());
        prop_assert_eq!(codec.decode_eof(&mut buf).expect("clean end"), None);
    }
}
