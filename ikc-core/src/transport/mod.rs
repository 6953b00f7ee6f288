//! What a channel runs over: the [`Transport`] trait, and the transports
//! ikc ships.
//!
//! A channel reads [`pb::Frame`]s from its transport and writes
//! [`Outbound`] items to it: a frame, or, for a transport that takes them
//! ([`Transport::takes_encoded`]), frames the channel encoded itself in the
//! protocol's [`FrameCodec`], back to back. Either way a channel has one
//! write path; over a socket the second saves building, moving and encoding
//! a `pb::Frame` per call and per reply.
//!
//! - A tokio-util [`Framed`] with the [`FrameCodec`] is a transport that
//!   takes encoded frames (ikc-server wraps one that also gives its buffers
//!   back while idle).
//! - [`Frames`] makes any `Sink + Stream` of frames a transport (the Perl
//!   IKC adapter, a transport of your own).
//! - [`memory`] connects two channels in one process, for tests and for
//!   kernels that talk to themselves.

pub mod memory;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::{Sink, Stream};
use ikc_proto::{CodecError, FrameCodec, pb};
use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::BoxError;

/// What a channel writes to its transport.
#[derive(Debug)]
pub enum Outbound<'a> {
    /// One frame.
    Frame(pb::Frame),
    /// Whole frames in the protocol's encoding (each with its length head),
    /// back to back; written only to a transport that
    /// [takes encoded frames](Transport::takes_encoded). The transport takes
    /// them all, copying the bytes or taking the buffer, and leaves it empty.
    Encoded(&'a mut BytesMut),
}

/// A connection as a channel uses it: a stream of frames read, and a sink of
/// [`Outbound`] items written, buffered until the next flush. The methods
/// mean what they mean on `Stream` and `Sink`.
pub trait Transport {
    /// Why reading or writing failed.
    type Error: Into<BoxError>;

    /// The next frame from the peer; `None` once its side is closed.
    fn poll_recv(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<pb::Frame, Self::Error>>>;

    /// Ready to take one more [`start_send`](Self::start_send).
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;

    /// Buffers `item` for the next flush; called after `poll_ready` said ready.
    fn start_send(self: Pin<&mut Self>, item: Outbound<'_>) -> Result<(), Self::Error>;

    /// Writes everything buffered.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;

    /// Flushes and closes the write side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;

    /// Whether [`start_send`](Self::start_send) takes [`Outbound::Encoded`]:
    /// the bytes must mean on the wire what the frames would. A channel over
    /// such a transport encodes its calls as they are queued and its replies
    /// as they are made; over any other, it sends only frames. Default: no.
    fn takes_encoded(&self) -> bool {
        false
    }
}

/// A socket framed with the protocol's codec: frames encoded by the channel
/// go straight into its write buffer.
impl<T> Transport for Framed<T, FrameCodec>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Error = CodecError;

    fn poll_recv(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<pb::Frame, CodecError>>> {
        Stream::poll_next(self, cx)
    }

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Sink::<pb::Frame>::poll_ready(self, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outbound<'_>) -> Result<(), CodecError> {
        match item {
            Outbound::Frame(frame) => Sink::start_send(self, frame),
            Outbound::Encoded(frames) => {
                append(self.get_mut().write_buffer_mut(), frames);
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Sink::<pb::Frame>::poll_flush(self, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Sink::<pb::Frame>::poll_close(self, cx)
    }

    fn takes_encoded(&self) -> bool {
        true
    }
}

/// Appends encoded `frames` to a write `buffer`, leaving `frames` empty: a
/// large batch that finds the buffer empty is taken whole, buffer and all,
/// instead of copied.
fn append(buffer: &mut BytesMut, frames: &mut BytesMut) {
    if buffer.is_empty() && frames.len() >= 8 * 1024 {
        std::mem::swap(buffer, frames);
    } else {
        buffer.extend_from_slice(frames);
    }
    frames.clear();
}

/// Any `Sink + Stream` of frames as a [`Transport`] that sends frames
/// only: an adapter for a protocol of its own (ikc-server's Perl IKC
/// adapter) or a test's transport.
#[pin_project]
#[derive(Debug)]
pub struct Frames<S> {
    #[pin]
    inner: S,
}

impl<S> Frames<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Frames { inner }
    }

    /// The transport inside.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, E> Transport for Frames<S>
where
    S: Sink<pb::Frame, Error = E> + Stream<Item = Result<pb::Frame, E>>,
    E: Into<BoxError>,
{
    type Error = E;

    fn poll_recv(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<pb::Frame, E>>> {
        self.project().inner.poll_next(cx)
    }

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.project().inner.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outbound<'_>) -> Result<(), E> {
        match item {
            Outbound::Frame(frame) => self.project().inner.start_send(frame),
            // A channel sends encoded frames only to a transport that
            // takes them; this one does not.
            Outbound::Encoded(frames) => {
                tracing::error!(
                    bytes = frames.len(),
                    "encoded frames offered to a transport of frames; dropped"
                );
                frames.clear();
                Ok(())
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        self.project().inner.poll_close(cx)
    }
}
