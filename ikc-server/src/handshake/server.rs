//! The server's side of the native handshake: read the peer's `Hello`,
//! refuse it with a reason, or welcome it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ikc_core::Kernel;
use ikc_proto::{CodecError, HandshakeCodec, pb};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::Framed;

/// What the first handshake message of a peer was.
#[derive(Debug)]
pub(crate) enum Greeting {
    /// A `Hello`.
    Hello(pb::Hello),
    /// The peer closed the connection first.
    Closed,
    /// Nothing came before the deadline.
    TimedOut,
    /// Not a `Hello` the server can take: it has been told why.
    Refused,
    /// Reading failed.
    Failed(CodecError),
}

/// A `Refuse` answer.
pub(crate) fn refuse(code: pb::RefuseCode, reason: impl Into<String>) -> pb::Handshake {
    pb::Refuse {
        code: code.into(),
        reason: reason.into(),
    }
    .into()
}

/// Sends `refusal`; the connection closes right after, so a peer that
/// cannot take it loses nothing more (bounded: a peer that does not read
/// does not hold the connection open).
pub(crate) async fn send_refusal<T>(framed: &mut Framed<T, HandshakeCodec>, refusal: pb::Handshake)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(refusal)).await;
}

/// Reads the peer's `Hello` until `deadline`; an unsupported version or a
/// message that is not a valid `Hello` is refused here, with its reason.
pub(crate) async fn read_hello<T>(
    framed: &mut Framed<T, HandshakeCodec>,
    deadline: Instant,
) -> Greeting
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let first = match tokio::time::timeout_at(deadline, framed.next()).await {
        Err(_) => return Greeting::TimedOut,
        Ok(None) => return Greeting::Closed,
        Ok(Some(first)) => first,
    };
    let refusal = match first {
        Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Hello(hello)),
        }) => return Greeting::Hello(hello),
        Err(CodecError::UnsupportedVersion { version }) => {
            tracing::debug!(version, "peer speaks an unsupported protocol version");
            let reason =
                format!("protocol version {version} is not supported; this server speaks 1");
            refuse(pb::RefuseCode::Version, reason)
        }
        Err(error @ (CodecError::Decode(_) | CodecError::FrameTooLarge { .. })) => {
            // A Hello that does not decode (a name that is not UTF-8) or is
            // too long: tell the peer why instead of just closing.
            tracing::debug!(%error, "refusing an invalid Hello");
            refuse(pb::RefuseCode::BadHello, format!("invalid Hello: {error}"))
        }
        Err(error) => return Greeting::Failed(error),
        Ok(_) => refuse(pb::RefuseCode::BadHello, "expected Hello"),
    };
    send_refusal(framed, refusal).await;
    Greeting::Refused
}

/// The server's `Welcome`: its kernel, worker and limits.
pub(crate) fn welcome(kernel: &Kernel, worker: u32, limits: pb::Limits) -> pb::Handshake {
    pb::Welcome {
        kernel: kernel.name().to_owned(),
        aliases: kernel.aliases(),
        pid: kernel.pid(),
        worker,
        features: Vec::new(),
        limits: Some(limits),
        auth: Default::default(),
    }
    .into()
}
