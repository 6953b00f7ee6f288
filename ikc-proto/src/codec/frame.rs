//! The codec for frames after the handshake.

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

use super::delimited::Delimited;
use super::fast;
use super::{Builder, CodecError};
use crate::pb;

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

/// A frame's bytes as a frame: the fast path for the common shapes, prost
/// for everything else.
fn decode_frame(message: Bytes) -> Result<pb::Frame, CodecError> {
    match fast::decode(&message) {
        Some(frame) => Ok(frame),
        None => Ok(pb::Frame::decode(message)?),
    }
}
