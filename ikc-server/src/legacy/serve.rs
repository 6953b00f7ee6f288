//! Legacy connections end to end: telling them from native ones, the
//! server's accept path and the client's connect path.

use bytes::BytesMut;
use ikc_core::transport::Frames;
use ikc_core::{ChannelBuilder, Kernel, PeerInfo, RegisterError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;

use super::codec::LineCodec;
use super::handshake::{self, Dialect, Identity, Refusal, valid_kernel_name};
use super::{LegacyError, LegacyTransport};
use crate::BoxError;
use crate::run::{ConnectionOutcome, run_channel};

/// Which protocol a connection speaks, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// The native preface (or anything that is not a legacy line: the
    /// native path reports it).
    Native,
    /// A `SETUP` or `HELLO` line.
    Legacy,
}

/// Reads the first bytes into `buf` until they tell the protocol apart:
/// `IKC` starts the native preface, `SETUP` or `HELLO` a legacy line.
///
/// # Errors
///
/// When reading fails.
pub(crate) async fn sniff<IO>(io: &mut IO, buf: &mut BytesMut) -> std::io::Result<Protocol>
where
    IO: AsyncRead + Unpin,
{
    const LEGACY: [&[u8]; 2] = [b"SETUP", b"HELLO"];
    loop {
        let seen = &buf[..];
        if LEGACY.iter().any(|word| seen.starts_with(word)) {
            return Ok(Protocol::Legacy);
        }
        let maybe_legacy = LEGACY.iter().any(|word| word.starts_with(seen));
        if !maybe_legacy {
            return Ok(Protocol::Native);
        }
        if io.read_buf(buf).await? == 0 {
            // Closed: the native path reports it as it always has.
            return Ok(Protocol::Native);
        }
    }
}

/// How the server announces itself to legacy peers: its name, then its
/// aliases (the bound `ip:port` last, as IKC puts it).
fn identity(kernel: &Kernel) -> Identity {
    let mut names = vec![kernel.name().to_owned()];
    names.extend(kernel.aliases());
    Identity {
        names,
        pid: kernel.pid(),
    }
}

/// What the server's legacy path needs besides the connection.
#[derive(Debug)]
pub(crate) struct Accept<'a> {
    /// Builds the channel (service, limits) as for native peers.
    pub(crate) builder: ChannelBuilder,
    pub(crate) kernel: &'a Kernel,
    pub(crate) max_frame_length: usize,
    /// When the whole handshake, sniffing included, must be done.
    pub(crate) deadline: tokio::time::Instant,
    /// What the connection proved of the peer (its address; a Perl peer
    /// proves nothing more).
    pub(crate) identity: ikc_core::Identity,
}

/// Serves one legacy connection whose first bytes (`read`) were sniffed:
/// the negotiation (bounded by the handshake timeout), registration of the
/// peer with the kernel, then the channel until it ends.
///
/// # Errors
///
/// When the channel fails; a failed or refused negotiation is
/// [`ConnectionOutcome::Refused`].
pub(crate) async fn serve<IO>(
    io: IO,
    read: BytesMut,
    accept: Accept<'_>,
    drain: CancellationToken,
    abort: CancellationToken,
) -> Result<ConnectionOutcome, BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accept {
        builder,
        kernel,
        max_frame_length,
        deadline,
        identity: proved,
    } = accept;
    let mut parts = FramedParts::new::<&str>(io, LineCodec::new());
    parts.read_buf = read;
    let mut lines = Framed::from_parts(parts);
    let us = identity(kernel);
    let negotiation = handshake::accept(&mut lines, &us, |peer| {
        if drain.is_cancelled() {
            return Err(Refusal {
                reason: "server is shutting down".to_owned(),
                close: true,
            });
        }
        // As Perl IKC, an alias another kernel already has is skipped; the
        // name itself must be free.
        let aliases = peer
            .aliases
            .iter()
            .filter(|a| !kernel.is_named(a) && kernel.peer(a).is_none())
            .cloned()
            .collect();
        let mut peer = peer.clone();
        peer.aliases = aliases;
        peer.identity = proved.clone();
        builder.clone().register(peer).map_err(|error| Refusal {
            reason: error.to_string(),
            close: !matches!(error, RegisterError::NameTaken { .. }),
        })
    });
    let negotiated = tokio::select! {
        negotiated = tokio::time::timeout_at(deadline, negotiation) => negotiated,
        () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
    };
    let (registered, dialect) = match negotiated {
        Ok(Ok((registered, _, dialect))) => (registered, dialect),
        Ok(Err(error)) => {
            tracing::info!(%error, "legacy negotiation failed");
            return Ok(ConnectionOutcome::Refused);
        }
        Err(_) => {
            tracing::debug!("legacy negotiation passed the handshake deadline");
            return Ok(ConnectionOutcome::Refused);
        }
    };
    let peer = registered.handle().peer().clone();
    tracing::Span::current().record("kernel", peer.kernel.as_str());
    tracing::debug!(?dialect, "legacy negotiation done");
    let transport =
        LegacyTransport::after_negotiation(lines, kernel.clone(), peer, max_frame_length);
    let (handle, driver) = registered.connect(Frames::new(transport));
    run_channel(&handle, driver, &drain, &abort).await
}

/// The client side: negotiates with a Perl IKC server over `io` as
/// ClientLite does (IKC0, falling back to the old dialect), and returns the
/// server kernel and the transport to run a channel over.
///
/// # Errors
///
/// When the server refuses, breaks the negotiation's rules, or the
/// connection fails.
pub async fn negotiate<IO>(
    io: IO,
    kernel: &Kernel,
    max_frame_length: usize,
) -> Result<(PeerInfo, LegacyTransport<IO>), LegacyError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut lines = Framed::new(io, LineCodec::new());
    let mut us = identity(kernel);
    us.names.retain(|name| valid_kernel_name(name));
    let (peer, dialect): (PeerInfo, Dialect) = handshake::connect(&mut lines, &us).await?;
    tracing::debug!(server = %peer.kernel, ?dialect, "legacy negotiation done");
    let transport =
        LegacyTransport::after_negotiation(lines, kernel.clone(), peer.clone(), max_frame_length);
    Ok((peer, transport))
}
