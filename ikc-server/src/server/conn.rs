//! One accepted connection: the handshake, then a channel until it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ikc_core::{
    Channel, ChannelHandle, IkcError, Kernel, PeerInfo, PeerLimits, RegisterError, SessionService,
};
use ikc_proto::codec::Builder;
use ikc_proto::{CodecError, HandshakeCodec, pb};
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::auth::{self, Secret};
use crate::framed::{BUFFER_CAPACITY, IdleFramed};
use crate::io::{Io, PeerAddr};
use crate::tls::ServerTls;
use crate::{BoxError, legacy};

/// An accepted connection on its way through the connection stack.
///
/// Layers may attach what the connection needs: the
/// [`ShutdownMonitor`](crate::shutdown::ShutdownMonitor) sets the tokens that
/// tell it to drain or to abort.
#[derive(Debug)]
pub struct Connection {
    io: Io,
    peer: PeerAddr,
    drain: CancellationToken,
    abort: CancellationToken,
}

impl Connection {
    /// A connection from `peer` over `io`, never told to drain or abort.
    pub(crate) fn new(io: Io, peer: PeerAddr) -> Self {
        Connection {
            io,
            peer,
            drain: CancellationToken::new(),
            abort: CancellationToken::new(),
        }
    }

    /// Who connected.
    #[must_use]
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    /// Cancelled when the connection should close gracefully: send
    /// `GoAway`, finish running requests, close.
    pub fn set_drain(&mut self, token: CancellationToken) {
        self.drain = token;
    }

    /// Cancelled when the connection must close now.
    pub fn set_abort(&mut self, token: CancellationToken) {
        self.abort = token;
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionOutcome {
    /// The peer closed it, or it drained after a graceful close.
    Closed,
    /// The handshake was refused or failed.
    Refused,
    /// It was aborted (the shutdown grace period ran out).
    Aborted,
}

/// What every connection of a server shares.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) kernel: Kernel,
    pub(crate) codec: Builder,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) keepalive: Option<Duration>,
    pub(crate) overloaded_retry_after: Duration,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) requests: SessionService,
    pub(crate) worker: u32,
    /// Accept Perl IKC peers (text negotiation) too.
    pub(crate) legacy: bool,
    /// Peers must prove they know this secret (see [`crate::auth`]).
    pub(crate) secret: Option<Secret>,
    /// TCP connections speak TLS (see [`crate::tls`]).
    pub(crate) tls: Option<ServerTls>,
}

/// The innermost connection service: runs the handshake, then the channel.
#[derive(Debug, Clone)]
pub struct ServeConnection {
    settings: Arc<Settings>,
}

impl ServeConnection {
    pub(crate) fn new(settings: Settings) -> Self {
        ServeConnection {
            settings: Arc::new(settings),
        }
    }
}

impl Service<Connection> for ServeConnection {
    type Response = ConnectionOutcome;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ConnectionOutcome, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, conn: Connection) -> Self::Future {
        Box::pin(serve(Arc::clone(&self.settings), conn))
    }
}

fn refuse(code: pb::RefuseCode, reason: impl Into<String>) -> pb::Handshake {
    pb::Refuse {
        code: code.into(),
        reason: reason.into(),
    }
    .into()
}

async fn serve(settings: Arc<Settings>, conn: Connection) -> Result<ConnectionOutcome, BoxError> {
    let Connection {
        io,
        peer: peer_addr,
        drain,
        abort,
    } = conn;
    // One deadline for the whole handshake (TLS, sniffing, Hello,
    // authentication, Welcome): a peer that finishes each phase just in time
    // must not stretch it to several.
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let mut io = match (io, &settings.tls) {
        (Io::Tcp(stream), Some(tls)) => {
            let accepted = tokio::select! {
                accepted = tokio::time::timeout_at(deadline, tls.accept(stream)) => accepted,
                () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
            };
            match accepted {
                Ok(Ok(stream)) => Io::TlsServer(Box::new(stream)),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return Ok(ConnectionOutcome::Refused);
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return Ok(ConnectionOutcome::Refused);
                }
            }
        }
        (io, _) => io,
    };
    // A Perl IKC peer opens with a text line instead of the preface. The
    // sniffed bytes stay in this buffer, which becomes the connection's read
    // buffer: it needs `Framed`'s usual capacity, or every later read is a
    // few bytes long and a syscall each.
    let mut read = bytes::BytesMut::with_capacity(BUFFER_CAPACITY);
    // Legacy peers cannot prove they know a secret.
    if settings.legacy && settings.secret.is_none() {
        let sniffed = tokio::select! {
            sniffed = tokio::time::timeout_at(deadline, legacy::sniff(&mut io, &mut read)) => sniffed,
            () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
        };
        match sniffed {
            Err(_) => return Ok(ConnectionOutcome::Refused),
            Ok(Err(error)) => return Err(error.into()),
            Ok(Ok(legacy::Protocol::Legacy)) => {
                return legacy::serve(io, read, legacy_accept(&settings, deadline), drain, abort)
                    .await;
            }
            Ok(Ok(legacy::Protocol::Native)) => {}
        }
    }
    let mut parts = FramedParts::new::<pb::Handshake>(io, settings.codec.new_server_handshake());
    parts.read_buf = read;
    let mut framed = Framed::from_parts(parts);

    let first = tokio::select! {
        first = tokio::time::timeout_at(deadline, framed.next()) => first,
        () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
    };
    let hello = match first {
        Err(_) => {
            tracing::debug!(timeout = ?settings.handshake_timeout, "handshake timed out");
            return Ok(ConnectionOutcome::Refused);
        }
        Ok(None) => return Ok(ConnectionOutcome::Closed),
        Ok(Some(Err(CodecError::UnsupportedVersion { version }))) => {
            tracing::debug!(version, "peer speaks an unsupported protocol version");
            let reason =
                format!("protocol version {version} is not supported; this server speaks 1");
            send_refusal(&mut framed, refuse(pb::RefuseCode::Version, reason)).await;
            return Ok(ConnectionOutcome::Refused);
        }
        Ok(Some(Err(error @ (CodecError::Decode(_) | CodecError::FrameTooLarge { .. })))) => {
            // A Hello that does not decode (a name that is not UTF-8) or is
            // too long: tell the peer why instead of just closing.
            tracing::debug!(%error, "refusing an invalid Hello");
            let reason = format!("invalid Hello: {error}");
            send_refusal(&mut framed, refuse(pb::RefuseCode::BadHello, reason)).await;
            return Ok(ConnectionOutcome::Refused);
        }
        Ok(Some(Err(error))) => return Err(error.into()),
        Ok(Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Hello(hello)),
        }))) => hello,
        Ok(Some(Ok(_))) => {
            send_refusal(
                &mut framed,
                refuse(pb::RefuseCode::BadHello, "expected Hello"),
            )
            .await;
            return Ok(ConnectionOutcome::Refused);
        }
    };

    if let Some(secret) = &settings.secret {
        let proven =
            tokio::time::timeout_at(deadline, authenticate(&mut framed, secret, &hello.auth))
                .await
                .unwrap_or(Err("the handshake timed out during authentication"));
        if let Err(reason) = proven {
            tracing::info!(peer.addr = %peer_addr, kernel = %hello.kernel, reason, "refused a peer that did not prove the shared secret");
            send_refusal(&mut framed, refuse(pb::RefuseCode::Auth, reason)).await;
            return Ok(ConnectionOutcome::Refused);
        }
    }
    if drain.is_cancelled() {
        send_refusal(
            &mut framed,
            refuse(pb::RefuseCode::ShuttingDown, "server is shutting down"),
        )
        .await;
        return Ok(ConnectionOutcome::Refused);
    }
    let peer_limits = PeerLimits::from_proto(hello.limits.as_ref());
    let send_limit = peer_limits.frame_limit(settings.codec.get_max_frame_length());
    let peer = PeerInfo {
        kernel: hello.kernel,
        aliases: hello.aliases,
        pid: hello.pid,
    };
    // What is left of the Hello (its `auth` bytes) shares the read buffer it
    // was decoded from. Kept alive for the whole connection, it would make
    // the next read allocate a second buffer: 8 KiB more per connection.
    drop(hello.auth);
    tracing::Span::current().record("kernel", peer.kernel.as_str());
    let builder = channel_builder(&settings, send_limit).peer_limits(peer_limits);
    let registered = match builder.register(peer) {
        Ok(registered) => registered,
        Err(error) => {
            tracing::info!(%error, "refusing handshake");
            let code = match error {
                RegisterError::NameTaken { .. } => pb::RefuseCode::NameTaken,
                _ => pb::RefuseCode::BadHello,
            };
            send_refusal(&mut framed, refuse(code, error.to_string())).await;
            return Ok(ConnectionOutcome::Refused);
        }
    };

    let kernel = &settings.kernel;
    let welcome = pb::Welcome {
        kernel: kernel.name().to_owned(),
        aliases: kernel.aliases(),
        pid: kernel.pid(),
        worker: settings.worker,
        features: Vec::new(),
        limits: Some(pb::Limits {
            max_frame_len: u32::try_from(settings.codec.get_max_frame_length()).unwrap_or(u32::MAX),
            max_in_flight: u32::try_from(settings.max_in_flight).unwrap_or(u32::MAX),
            keepalive_ms: ikc_core::channel::keepalive_ms(settings.keepalive),
        }),
        auth: Default::default(),
    };
    tokio::time::timeout_at(deadline, framed.send(welcome.into()))
        .await
        .map_err(|_| IkcError::new(ikc_core::ErrorKind::Timeout, "sending Welcome timed out"))??;

    // `map_codec` keeps the read buffer: frames the peer sent right behind
    // its Hello are not lost.
    let framed = IdleFramed::new(framed.map_codec(HandshakeCodec::into_frame_codec));
    let (handle, driver) = registered.connect_encoded(framed, IdleFramed::append_encoded);
    tracing::debug!("handshake done");
    run_channel(&handle, driver, &drain, &abort).await
}

/// Runs a connection's channel until it ends: told to drain, it sends
/// `GoAway` and finishes what it accepted; told to abort, it stops at once.
pub(crate) async fn run_channel<T, E>(
    handle: &ChannelHandle,
    driver: ikc_core::channel::ChannelDriver<T>,
    drain: &CancellationToken,
    abort: &CancellationToken,
) -> Result<ConnectionOutcome, BoxError>
where
    T: futures::Sink<pb::Frame, Error = E> + futures::Stream<Item = Result<pb::Frame, E>>,
    E: Into<BoxError>,
{
    let mut driver = std::pin::pin!(driver);
    tokio::select! {
        result = &mut driver => return result.map(|()| ConnectionOutcome::Closed).map_err(Into::into),
        () = drain.cancelled() => handle.go_away(),
        () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
    }
    tokio::select! {
        result = &mut driver => result.map(|()| ConnectionOutcome::Closed).map_err(Into::into),
        () = abort.cancelled() => Ok(ConnectionOutcome::Aborted),
    }
}

/// The server's side of the shared-secret exchange (see [`crate::auth`]):
/// challenge the peer, then check its proof.
async fn authenticate(
    framed: &mut Framed<Io, HandshakeCodec>,
    secret: &Secret,
    client_nonce: &[u8],
) -> Result<(), &'static str> {
    if client_nonce.len() != auth::NONCE_LEN {
        return Err("this server requires a shared secret");
    }
    let server_nonce = auth::nonce();
    let challenge = pb::Challenge {
        nonce: server_nonce.to_vec().into(),
        proof: secret.server_proof(client_nonce, &server_nonce).into(),
    };
    framed
        .send(challenge.into())
        .await
        .map_err(|_| "the peer went away during authentication")?;
    match framed.next().await {
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Proof(proof)),
        })) if secret.verify_client(&server_nonce, client_nonce, &proof.proof) => Ok(()),
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Proof(_)),
        })) => Err("wrong shared secret"),
        _ => Err("expected a proof of the shared secret"),
    }
}

/// The channel of one of the server's peers, native or Perl, sending
/// frames of at most `send_limit` bytes.
fn channel_builder(settings: &Settings, send_limit: usize) -> ikc_core::ChannelBuilder {
    Channel::builder(settings.kernel.clone())
        .max_in_flight(settings.max_in_flight)
        .keepalive(settings.keepalive)
        .overloaded_retry_after(settings.overloaded_retry_after)
        .call_timeout(settings.call_timeout)
        .max_frame_length(send_limit)
        .service(settings.requests.clone())
}

fn legacy_accept(settings: &Settings, deadline: tokio::time::Instant) -> legacy::Accept<'_> {
    legacy::Accept {
        builder: channel_builder(settings, settings.codec.get_max_frame_length()),
        kernel: &settings.kernel,
        max_frame_length: settings.codec.get_max_frame_length(),
        deadline,
    }
}

async fn send_refusal(framed: &mut Framed<Io, HandshakeCodec>, refusal: pb::Handshake) {
    // The connection closes right after; a peer that cannot take the
    // refusal loses nothing more.
    let _ = tokio::time::timeout(Duration::from_secs(1), framed.send(refusal)).await;
}
