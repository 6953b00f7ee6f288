//! [`IdleFramed`]: a `Framed` that holds no buffers while its connection
//! is idle.
//!
//! A `Framed` keeps an 8 KiB read buffer and an 8 KiB write buffer for the
//! life of the connection. Most connections of a busy server are idle most
//! of the time, and those buffers were the largest part of what an idle
//! connection costs (see BENCHMARKS.md, "Memory per idle connection"). This
//! wrapper gives the read buffer back when a read finds nothing to read and
//! nothing half-read is kept, and the write buffer back once everything is
//! flushed; it takes one again when the connection next reads or writes.
//!
//! Buffers given back wait in a small pool per thread, so a busy
//! connection, which gives its buffers back after every batch, takes the
//! same memory back without going to the allocator; the pool holds at most
//! [`POOL_SIZE`] buffers, whatever the number of connections.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures::{Sink, Stream};
use ikc_core::transport::{Outbound, Transport};
use ikc_proto::{CodecError, FrameCodec, pb};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, Framed};

/// Capacity a buffer is given when the connection needs one again: the
/// same as `Framed`'s own.
pub(crate) const BUFFER_CAPACITY: usize = 8 * 1024;

/// A `Framed` that gives its buffers back while idle. It is a `Stream` and
/// a `Sink` exactly like the `Framed` it wraps.
#[derive(Debug)]
pub(crate) struct IdleFramed<T, U> {
    inner: Framed<T, U>,
}

impl<T, U> IdleFramed<T, U> {
    pub(crate) fn new(inner: Framed<T, U>) -> Self {
        IdleFramed { inner }
    }
}

/// The channel's transport: frames the channel encoded go straight into the
/// write buffer. A large batch that finds the buffer empty is taken whole,
/// buffer and all, instead of copied.
impl<T> Transport for IdleFramed<T, FrameCodec>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Error = CodecError;

    fn poll_recv(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<pb::Frame, CodecError>>> {
        self.poll_next(cx)
    }

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), CodecError>> {
        Sink::<pb::Frame>::poll_ready(self, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Outbound<'_>) -> Result<(), CodecError> {
        let frames = match item {
            Outbound::Frame(frame) => return Sink::start_send(self, frame),
            Outbound::Encoded(frames) => frames,
        };
        let buffer = self.get_mut().inner.write_buffer_mut();
        if buffer.is_empty() && frames.len() >= BUFFER_CAPACITY {
            std::mem::swap(buffer, frames);
        } else {
            acquire(buffer);
            buffer.extend_from_slice(frames);
        }
        frames.clear();
        Ok(())
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

/// Buffers kept per thread for connections to take again.
const POOL_SIZE: usize = 32;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Largest buffer the pool keeps: one that grew for a large frame is
/// freed instead, so the pool never pins more than `POOL_SIZE` of these.
const POOLED_CAPACITY: usize = 2 * BUFFER_CAPACITY;

/// Gives `buffer`'s memory back if it holds nothing.
fn release(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > 0 {
        let buffer = std::mem::take(buffer);
        if buffer.capacity() > POOLED_CAPACITY {
            return;
        }
        // During the thread's teardown the pool may be gone: then the
        // buffer is simply freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < POOL_SIZE {
                pool.push(buffer);
            }
        });
    }
}

/// Takes a buffer of the usual capacity if the last one was given back.
fn acquire(buffer: &mut BytesMut) {
    if buffer.capacity() == 0 {
        *buffer = POOL
            .try_with(|pool| pool.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        // A pooled buffer whose start is still shared with a frame in use
        // has less room left; this takes it back or allocates.
        buffer.reserve(BUFFER_CAPACITY);
    }
}

impl<T, U> Stream for IdleFramed<T, U>
where
    T: AsyncRead + Unpin,
    U: Decoder,
{
    type Item = Result<U::Item, U::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let inner = &mut self.get_mut().inner;
        acquire(inner.read_buffer_mut());
        let polled = Pin::new(&mut *inner).poll_next(cx);
        if polled.is_pending() {
            release(inner.read_buffer_mut());
        }
        polled
    }
}

impl<T, I, U> Sink<I> for IdleFramed<T, U>
where
    T: AsyncWrite + Unpin,
    U: Encoder<I>,
    U::Error: From<std::io::Error>,
{
    type Error = U::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: I) -> Result<(), Self::Error> {
        let inner = &mut self.get_mut().inner;
        acquire(inner.write_buffer_mut());
        Pin::new(&mut *inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let inner = &mut self.get_mut().inner;
        let flushed = Pin::new(&mut *inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            release(inner.write_buffer_mut());
        }
        flushed
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::{Encoder, LengthDelimitedCodec};

    use super::*;

    #[tokio::test]
    async fn buffers_are_given_back_when_idle_and_taken_again_when_needed() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut framed = IdleFramed::new(Framed::new(near, LengthDelimitedCodec::new()));

        // Nothing to read: the read buffer goes back.
        assert!(framed.next().now_or_never().is_none());
        assert_eq!(framed.inner.read_buffer().capacity(), 0);

        // A frame arrives: it is read into a fresh buffer.
        far.write_all(b"\0\0\0\x05hello").await.unwrap();
        let frame = framed.next().await.unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
        assert!(framed.next().now_or_never().is_none());
        assert_eq!(framed.inner.read_buffer().capacity(), 0);

        // Sent and flushed: the write buffer goes back too.
        framed
            .send(bytes::Bytes::from_static(b"world"))
            .await
            .unwrap();
        assert_eq!(framed.inner.write_buffer().capacity(), 0);
        let mut echoed = [0; 9];
        far.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"\0\0\0\x05world");
    }

    #[test]
    fn a_buffer_given_back_is_taken_again_without_allocating() {
        let mut buffer = BytesMut::with_capacity(BUFFER_CAPACITY);
        let address = buffer.as_ptr();
        release(&mut buffer);
        assert_eq!(buffer.capacity(), 0);
        acquire(&mut buffer);
        assert_eq!(buffer.as_ptr(), address);
        assert!(buffer.capacity() >= BUFFER_CAPACITY);
    }

    #[tokio::test]
    async fn a_large_frame_whose_head_came_alone_is_read_whole() {
        use ikc_proto::{FrameCodec, pb};
        let (near, mut far) = tokio::io::duplex(256 * 1024);
        let mut framed = IdleFramed::new(Framed::new(near, FrameCodec::new()));
        let frame: pb::Frame = pb::Reply {
            id: 1,
            value: Some(pb::Value {
                kind: Some(pb::value::Kind::Bytes(vec![7; 64 * 1024].into())),
            }),
        }
        .into();
        let mut wire = BytesMut::new();
        FrameCodec::new().encode(&frame, &mut wire).unwrap();

        far.write_all(&wire[..4]).await.unwrap();
        assert!(framed.next().now_or_never().is_none());
        // The head was taken out of the buffer, which went back empty.
        assert_eq!(framed.inner.read_buffer().capacity(), 0);
        far.write_all(&wire[4..]).await.unwrap();
        let read = framed.next().await.unwrap().unwrap();
        assert_eq!(read, frame);
    }

    #[test]
    fn a_buffer_grown_for_a_large_frame_is_freed_not_pooled() {
        // Counted in the pool itself: comparing addresses would not do, as
        // the allocator may well hand the freed memory out again.
        let pooled = || POOL.with(|pool| pool.borrow().len());
        let before = pooled();
        let mut large = BytesMut::with_capacity(16 * BUFFER_CAPACITY);
        release(&mut large);
        assert_eq!(large.capacity(), 0, "given back");
        assert_eq!(pooled(), before, "not kept in the pool");
        let mut usual = BytesMut::with_capacity(BUFFER_CAPACITY);
        release(&mut usual);
        assert_eq!(pooled(), before + 1, "a buffer of the usual size is kept");
    }

    #[tokio::test]
    async fn half_a_frame_keeps_its_buffer() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut framed = IdleFramed::new(Framed::new(near, LengthDelimitedCodec::new()));
        far.write_all(b"\0\0\0\x05hel").await.unwrap();
        assert!(framed.next().now_or_never().is_none());
        assert!(framed.inner.read_buffer().capacity() > 0);
        far.write_all(b"lo").await.unwrap();
        let frame = framed.next().await.unwrap().unwrap();
        assert_eq!(&frame[..], b"hello");
    }
}
