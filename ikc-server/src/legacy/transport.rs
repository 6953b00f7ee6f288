//! [`LegacyTransport`]: a Perl IKC connection seen as a `Sink + Stream` of
//! ikc frames, so the core channel runs over it unchanged.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt, ready};
use ikc_core::{Kernel, PeerInfo};
use ikc_proto::pb;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::LegacyError;
use super::codec::{LegacyFrameCodec, LineCodec};
use super::storable;
use super::translate::{Output, Translator};

/// Messages for the peer (answers made here, such as `PONG`) buffered
/// before the transport stops reading more from the peer.
const OUTBOUND_HIGH_WATER: usize = 64;

/// Messages read in one poll that produce nothing for the channel (pings,
/// unreadable ones) before the transport yields to other tasks.
const READ_BUDGET: usize = 64;

/// A negotiated Perl IKC connection as a transport for
/// [`Channel`](ikc_core::Channel): a `Stream` of the [`pb::Frame`]s the
/// peer's messages stand for, and a `Sink` of frames turned into the
/// messages the peer expects. See [`legacy`](super) for the mapping.
///
/// A message that cannot be read (unsupported Storable data, a hash that is
/// not a message) is answered with an `IKC/remote_error` message and the
/// connection goes on; only a broken stream (bad frame head, oversized
/// frame, i/o error) is a [`LegacyError`].
#[derive(Debug)]
pub struct LegacyTransport<IO> {
    framed: Framed<IO, LegacyFrameCodec>,
    translator: Translator,
    pending: Output,
    unflushed: bool,
    read_waker: Option<Waker>,
}

impl<IO> LegacyTransport<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    /// A transport over `io`, whose negotiation is done, between our
    /// `kernel` and the `peer` it negotiated with. Frames longer than
    /// `max_frame_length` bytes are refused both ways.
    pub fn new(io: IO, kernel: Kernel, peer: PeerInfo, max_frame_length: usize) -> Self {
        let framed = Framed::new(io, LegacyFrameCodec::new(max_frame_length));
        Self::with_framed(framed, kernel, peer, max_frame_length)
    }

    /// Like [`new`](Self::new), keeping the bytes the negotiation's line
    /// codec had already read past its last line.
    #[must_use]
    pub fn after_negotiation(
        lines: Framed<IO, LineCodec>,
        kernel: Kernel,
        peer: PeerInfo,
        max_frame_length: usize,
    ) -> Self {
        let framed = lines.map_codec(|lines| LegacyFrameCodec::after(&lines, max_frame_length));
        Self::with_framed(framed, kernel, peer, max_frame_length)
    }

    fn with_framed(
        framed: Framed<IO, LegacyFrameCodec>,
        kernel: Kernel,
        peer: PeerInfo,
        max_frame_length: usize,
    ) -> Self {
        LegacyTransport {
            framed,
            translator: Translator::new(kernel, peer, max_frame_length),
            pending: Output::default(),
            unflushed: false,
            read_waker: None,
        }
    }

    /// Hands the messages made here to the codec, in order, before anything
    /// else is written.
    fn poll_outbound(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LegacyError>> {
        while !self.pending.outbound.is_empty() {
            ready!(self.framed.poll_ready_unpin(cx))?;
            let Some(message) = self.pending.outbound.pop_front() else {
                break;
            };
            self.framed.start_send_unpin(message)?;
            self.unflushed = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO> Stream for LegacyTransport<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<pb::Frame, LegacyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut budget = READ_BUDGET;
        loop {
            // Answers made here go out without waiting for the channel to
            // write; a socket that is not writable wakes us when it is.
            if let Poll::Ready(Err(error)) = this.poll_outbound(cx) {
                return Poll::Ready(Some(Err(error)));
            }
            if this.unflushed {
                match this.framed.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => this.unflushed = false,
                    Poll::Ready(Err(error)) => return Poll::Ready(Some(Err(error))),
                    Poll::Pending => {}
                }
            }
            if let Some(frame) = this.pending.inbound.pop_front() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            budget -= 1;
            if this.pending.outbound.len() >= OUTBOUND_HIGH_WATER {
                // A peer that does not read its answers is not read either.
                this.read_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            match this.framed.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(payload))) => this.on_payload(&payload),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => {
                    this.read_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<IO> LegacyTransport<IO> {
    fn on_payload(&mut self, payload: &Bytes) {
        let message = storable::from_slice(payload);
        self.translator.on_peer_message(message, &mut self.pending);
    }
}

impl<IO> Sink<pb::Frame> for LegacyTransport<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    type Error = LegacyError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LegacyError>> {
        let this = self.get_mut();
        ready!(this.poll_outbound(cx))?;
        this.framed.poll_ready_unpin(cx)
    }

    fn start_send(self: Pin<&mut Self>, frame: pb::Frame) -> Result<(), LegacyError> {
        let this = self.get_mut();
        let inbound = this.pending.inbound.len();
        this.translator.on_our_frame(frame, &mut this.pending);
        // One message per frame, into the codec made ready for it (the
        // codec buffers; readiness only bounds its buffer).
        while let Some(message) = this.pending.outbound.pop_front() {
            this.framed.start_send_unpin(message)?;
            this.unflushed = true;
        }
        if this.pending.inbound.len() > inbound {
            // An answer made here (a pong, a failed send) is read next.
            if let Some(waker) = this.read_waker.take() {
                waker.wake();
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LegacyError>> {
        let this = self.get_mut();
        ready!(this.poll_outbound(cx))?;
        ready!(this.framed.poll_flush_unpin(cx))?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), LegacyError>> {
        let this = self.get_mut();
        ready!(this.poll_outbound(cx))?;
        this.framed.poll_close_unpin(cx)
    }
}
