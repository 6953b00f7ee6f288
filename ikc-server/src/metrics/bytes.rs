//! [`Counted`]: a connection's stream, counting the bytes read and written.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::metrics::Counter;
use pin_project::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that adds what it reads to `ikc_bytes_received_total` and what
/// it writes to `ikc_bytes_sent_total`: one add per read or write, not per
/// frame, so a batch of frames costs one.
#[pin_project]
#[derive(Debug)]
pub(crate) struct Counted<T> {
    #[pin]
    inner: T,
    received: Counter,
    sent: Counter,
}

impl<T> Counted<T> {
    pub(crate) fn new(inner: T) -> Self {
        Counted {
            inner,
            received: ::metrics::counter!("ikc_bytes_received_total"),
            sent: ::metrics::counter!("ikc_bytes_sent_total"),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Counted<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let read = this.inner.poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.received.increment(n as u64);
        }
        read
    }
}

impl<T: AsyncWrite> AsyncWrite for Counted<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.sent.increment(n as u64);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written {
            this.sent.increment(n as u64);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
