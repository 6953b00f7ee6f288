//! The client's side of the native handshake: say `Hello`, answer a
//! shared-secret challenge, read `Welcome` or `Refuse`.

use futures::{SinkExt, StreamExt};
use ikc_core::Kernel;
use ikc_proto::{CodecError, HandshakeCodec, Preface, pb};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::Secret;
use super::auth::{self as exchange, NONCE_LEN, ProofError};
use crate::error::{Error, TransportErrorKind};

/// The client's `Hello` from `kernel`, with its limits, and the nonce its
/// shared-secret proof will use (when it has a secret).
pub(crate) fn hello(
    kernel: &Kernel,
    limits: pb::Limits,
    secret: Option<&Secret>,
) -> (pb::Hello, Option<[u8; NONCE_LEN]>) {
    let client_nonce = secret.map(exchange::nonce);
    let hello = pb::Hello {
        version: u32::from(Preface::CURRENT_VERSION),
        kernel: kernel.name().to_owned(),
        aliases: kernel.aliases(),
        pid: kernel.pid(),
        features: Vec::new(),
        auth: client_nonce.map(|n| n.to_vec().into()).unwrap_or_default(),
        limits: Some(limits),
        key_id: secret.map(exchange::key_id).unwrap_or_default(),
    };
    (hello, client_nonce)
}

/// Sends `hello` to the server at `addr` and reads its answer, proving the
/// shared secret on the way when asked to; returns the server's `Welcome`.
///
/// # Errors
///
/// [`TransportErrorKind::Refused`] (or `Version`, `ShuttingDown`) with the server's
/// reason when it refuses; [`TransportErrorKind::Handshake`] when it fails, when the
/// server does not know our secret, or when it closes the connection.
pub(crate) async fn exchange<T>(
    framed: &mut Framed<T, HandshakeCodec>,
    addr: &str,
    (hello, client_nonce): (pb::Hello, Option<[u8; NONCE_LEN]>),
    secret: Option<&Secret>,
) -> Result<pb::Welcome, Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |e: CodecError| {
        Error::new(
            TransportErrorKind::Handshake,
            format!("handshake with {addr} failed"),
        )
        .with_source(e)
    };
    framed.send(hello.into()).await.map_err(failed)?;
    let mut answer = framed
        .next()
        .await
        .transpose()
        .map_err(failed)?
        .and_then(|h| h.kind);
    if let Some(pb::handshake::Kind::Challenge(challenge)) = &answer {
        // The server proves it knows the secret before we prove we do.
        let proof = exchange::prove(secret, client_nonce, challenge).map_err(|e| match e {
            ProofError::NoSecret => Error::new(
                TransportErrorKind::Refused,
                format!("{addr} requires a shared secret (see `secret`)"),
            ),
            ProofError::ServerUnproven => Error::new(
                TransportErrorKind::Handshake,
                format!("{addr} does not know the shared secret"),
            ),
        })?;
        framed.send(proof.into()).await.map_err(failed)?;
        answer = framed
            .next()
            .await
            .transpose()
            .map_err(failed)?
            .and_then(|h| h.kind);
    } else if secret.is_some() && matches!(answer, Some(pb::handshake::Kind::Welcome(_))) {
        return Err(Error::new(
            TransportErrorKind::Handshake,
            format!("{addr} did not prove it knows the shared secret"),
        ));
    }
    match answer {
        Some(pb::handshake::Kind::Welcome(welcome)) => Ok(welcome),
        Some(pb::handshake::Kind::Refuse(refuse)) => {
            let kind = match pb::RefuseCode::try_from(refuse.code) {
                Ok(pb::RefuseCode::Version) => TransportErrorKind::Version,
                Ok(pb::RefuseCode::ShuttingDown) => TransportErrorKind::ShuttingDown,
                _ => TransportErrorKind::Refused,
            };
            Err(Error::new(
                kind,
                format!("{addr} refused the connection: {}", refuse.reason),
            ))
        }
        Some(_) | None => Err(Error::new(
            TransportErrorKind::Handshake,
            format!("{addr} closed the connection during the handshake"),
        )),
    }
}
