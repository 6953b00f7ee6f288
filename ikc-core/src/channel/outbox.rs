//! The outbox: frames waiting for the transport, in the order they go out.
//!
//! Each channel has two: the handles' (behind their lock, with room for
//! [`QUEUE_CAPACITY`](super::shared) frames) and the driver's own (replies,
//! errors, control frames). Over a transport that
//! [takes encoded frames](crate::transport::Transport::takes_encoded), an
//! outbox encodes what it is given as it is queued, straight from a call's
//! target and argument or a reply's value, without a `pb::Frame` built,
//! queued, moved and dropped on the way; over any other, it keeps frames.
//! Either way [`Outbox::write`] is the one path to the transport.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use ikc_proto::codec::Builder as CodecBuilder;
use ikc_proto::codec::encoded::{RequestParts, encode_reply, encode_request};
use ikc_proto::{CodecError, FrameCodec, Value, pb};
use tokio_util::codec::Encoder;

use crate::transport::{Outbound, Transport};

/// Room an outbox keeps between batches for the frames it encodes; a
/// buffer that grew past it for large frames is given back rather than
/// kept for the life of the connection.
pub(super) const ENCODED_KEPT: usize = 16 * 1024;

/// What is queued.
#[derive(Debug)]
pub(super) enum Outgoing<'a> {
    Frame(pb::Frame),
    /// A request from its parts: encoded as it is queued (made a frame if
    /// the outbox keeps frames, or if it has to wait).
    Request(RequestParts<'a>, Value),
    /// A request made a frame already.
    RequestFrame(pb::Request),
    /// A reply to the peer's call `id`.
    Reply(u64, Value),
}

impl Outgoing<'_> {
    /// Whether this is a request, which counts against the peer's limit.
    #[inline]
    pub(super) fn is_request(&self) -> bool {
        matches!(self, Outgoing::Request(..) | Outgoing::RequestFrame(_))
    }

    /// Gives the request its id.
    #[inline]
    pub(super) fn set_id(&mut self, id: u64) {
        match self {
            Outgoing::Request(parts, _) => parts.id = id,
            Outgoing::RequestFrame(request) => request.id = id,
            Outgoing::Frame(_) | Outgoing::Reply(..) => {}
        }
    }

    pub(super) fn into_frame(self) -> pb::Frame {
        match self {
            Outgoing::Frame(frame) => frame,
            Outgoing::RequestFrame(request) => request.into(),
            Outgoing::Request(parts, arg) => pb::Request {
                id: parts.id,
                target: parts.target.to_owned(),
                arg: Some(arg.into_proto()),
                from: parts.from.to_owned(),
                deadline_ms: parts.deadline_ms,
                traceparent: parts.traceparent.to_owned(),
            }
            .into(),
            Outgoing::Reply(id, value) => pb::Reply {
                id,
                value: Some(value.into_proto()),
            }
            .into(),
        }
    }
}

/// Frames encoded as they were queued, back to back with their heads.
#[derive(Debug)]
struct Encoded {
    bytes: BytesMut,
    /// How many frames `bytes` holds.
    frames: usize,
    /// Writes the frames that are neither requests nor replies.
    codec: FrameCodec,
}

/// Frames waiting for the transport; see the [module docs](self).
#[derive(Debug)]
pub(super) struct Outbox {
    /// Frames, oldest first: everything when the outbox keeps frames, and
    /// those queued before it started encoding.
    frames: VecDeque<pb::Frame>,
    /// Once encoding: every frame queued since, after those in `frames`.
    encoded: Option<Encoded>,
    /// Largest frame the peer accepts.
    max_frame_length: usize,
}

impl Outbox {
    /// An outbox of frames for a peer that takes frames up to
    /// `max_frame_length`.
    pub(super) fn new(max_frame_length: usize) -> Self {
        Outbox {
            frames: VecDeque::new(),
            encoded: None,
            max_frame_length,
        }
    }

    /// From now on, frames are encoded as they are queued.
    pub(super) fn encode(&mut self) {
        if self.encoded.is_none() {
            self.encoded = Some(Encoded {
                bytes: BytesMut::new(),
                frames: 0,
                codec: CodecBuilder::new()
                    .max_frame_length(self.max_frame_length)
                    .new_frame_codec(),
            });
        }
    }

    /// Frames waiting.
    pub(super) fn len(&self) -> usize {
        self.frames.len() + self.encoded.as_ref().map_or(0, |encoded| encoded.frames)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `item`; refused, and not queued, when it is over the peer's
    /// frame limit (or cannot be encoded).
    pub(super) fn push(&mut self, item: Outgoing<'_>) -> Result<(), CodecError> {
        let max = self.max_frame_length;
        let Some(encoded) = &mut self.encoded else {
            let frame = item.into_frame();
            if max != usize::MAX
                && let Some(len) = ikc_proto::codec::encoded::over_limit(&frame, max)
            {
                return Err(CodecError::FrameTooLarge {
                    len: len as u64,
                    max,
                });
            }
            self.frames.push_back(frame);
            return Ok(());
        };
        match item {
            Outgoing::Request(parts, arg) => encode_request(&parts, arg, max, &mut encoded.bytes),
            Outgoing::Reply(id, value) => encode_reply(id, value, max, &mut encoded.bytes),
            frame @ (Outgoing::Frame(_) | Outgoing::RequestFrame(_)) => encoded
                .codec
                .encode(&frame.into_frame(), &mut encoded.bytes),
        }?;
        encoded.frames += 1;
        Ok(())
    }

    /// Queues the reply to the peer's call `id`: [`push`](Self::push) of
    /// [`Outgoing::Reply`], with the encoding outbox's case first (every
    /// answered call takes this path).
    #[inline]
    pub(super) fn push_reply(&mut self, id: u64, value: Value) -> Result<(), CodecError> {
        match &mut self.encoded {
            Some(encoded) => {
                encode_reply(id, value, self.max_frame_length, &mut encoded.bytes)?;
                encoded.frames += 1;
                Ok(())
            }
            None => self.push(Outgoing::Reply(id, value)),
        }
    }

    /// Queues a frame of the driver's own; one the peer would refuse (an
    /// error message over a tiny frame limit) is dropped with a log line.
    pub(super) fn push_frame(&mut self, frame: impl Into<pb::Frame>) {
        if let Err(error) = self.push(Outgoing::Frame(frame.into())) {
            tracing::debug!(%error, "dropped a frame the peer would refuse");
        }
    }

    /// Queues the error answer to the peer's call `id`.
    pub(super) fn push_error(&mut self, id: u64, error: &crate::IkcError) {
        self.push_frame(error.to_proto(id));
    }

    /// Writes what the transport takes now, oldest first; how many frames
    /// it took. Stops without error when the transport has no room.
    pub(super) fn write<T: Transport + ?Sized>(
        &mut self,
        mut transport: Pin<&mut T>,
        cx: &mut Context<'_>,
    ) -> Result<usize, T::Error> {
        let mut written = 0;
        while !self.is_empty() {
            match transport.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => break,
            }
            if let Some(frame) = self.frames.pop_front() {
                transport.as_mut().start_send(Outbound::Frame(frame))?;
                written += 1;
            } else if let Some(encoded) = self.encoded.as_mut() {
                transport
                    .as_mut()
                    .start_send(Outbound::Encoded(&mut encoded.bytes))?;
                debug_assert!(encoded.bytes.is_empty(), "the transport takes every frame");
                trim(&mut encoded.bytes);
                written += std::mem::take(&mut encoded.frames);
            }
        }
        Ok(written)
    }

    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.encoded
            .as_ref()
            .map_or(0, |encoded| encoded.bytes.capacity())
    }
}

/// Empties `buffer` (its frames handed on), and gives it back when it grew
/// past [`ENCODED_KEPT`].
fn trim(buffer: &mut BytesMut) {
    buffer.clear();
    if buffer.capacity() > ENCODED_KEPT {
        *buffer = BytesMut::new();
    }
}
