//! `FrameCodec`: partial input, end of stream, the frame length limit and
//! corrupt payloads, with decoders driven directly on `BytesMut` and through
//! `FramedRead` over scripted reads (tokio-util's `length_delimited` tests).

use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use ikc_proto::codec::Builder;
use ikc_proto::{CodecError, FrameCodec, Value, pb};
use prost::Message;
use tokio_test::io::Builder as MockIo;
use tokio_test::{assert_pending, assert_ready};
use tokio_util::codec::{Decoder, Encoder, FramedRead};

/// Bytes of the big-endian length head in front of every frame.
const HEAD_LEN: usize = 4;

fn request(id: u64) -> pb::Frame {
    pb::Request {
        id,
        target: "poe://Server/echo/say".to_owned(),
        arg: Some(Value::from(vec!["hello", "world"]).into()),
        from: "Client/caller".to_owned(),
        deadline_ms: 2_500,
        traceparent: String::new(),
    }
    .into()
}

/// A frame whose protobuf is exactly `len` bytes long (`len >= 4`).
fn frame_of_len(len: usize) -> pb::Frame {
    // Length prefixes are varints, so search rather than compute.
    (0..len)
        .map(|n| {
            pb::Frame::from(pb::Unsubscribe {
                session: "x".repeat(n),
            })
        })
        .find(|frame| frame.encoded_len() == len)
        .expect("some session name gives that length")
}

fn wire(frames: &[pb::Frame]) -> BytesMut {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame, &mut buf).expect("frame encodes");
    }
    buf
}

fn head(len: u32) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(len);
    buf
}

#[test]
fn frame_split_at_every_byte_of_the_head_decodes_once_complete() {
    let frame = request(7);
    let bytes = wire(std::slice::from_ref(&frame));
    for split in 1..HEAD_LEN {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(codec.decode(&mut buf).expect("partial head"), None);
        buf.extend_from_slice(&bytes[split..]);
        assert_eq!(
            codec.decode(&mut buf).expect("whole frame"),
            Some(frame.clone())
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn frame_split_at_every_byte_of_the_payload_decodes_once_complete() {
    let frame = request(8);
    let bytes = wire(std::slice::from_ref(&frame));
    for split in HEAD_LEN..bytes.len() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(codec.decode(&mut buf).expect("partial payload"), None);
        buf.extend_from_slice(&bytes[split..]);
        assert_eq!(
            codec.decode(&mut buf).expect("whole frame"),
            Some(frame.clone())
        );
        assert!(buf.is_empty());
    }
}

#[test]
fn frame_fed_one_byte_at_a_time_comes_out_on_the_last_byte() {
    let frame = request(9);
    let bytes = wire(std::slice::from_ref(&frame));
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let (last, init) = bytes.split_last().expect("non-empty wire");
    for byte in init {
        buf.put_u8(*byte);
        assert_eq!(codec.decode(&mut buf).expect("partial frame"), None);
    }
    buf.put_u8(*last);
    assert_eq!(codec.decode(&mut buf).expect("whole frame"), Some(frame));
    assert!(buf.is_empty());
}

#[test]
fn eof_on_a_frame_boundary_is_a_clean_end() {
    let mut codec = FrameCodec::new();
    assert_eq!(codec.decode_eof(&mut BytesMut::new()).expect("empty"), None);

    let frame = request(1);
    let mut buf = wire(std::slice::from_ref(&frame));
    assert_eq!(codec.decode_eof(&mut buf).expect("last frame"), Some(frame));
    assert_eq!(codec.decode_eof(&mut buf).expect("then the end"), None);
}

#[test]
fn eof_in_the_middle_of_the_head_is_unexpected_eof() {
    let bytes = wire(&[request(2)]);
    for split in 1..HEAD_LEN {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(codec.decode(&mut buf).expect("partial head"), None);
        let error = codec.decode_eof(&mut buf).expect_err("stream ended early");
        assert!(
            matches!(error, CodecError::UnexpectedEof { buffered } if buffered == split),
            "split {split}: {error:?}"
        );
    }
}

#[test]
fn eof_in_the_middle_of_the_payload_is_unexpected_eof() {
    let bytes = wire(&[request(3)]);
    // `split == HEAD_LEN` is the head alone: the decoder has consumed it, so
    // the buffer is empty, and that must still not read as a clean end.
    for split in HEAD_LEN..bytes.len() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(codec.decode(&mut buf).expect("partial payload"), None);
        let error = codec.decode_eof(&mut buf).expect_err("stream ended early");
        assert!(
            matches!(error, CodecError::UnexpectedEof { buffered } if buffered == split),
            "split {split}: {error:?}"
        );
    }
}

#[test]
fn oversized_frame_is_rejected_from_the_head_before_allocation() {
    let mut codec = Builder::new().max_frame_length(1024).new_frame_codec();
    let announced = 1 << 30;
    let mut buf = head(announced);
    let capacity = buf.capacity();

    let error = codec.decode(&mut buf).expect_err("head over the maximum");
    assert!(
        matches!(error, CodecError::FrameTooLarge { len, max: 1024 } if len == u64::from(announced)),
        "{error:?}"
    );
    assert_eq!(
        buf.capacity(),
        capacity,
        "no room was reserved for the frame"
    );
}

#[test]
fn largest_possible_head_is_rejected_without_overflow() {
    let mut codec = FrameCodec::new();
    let mut buf = head(u32::MAX);
    buf.extend_from_slice(b"more bytes");
    let error = codec.decode(&mut buf).expect_err("head over the maximum");
    assert!(
        matches!(error, CodecError::FrameTooLarge { len, .. } if len == u64::from(u32::MAX)),
        "{error:?}"
    );
    assert!(buf.capacity() < 1 << 20);
}

#[test]
fn frame_of_exactly_the_maximum_length_is_accepted() {
    let frame = frame_of_len(100);
    let mut codec = Builder::new().max_frame_length(100).new_frame_codec();
    let mut buf = BytesMut::new();
    codec.encode(&frame, &mut buf).expect("at the maximum");
    assert_eq!(buf.len(), HEAD_LEN + 100);
    assert_eq!(codec.decode(&mut buf).expect("at the maximum"), Some(frame));
}

#[test]
fn frame_one_byte_over_the_maximum_is_rejected_on_decode() {
    let mut buf = wire(&[frame_of_len(101)]);
    let mut codec = Builder::new().max_frame_length(100).new_frame_codec();
    let error = codec.decode(&mut buf).expect_err("one byte over");
    assert!(
        matches!(error, CodecError::FrameTooLarge { len: 101, max: 100 }),
        "{error:?}"
    );
}

#[test]
fn encoding_a_frame_over_the_maximum_is_frame_too_large_and_writes_nothing() {
    let mut codec = Builder::new().max_frame_length(100).new_frame_codec();
    let mut buf = BytesMut::new();
    let error = codec
        .encode(frame_of_len(101), &mut buf)
        .expect_err("one byte over");
    assert!(
        matches!(error, CodecError::FrameTooLarge { len: 101, max: 100 }),
        "{error:?}"
    );
    assert!(buf.is_empty());
}

#[test]
fn lowered_maximum_applies_to_the_next_frame_head() {
    let mut buf = wire(&[frame_of_len(50), frame_of_len(80)]);
    let mut codec = FrameCodec::new();
    assert_eq!(
        codec.decode(&mut buf).expect("first"),
        Some(frame_of_len(50))
    );

    codec.set_max_frame_length(60);
    assert_eq!(codec.max_frame_length(), 60);
    let error = codec.decode(&mut buf).expect_err("second is now too large");
    assert!(
        matches!(error, CodecError::FrameTooLarge { len: 80, max: 60 }),
        "{error:?}"
    );
}

#[test]
fn lowered_maximum_does_not_cut_short_a_frame_whose_head_was_accepted() {
    let frame = frame_of_len(80);
    let bytes = wire(std::slice::from_ref(&frame));
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(&bytes[..HEAD_LEN + 10]);
    assert_eq!(codec.decode(&mut buf).expect("head accepted"), None);

    codec.set_max_frame_length(60);
    buf.extend_from_slice(&bytes[HEAD_LEN + 10..]);
    assert_eq!(codec.decode(&mut buf).expect("read in full"), Some(frame));
}

#[test]
fn raised_maximum_accepts_a_frame_that_was_too_large_before() {
    let frame = frame_of_len(80);
    let mut codec = Builder::new().max_frame_length(60).new_frame_codec();
    let mut buf = BytesMut::new();
    assert!(codec.encode(&frame, &mut buf).is_err());

    codec.set_max_frame_length(80);
    codec
        .encode(&frame, &mut buf)
        .expect("now within the maximum");
    assert_eq!(codec.decode(&mut buf).expect("within"), Some(frame));
}

#[test]
fn garbage_payload_is_a_decode_error() {
    let mut buf = head(3);
    buf.extend_from_slice(&[0xff, 0xff, 0xff]);
    let error = FrameCodec::new()
        .decode(&mut buf)
        .expect_err("not protobuf");
    assert!(matches!(error, CodecError::Decode(_)), "{error:?}");
}

#[test]
fn several_frames_in_one_buffer_decode_in_order() {
    let frames = vec![
        request(1),
        pb::Ping { nonce: 42 }.into(),
        pb::Reply {
            id: 1,
            value: Some(Value::Null.into()),
        }
        .into(),
        // An empty frame is a zero-length payload: a head and nothing else.
        pb::Frame::default(),
        pb::GoAway {
            reason: "bye".to_owned(),
            last_id: 1,
        }
        .into(),
    ];
    let mut buf = wire(&frames);
    let mut codec = FrameCodec::new();
    let mut decoded = Vec::new();
    while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
        decoded.push(frame);
        assert!(decoded.len() <= frames.len());
    }
    assert_eq!(decoded, frames);
    assert!(buf.is_empty());
    assert_eq!(codec.decode_eof(&mut buf).expect("clean end"), None);
}

#[tokio::test]
async fn framed_read_reassembles_a_frame_from_scripted_partial_reads() {
    let frame = request(5);
    let bytes = wire(std::slice::from_ref(&frame));
    let io = MockIo::new()
        .read(&bytes[..2])
        .read(&bytes[2..HEAD_LEN + 3])
        .read(&bytes[HEAD_LEN + 3..])
        .build();
    let mut frames = FramedRead::new(io, FrameCodec::new());
    assert_eq!(frames.next().await.transpose().expect("frame"), Some(frame));
    assert!(frames.next().await.is_none(), "clean end after the frame");
}

#[tokio::test]
async fn framed_read_is_pending_between_chunks_of_a_frame() {
    let frame = request(6);
    let bytes = wire(std::slice::from_ref(&frame));
    let (io, mut handle) = MockIo::new().read(&bytes[..3]).build_with_handle();
    let mut frames = tokio_test::task::spawn(FramedRead::new(io, FrameCodec::new()));

    assert_pending!(frames.poll_next());
    handle.read(&bytes[3..HEAD_LEN + 1]);
    assert!(frames.is_woken());
    assert_pending!(frames.poll_next());
    handle.read(&bytes[HEAD_LEN + 1..]);
    assert!(frames.is_woken());
    let next = assert_ready!(frames.poll_next());
    assert_eq!(next.transpose().expect("frame"), Some(frame));

    drop(handle);
    assert!(assert_ready!(frames.poll_next()).is_none());
}

#[tokio::test]
async fn framed_read_reports_eof_inside_the_head() {
    let bytes = wire(&[request(1)]);
    let io = MockIo::new().read(&bytes[..2]).build();
    let mut frames = FramedRead::new(io, FrameCodec::new());
    let error = frames.next().await.expect("an item").expect_err("eof");
    assert!(
        matches!(error, CodecError::UnexpectedEof { buffered: 2 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn framed_read_reports_eof_right_after_the_head() {
    let bytes = wire(&[request(1)]);
    let io = MockIo::new().read(&bytes[..HEAD_LEN]).build();
    let mut frames = FramedRead::new(io, FrameCodec::new());
    let error = frames.next().await.expect("an item").expect_err("eof");
    assert!(
        matches!(error, CodecError::UnexpectedEof { buffered: HEAD_LEN }),
        "{error:?}"
    );
}

#[tokio::test]
async fn framed_read_reports_eof_inside_the_payload() {
    let bytes = wire(&[request(1)]);
    let io = MockIo::new().read(&bytes[..HEAD_LEN + 5]).build();
    let mut frames = FramedRead::new(io, FrameCodec::new());
    let error = frames.next().await.expect("an item").expect_err("eof");
    assert!(
        matches!(error, CodecError::UnexpectedEof { buffered } if buffered == HEAD_LEN + 5),
        "{error:?}"
    );
}

#[tokio::test]
async fn framed_read_rejects_an_oversized_head() {
    let io = MockIo::new().read(&head(1 << 20)).build();
    let mut frames = FramedRead::new(io, Builder::new().max_frame_length(1024).new_frame_codec());
    let error = frames
        .next()
        .await
        .expect("an item")
        .expect_err("too large");
    assert!(
        matches!(
            error,
            CodecError::FrameTooLarge {
                len: 0x10_0000,
                max: 1024
            }
        ),
        "{error:?}"
    );
}
