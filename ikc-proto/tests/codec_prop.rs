//! Property tests: any sequence of frames, encoded back to back and cut into
//! chunks at random points, decodes to the same frames, for the frame codec
//! alone and behind a handshake.

mod support;

use bytes::{BufMut, BytesMut};
use ikc_proto::{FrameCodec, HandshakeCodec, pb};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

fn arb_arg() -> impl Strategy<Value = Option<pb::Value>> {
    proptest::option::of(prop_oneof![
        8 => support::arb_value().prop_map(pb::Value::from),
        // Shapes no `Value` converts to, which a peer may still send.
        1 => Just(pb::Value { kind: None }),
        1 => any::<i32>().prop_map(|null| pb::Value {
            kind: Some(pb::value::Kind::Null(null)),
        }),
    ])
}

/// Ids of every varint length: small ones (one or two bytes, what real
/// traffic carries) as often as full-width ones.
fn arb_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..128u64,
        128..1u64 << 21,
        1u64 << 21..1u64 << 56,
        1u64 << 56..=u64::MAX,
    ]
}

/// A trace context as a caller sends it, or none, or anything a peer might
/// put there.
fn arb_traceparent() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]",
        ".{0,60}",
    ]
}

/// A request frame with targets matching `target` and arguments from `arg`.
fn arb_request(
    target: &'static str,
    arg: impl Strategy<Value = Option<pb::Value>>,
) -> impl Strategy<Value = pb::Frame> {
    (
        arb_id(),
        target,
        arg,
        ".{0,8}",
        any::<u32>(),
        arb_traceparent(),
    )
        .prop_map(|(id, target, arg, from, deadline_ms, traceparent)| {
            pb::Request {
                id,
                target,
                arg,
                from,
                deadline_ms,
                traceparent,
            }
            .into()
        })
}

fn arb_frame() -> impl Strategy<Value = pb::Frame> {
    prop_oneof![
        arb_request("[a-z:/]{0,24}", arb_arg()),
        (arb_id(), arb_arg()).prop_map(|(id, value)| pb::Reply { id, value }.into()),
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
        "[A-Za-z0-9_.-]{0,12}",
    )
        .prop_map(|(kernel, aliases, pid, features, auth, limits, key_id)| {
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
                key_id,
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

/// What prost makes of a frame's bytes; the frame codec must agree.
fn prost_decode(message: &[u8]) -> Option<Vec<u8>> {
    // Compared re-encoded: a float that became NaN is not equal to itself.
    pb::Frame::decode(message)
        .ok()
        .map(|frame| frame.encode_to_vec())
}

fn codec_decode(message: &[u8]) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    buf.put_u32(u32::try_from(message.len()).expect("short"));
    buf.extend_from_slice(message);
    let frame = FrameCodec::new().decode(&mut buf).ok()?;
    Some(frame.expect("a whole frame").encode_to_vec())
}

/// How a field is written.
#[derive(Debug, Clone)]
enum Field {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Delimited(u32, Vec<u8>),
}

fn put_fields(fields: &[Field]) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let mut buf = BytesMut::new();
    for field in fields {
        match field {
            Field::Varint(tag, n) => {
                encode_key(*tag, WireType::Varint, &mut buf);
                encode_varint(*n, &mut buf);
            }
            Field::Fixed64(tag, n) => {
                encode_key(*tag, WireType::SixtyFourBit, &mut buf);
                buf.put_u64_le(*n);
            }
            Field::Delimited(tag, bytes) => {
                encode_key(*tag, WireType::LengthDelimited, &mut buf);
                encode_varint(bytes.len() as u64, &mut buf);
                buf.extend_from_slice(bytes);
            }
        }
    }
    buf.to_vec()
}

/// A field with tag `1..=max_tag`: mostly of the wire type `expected`
/// gives that tag, sometimes of another.
fn arb_field(
    max_tag: u32,
    expected: fn(u32) -> u8,
    body: impl Strategy<Value = Vec<u8>>,
) -> impl Strategy<Value = Field> {
    (1..=max_tag, 0..8u8, any::<u64>(), body).prop_map(move |(tag, pick, n, bytes)| {
        let kind = if pick < 6 {
            expected(tag)
        } else {
            pick - 6 + u8::from(pick == 7)
        };
        match kind {
            0 => Field::Varint(tag, n % 300),
            1 => Field::Fixed64(tag, n),
            _ => Field::Delimited(tag, bytes),
        }
    })
}

/// A `Value` body: fields of a value, repeated, out of order, unknown.
fn arb_value_soup() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        ".{0,4}".prop_map(String::into_bytes),
        vec(any::<u8>(), 0..4)
    ];
    let expected = |tag| match tag {
        4 => 1,
        5..=8 => 2,
        _ => 0,
    };
    vec(arb_field(9, expected, text), 0..3).prop_map(|fields| put_fields(&fields))
}

/// A `Request` or `Reply` frame whose fields come in any order, repeated
/// or unknown: what a peer other than ikc may send.
fn arb_field_soup() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![".{0,6}".prop_map(String::into_bytes), arb_value_soup()];
    let expected = |tag| match tag {
        2..=4 => 2,
        _ => 0,
    };
    (
        prop_oneof![Just(1u32), Just(2u32)],
        vec(arb_field(6, expected, body), 0..6),
    )
        .prop_map(|(kind, fields)| put_fields(&[Field::Delimited(kind, put_fields(&fields))]))
}

// The codec writes and reads the common frames itself (see
// `codec/fast.rs`) and leaves the rest to prost: it must agree with prost
// byte for byte and value for value, on good input and bad.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_codec_writes_the_bytes_prost_writes(frame in arb_frame()) {
        let mut wire = BytesMut::new();
        FrameCodec::new().encode(&frame, &mut wire).expect("frame encodes");
        let message = frame.encode_to_vec();
        prop_assert_eq!(&wire[..4], &u32::try_from(message.len()).unwrap().to_be_bytes()[..]);
        prop_assert_eq!(&wire[4..], &message[..]);
    }

    #[test]
    fn the_codec_reads_damaged_frames_as_prost_does(
        frame in arb_frame(),
        flips in vec((any::<Index>(), any::<u8>()), 0..4),
        keep in any::<Index>(),
    ) {
        let mut message = frame.encode_to_vec();
        if !message.is_empty() {
            for (at, bits) in flips {
                let at = at.index(message.len());
                message[at] ^= bits;
            }
            message.truncate(1 + keep.index(message.len()));
        }
        prop_assert_eq!(codec_decode(&message), prost_decode(&message));
    }

    #[test]
    fn the_codec_reads_any_bytes_as_prost_does(
        message in prop_oneof![
            vec(any::<u8>(), 0..48),
            // A request or reply head, then anything.
            (prop_oneof![Just(0x0au8), Just(0x12u8)], vec(any::<u8>(), 0..48))
                .prop_map(|(key, rest)| {
                    let mut message = vec![key, u8::try_from(rest.len()).unwrap()];
                    message.extend(rest);
                    message
                }),
        ],
    ) {
        prop_assert_eq!(codec_decode(&message), prost_decode(&message));
    }

    #[test]
    fn the_codec_reads_fields_in_any_order_as_prost_does(message in arb_field_soup()) {
        prop_assert_eq!(codec_decode(&message), prost_decode(&message));
    }
}

#[test]
fn a_value_with_two_kinds_reads_as_the_last_as_prost_does() {
    // Request { id: 1, arg: Value { int: 2, bool: true } }
    let value = put_fields(&[Field::Varint(3, 4), Field::Varint(2, 1)]);
    let request = put_fields(&[Field::Varint(1, 1), Field::Delimited(3, value)]);
    let message = put_fields(&[Field::Delimited(1, request)]);
    let decoded = codec_decode(&message).expect("a valid frame");
    assert_eq!(Some(decoded.clone()), prost_decode(&message));
    let frame = pb::Frame::decode(&decoded[..]).unwrap();
    let Some(pb::frame::Kind::Request(request)) = frame.kind else {
        panic!("a request: {frame:?}");
    };
    assert_eq!(
        request.arg.and_then(|arg| arg.kind),
        Some(pb::value::Kind::Bool(true))
    );
}

proptest! {
    #[test]
    fn encoded_len_is_prosts(frame in arb_frame()) {
        prop_assert_eq!(ikc_proto::codec::encoded::encoded_len(&frame), frame.encoded_len());
    }
}

#[test]
fn bytes_in_a_request_followed_by_more_fields_are_the_bytes_sent() {
    let frame: pb::Frame = pb::Request {
        id: 7,
        target: "echo/say".to_owned(),
        arg: Some(pb::Value {
            kind: Some(pb::value::Kind::Bytes(vec![1, 2, 3].into())),
        }),
        from: "me".to_owned(),
        deadline_ms: 5,
        traceparent: String::new(),
    }
    .into();
    let mut wire = BytesMut::new();
    FrameCodec::new().encode(&frame, &mut wire).unwrap();
    assert_eq!(FrameCodec::new().decode(&mut wire).unwrap(), Some(frame));
}

/// Request and reply frames with scalar values: the shapes the codec
/// writes and reads itself.
fn arb_scalar_frame() -> impl Strategy<Value = pb::Frame> {
    use pb::value::Kind;
    let value = proptest::option::of(
        prop_oneof![
            any::<i32>().prop_map(Kind::Null),
            any::<bool>().prop_map(Kind::Bool),
            any::<i64>().prop_map(Kind::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Kind::Float),
            ".{0,12}".prop_map(Kind::String),
            vec(any::<u8>(), 0..300).prop_map(|b| Kind::Bytes(b.into())),
        ]
        .prop_map(|kind| pb::Value { kind: Some(kind) }),
    );
    prop_oneof![
        arb_request(".{0,24}", value.clone()),
        (arb_id(), value).prop_map(|(id, value)| pb::Reply { id, value }.into()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn over_limit_answers_as_the_exact_length_does(
        frame in prop_oneof![arb_scalar_frame(), arb_frame()],
        max in prop_oneof![0..200usize, 200..400usize, Just(usize::MAX)],
    ) {
        let len = frame.encoded_len();
        prop_assert_eq!(ikc_proto::codec::encoded::over_limit(&frame, max), (len > max).then_some(len));
    }

    #[test]
    fn scalar_frames_are_written_as_prost_writes_them_and_read_back(
        frames in vec(arb_scalar_frame(), 1..4),
    ) {
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for frame in &frames {
            FrameCodec::new().encode(frame, &mut wire).expect("frame encodes");
            let message = frame.encode_to_vec();
            expected.put_u32(u32::try_from(message.len()).unwrap());
            expected.extend_from_slice(&message);
        }
        prop_assert_eq!(&wire[..], &expected[..]);
        let mut codec = FrameCodec::new();
        let mut decoded = Vec::new();
        while let Some(frame) = codec.decode(&mut wire).expect("valid frames") {
            decoded.push(frame);
        }
        prop_assert_eq!(decoded, frames);
    }
}

/// A frame written from its parts (`result`, into `wire`) against the one
/// the codec wrote (`expected_result`, into `expected`), both appended to
/// `before`: the same bytes, or the same refusal with `wire` untouched.
fn same_outcome(
    result: Result<(), ikc_proto::CodecError>,
    wire: &[u8],
    expected_result: Result<(), ikc_proto::CodecError>,
    expected: &[u8],
    before: &[u8],
) -> Result<(), TestCaseError> {
    use ikc_proto::CodecError::FrameTooLarge;
    match (result, expected_result) {
        (Ok(()), Ok(())) => prop_assert_eq!(wire, expected),
        (
            Err(FrameTooLarge { len, max }),
            Err(FrameTooLarge {
                len: want,
                max: limit,
            }),
        ) => {
            prop_assert_eq!((len, max), (want, limit));
            prop_assert_eq!(wire, before, "a refused frame leaves the buffer as it was");
        }
        (result, expected) => prop_assert!(false, "{result:?} where the codec gives {expected:?}"),
    }
    Ok(())
}

/// Values of every kind, scalars (which `encode_request` writes itself) as
/// often as lists and maps (which it leaves to prost).
fn arb_request_arg() -> impl Strategy<Value = ikc_proto::Value> {
    use ikc_proto::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
        vec(any::<u8>(), 0..300).prop_map(|b| Value::Bytes(b.into())),
        support::arb_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_request_written_from_its_parts_is_the_frame_the_codec_writes(
        id in arb_id(),
        target in ".{0,24}",
        from in prop_oneof![Just(String::new()), ".{1,8}"],
        deadline_ms in prop_oneof![Just(0u32), any::<u32>()],
        traceparent in arb_traceparent(),
        arg in arb_request_arg(),
        max in prop_oneof![0..120usize, Just(usize::MAX)],
        before in vec(any::<u8>(), 0..3),
    ) {
        let frame = pb::Frame::from(pb::Request {
            id,
            target: target.clone(),
            arg: Some(arg.clone().into_proto()),
            from: from.clone(),
            deadline_ms,
            traceparent: traceparent.clone(),
        });
        let mut expected = BytesMut::from(&before[..]);
        let expected_result = ikc_proto::codec::Builder::new()
            .max_frame_length(max)
            .new_frame_codec()
            .encode(&frame, &mut expected);

        // Appended after what the buffer held, as a channel's queue does.
        let mut wire = BytesMut::from(&before[..]);
        let parts = ikc_proto::codec::encoded::RequestParts {
            id,
            target: &target,
            from: &from,
            deadline_ms,
            traceparent: &traceparent,
        };
        let result = ikc_proto::codec::encoded::encode_request(&parts, arg, max, &mut wire);
        same_outcome(result, &wire, expected_result, &expected, &before)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_reply_written_from_its_value_is_the_frame_the_codec_writes(
        id in arb_id(),
        value in arb_request_arg(),
        max in prop_oneof![0..60usize, Just(usize::MAX)],
        before in vec(any::<u8>(), 0..3),
    ) {
        let frame = pb::Frame::from(pb::Reply { id, value: Some(value.clone().into_proto()) });
        let mut expected = BytesMut::from(&before[..]);
        let expected_result = ikc_proto::codec::Builder::new()
            .max_frame_length(max)
            .new_frame_codec()
            .encode(&frame, &mut expected);
        let mut wire = BytesMut::from(&before[..]);
        let result = ikc_proto::codec::encoded::encode_reply(id, value, max, &mut wire);
        same_outcome(result, &wire, expected_result, &expected, &before)?;
    }
}
