//! The codec for frames after the handshake.

use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

use super::delimited::{Delimited, HEAD_LEN};
use super::fast;
use super::{Builder, CodecError};
use crate::{Value, pb};

/// Frames up to this long are decoded in place, their `bytes` copied (see
/// `FrameCodec::decode`).
const SMALL_FRAME: usize = 512;

/// Encodes and decodes [`pb::Frame`]s as a 4-byte big-endian length followed
/// by that many bytes of protobuf.
///
/// See the [module docs](super) for the byte layout. Build one with
/// [`FrameCodec::new`], [`Builder::new_frame_codec`], or from a finished
/// handshake with [`HandshakeCodec::into_frame_codec`](super::HandshakeCodec::into_frame_codec).
#[derive(Debug)]
pub struct FrameCodec {
    framing: Delimited,
}

impl FrameCodec {
    /// A frame codec with the default maximum frame length (16 MiB).
    #[must_use]
    pub fn new() -> Self {
        Builder::new().new_frame_codec()
    }

    pub(crate) fn with_max_frame_length(max: usize) -> Self {
        FrameCodec {
            framing: Delimited::new(max),
        }
    }

    /// The largest frame accepted or produced, in bytes after the head.
    #[must_use]
    pub fn max_frame_length(&self) -> usize {
        self.framing.max()
    }

    /// Changes the maximum frame length. It applies to the next frame head
    /// decoded and the next frame encoded; a frame whose head was already
    /// accepted is still read in full.
    pub fn set_max_frame_length(&mut self, bytes: usize) {
        self.framing.set_max(bytes);
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for FrameCodec {
    type Item = pb::Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<pb::Frame>, CodecError> {
        // A small frame of the common shapes is read where it lies, and the
        // bytes it carries are copied out: cheaper than sharing the read
        // buffer, which costs an atomic count for the frame, each `bytes`
        // field and each of their drops. Larger frames share it.
        if let Some(len) = self.framing.whole(src, SMALL_FRAME)
            && let Some(frame) = fast::decode_copied(&src[HEAD_LEN..HEAD_LEN + len])
        {
            src.advance(HEAD_LEN + len);
            return Ok(Some(frame));
        }
        self.framing
            .decode_bytes(src)?
            .map(decode_frame)
            .transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<pb::Frame>, CodecError> {
        self.framing
            .decode_bytes_eof(src)?
            .map(decode_frame)
            .transpose()
    }
}

impl Encoder<pb::Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: pb::Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&pb::Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &pb::Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        match fast::encode(frame, self.framing.max(), dst) {
            Some(encoded) => encoded,
            None => self.framing.encode(frame, dst),
        }
    }
}

/// The length of `frame` on the wire without its 4-byte head: what a
/// frame limit is compared with.
#[must_use]
pub fn encoded_len(frame: &pb::Frame) -> usize {
    fast::encoded_len(frame)
}

/// The length of `frame` on the wire without its head when it is over
/// `max`; `None` when it fits.
///
/// Frames of the common shapes far under the limit are not measured: a
/// bound from their strings' and bytes' lengths settles it.
#[must_use]
pub fn over_limit(frame: &pb::Frame, max: usize) -> Option<usize> {
    if fast::len_bound(frame).is_some_and(|bound| bound <= max) {
        return None;
    }
    let len = encoded_len(frame);
    (len > max).then_some(len)
}

/// What a `Request` frame holds besides its argument, borrowed: a caller
/// that has its target as text writes the frame with
/// [`encode_request`] without building a [`pb::Request`] first.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestParts<'a> {
    /// The call's id; 0 for a post.
    pub id: u64,
    /// The target, as sent.
    pub target: &'a str,
    /// The sending kernel, or empty.
    pub from: &'a str,
    /// How long the caller waits, in milliseconds; 0 for no deadline.
    pub deadline_ms: u32,
    /// The caller's W3C `traceparent`, or empty.
    pub traceparent: &'a str,
}

/// Appends the `Request` frame of `request` with `arg` to `dst`, head
/// included: the same bytes [`FrameCodec`] writes for the [`pb::Frame`]
/// holding that request with `arg.into_proto()`. A scalar argument is
/// written straight from the parts; a list or a map goes through prost.
///
/// # Errors
///
/// [`CodecError::FrameTooLarge`] when the frame is over `max` bytes (not
/// counting the head); `dst` is then unchanged.
pub fn encode_request(
    request: &RequestParts<'_>,
    arg: Value,
    max: usize,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    if let Some(written) = fast::encode_request(request, &arg, max, dst) {
        return written;
    }
    let frame = pb::Frame::from(pb::Request {
        id: request.id,
        target: request.target.to_owned(),
        arg: Some(arg.into_proto()),
        from: request.from.to_owned(),
        deadline_ms: request.deadline_ms,
        traceparent: request.traceparent.to_owned(),
    });
    Encoder::<&pb::Frame>::encode(&mut FrameCodec::with_max_frame_length(max), &frame, dst)
}

/// Appends the `Reply` frame answering call `id` with `value` to `dst`,
/// head included: the same bytes [`FrameCodec`] writes for the
/// [`pb::Frame`] holding `pb::Reply { id, value: Some(value.into_proto()) }`.
/// A scalar value is written straight from it; a list or a map goes
/// through prost.
///
/// # Errors
///
/// [`CodecError::FrameTooLarge`] when the frame is over `max` bytes (not
/// counting the head); `dst` is then unchanged.
pub fn encode_reply(
    id: u64,
    value: Value,
    max: usize,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    if let Some(written) = fast::encode_reply(id, &value, max, dst) {
        return written;
    }
    let frame = pb::Frame::from(pb::Reply {
        id,
        value: Some(value.into_proto()),
    });
    Encoder::<&pb::Frame>::encode(&mut FrameCodec::with_max_frame_length(max), &frame, dst)
}

/// A frame's bytes as a frame: the fast path for the common shapes, prost
/// for everything else.
fn decode_frame(message: Bytes) -> Result<pb::Frame, CodecError> {
    match fast::decode(&message) {
        Some(frame) => Ok(frame),
        None => Ok(pb::Frame::decode(message)?),
    }
}
