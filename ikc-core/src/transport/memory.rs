//! An in-memory transport: two connected ends passing frames over bounded
//! channels, with no sockets and no encoding.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc;
use futures::{Sink, Stream};
use ikc_proto::pb;
use pin_project::pin_project;

/// One end of an in-memory connection, from [`pair`].
#[pin_project]
#[derive(Debug)]
pub struct MemoryTransport {
    #[pin]
    tx: mpsc::Sender<pb::Frame>,
    #[pin]
    rx: mpsc::Receiver<pb::Frame>,
}

/// Two connected ends; each buffers up to `buffer` frames the other has not
/// read yet. Dropping one end closes the connection for the other.
#[must_use]
pub fn pair(buffer: usize) -> (MemoryTransport, MemoryTransport) {
    let (a_tx, a_rx) = mpsc::channel(buffer);
    let (b_tx, b_rx) = mpsc::channel(buffer);
    (
        MemoryTransport { tx: a_tx, rx: b_rx },
        MemoryTransport { tx: b_tx, rx: a_rx },
    )
}

fn closed(_: mpsc::SendError) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the other end of the memory transport is gone",
    )
}

impl Stream for MemoryTransport {
    type Item = Result<pb::Frame, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.project().rx.poll_next(cx).map(|frame| frame.map(Ok))
    }
}

impl Sink<pb::Frame> for MemoryTransport {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.project().tx.poll_ready(cx).map_err(closed)
    }

    fn start_send(self: Pin<&mut Self>, frame: pb::Frame) -> Result<(), io::Error> {
        self.project().tx.start_send(frame).map_err(closed)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.project().tx.poll_flush(cx).map_err(closed)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.project().tx.poll_close(cx).map_err(closed)
    }
}

impl super::Transport for MemoryTransport {
    type Error = io::Error;

    fn poll_recv(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<pb::Frame, io::Error>>> {
        self.poll_next(cx)
    }

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Sink::poll_ready(self, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: super::Outbound<'_>) -> Result<(), io::Error> {
        match item {
            super::Outbound::Frame(frame) => Sink::start_send(self, frame),
            super::Outbound::Encoded(frames) => {
                // Never offered: this transport does not take encoded frames.
                frames.clear();
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the memory transport takes frames, not encoded bytes",
                ))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Sink::poll_flush(self, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Sink::poll_close(self, cx)
    }
}
