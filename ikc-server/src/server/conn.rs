//! One accepted connection, in steps: TLS, the Perl sniff, the native
//! handshake ([`crate::handshake`]), then a channel until it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::SinkExt;
use ikc_core::channel::SessionService;
use ikc_core::{
    Channel, ChannelHandle, Identity, IkcError, Kernel, PeerInfo, PeerLimits, RegisterError,
};
use ikc_proto::codec::Builder;
use ikc_proto::{HandshakeCodec, pb};
use pin_project::pin_project;
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedParts};
use tokio_util::sync::CancellationToken;
use tower::Service;

use crate::BoxError;
use crate::framed::{BUFFER_CAPACITY, IdleFramed};
use crate::handshake;
use crate::handshake::Keyring;
use crate::handshake::server::{Greeting, refuse, send_refusal};
use crate::io::{Io, PeerAddr};
#[cfg(feature = "perl")]
use crate::legacy;
use crate::metrics::Counted;
pub use crate::run::ConnectionOutcome;
use crate::run::run_channel;
#[cfg(feature = "tls")]
use crate::tls::ServerTls;

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

impl crate::io::ServedConnection for Connection {
    fn peer_addr(&self) -> &PeerAddr {
        Connection::peer_addr(self)
    }

    fn set_drain(&mut self, token: CancellationToken) {
        Connection::set_drain(self, token);
    }

    fn set_abort(&mut self, token: CancellationToken) {
        Connection::set_abort(self, token);
    }
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
    #[cfg_attr(not(feature = "perl"), allow(dead_code))]
    pub(crate) legacy: bool,
    /// Peers must prove they know one of these keys (see [`crate::auth`]).
    pub(crate) secret: Option<Keyring>,
    /// TCP connections speak TLS (see [`crate::tls`]).
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<ServerTls>,
}

/// The innermost connection service: runs the handshake, then the channel.
#[derive(Debug, Clone)]
pub(crate) struct ServeConnection {
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
        crate::metrics::accepted();
        Box::pin(Served {
            served: serve(Arc::clone(&self.settings), conn),
        })
    }
}

/// A connection's future that counts its end in the connection metrics.
/// Not an `async` block around the connection's future: that would hold
/// the future it was given and the one it awaits, twice the memory of
/// every connection (3.5 KB more per idle connection, measured with
/// `benches/tools/idle_memory.sh`).
#[pin_project]
struct Served<F> {
    #[pin]
    served: F,
}

impl<F> Future for Served<F>
where
    F: Future<Output = Result<ConnectionOutcome, BoxError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(self.project().served.poll(cx));
        crate::metrics::ended(&outcome);
        Poll::Ready(outcome)
    }
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
    let deadline = Instant::now() + settings.handshake_timeout;
    let steps = async {
        let io = accept_tls(&settings, io, deadline).await?;
        let identity = io.identity(&peer_addr);
        #[cfg_attr(not(feature = "perl"), allow(unused_mut))]
        let mut io = Counted::new(io);
        // A Perl IKC peer opens with a text line instead of the preface. The
        // sniffed bytes stay in this buffer, which becomes the connection's
        // read buffer: it needs `Framed`'s usual capacity, or every later
        // read is a few bytes long and a syscall each.
        #[cfg_attr(not(feature = "perl"), allow(unused_mut))]
        let mut read = bytes::BytesMut::with_capacity(BUFFER_CAPACITY);
        #[cfg(feature = "perl")]
        if sniff_legacy(&settings, &mut io, &mut read, deadline).await? {
            let accept = legacy_accept(&settings, deadline, identity.with_legacy(true));
            let perl = legacy::serve(io, read, accept, drain.clone(), abort.clone());
            return Ok(Step::Perl(Box::pin(perl)));
        }
        let mut parts =
            FramedParts::new::<pb::Handshake>(io, settings.codec.new_server_handshake());
        parts.read_buf = read;
        let framed = Framed::from_parts(parts);
        let native =
            native_handshake(&settings, framed, identity, &peer_addr, &drain, deadline).await?;
        Ok(Step::Native(native))
    };
    // Every step gives way to an abort (the grace period is over).
    let step: Result<Step<'_>, Ended> = tokio::select! {
        step = steps => step,
        () = abort.cancelled() => return Ok(ConnectionOutcome::Aborted),
    };
    match step {
        #[cfg(feature = "perl")]
        Ok(Step::Perl(perl)) => perl.await,
        Ok(Step::Native((handle, driver))) => {
            tracing::debug!("handshake done");
            run_channel(&handle, driver, &drain, &abort).await
        }
        Err(Ended::Outcome(outcome)) => Ok(outcome),
        Err(Ended::Failed(error)) => Err(error),
    }
}

/// What the handshake led to: a Perl peer's connection to run, or a native
/// channel. One per connection, taken apart at once: not worth a box.
#[allow(clippy::large_enum_variant)]
enum Step<'a> {
    #[cfg(feature = "perl")]
    Perl(futures::future::BoxFuture<'a, Result<ConnectionOutcome, BoxError>>),
    #[cfg(not(feature = "perl"))]
    _Never(std::marker::PhantomData<&'a ()>, std::convert::Infallible),
    Native((ChannelHandle, NativeDriver)),
}

/// The driver of a native peer's channel.
type NativeDriver =
    ikc_core::channel::ChannelDriver<IdleFramed<Counted<Io>, ikc_proto::FrameCodec>>;

/// How a connection ended before its channel ran.
enum Ended {
    Outcome(ConnectionOutcome),
    Failed(BoxError),
}

impl<E: Into<BoxError>> From<E> for Ended {
    fn from(error: E) -> Self {
        Ended::Failed(error.into())
    }
}

/// The TLS handshake, when the server speaks TLS and `io` is TCP.
/// Without TLS compiled in, every stream is served as it is.
#[cfg(not(feature = "tls"))]
#[expect(clippy::unused_async, reason = "the same step as with TLS")]
async fn accept_tls(_: &Settings, io: Io, _: Instant) -> Result<Io, Ended> {
    Ok(io)
}

#[cfg(feature = "tls")]
async fn accept_tls(settings: &Settings, io: Io, deadline: Instant) -> Result<Io, Ended> {
    let (stream, tls) = match (io, &settings.tls) {
        (Io::Tcp(stream), Some(tls)) => (stream, tls),
        (io, _) => return Ok(io),
    };
    match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
        Ok(Ok(stream)) => Ok(Io::TlsServer(Box::new(stream))),
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            Err(Ended::Outcome(ConnectionOutcome::Refused))
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            Err(Ended::Outcome(ConnectionOutcome::Refused))
        }
    }
}

#[cfg(feature = "perl")]
/// Whether the peer is a Perl IKC one, from its first bytes (kept in
/// `read`). Only when the server takes them: legacy peers cannot prove they
/// know a secret.
///
/// This step is where another protocol plugs in: the `perl` feature
/// compiles it, and the Perl protocol itself lives in [`legacy`]. It is a
/// step rather than a trait object of sniffers: there is one other
/// protocol, and a public hook nobody else implements would be a seam
/// without a user.
async fn sniff_legacy(
    settings: &Settings,
    io: &mut Counted<Io>,
    read: &mut bytes::BytesMut,
    deadline: Instant,
) -> Result<bool, Ended> {
    if !settings.legacy || settings.secret.is_some() {
        return Ok(false);
    }
    match tokio::time::timeout_at(deadline, legacy::sniff(io, read)).await {
        Err(_) => Err(Ended::Outcome(ConnectionOutcome::Refused)),
        Ok(Err(error)) => Err(error.into()),
        Ok(Ok(protocol)) => Ok(protocol == legacy::Protocol::Legacy),
    }
}

/// The native handshake after the preface: `Hello`, the shared secret,
/// the drain check, the peer's registration, `Welcome`; then the channel,
/// ready to run.
async fn native_handshake(
    settings: &Settings,
    mut framed: Framed<Counted<Io>, HandshakeCodec>,
    mut identity: Identity,
    peer_addr: &PeerAddr,
    drain: &CancellationToken,
    deadline: Instant,
) -> Result<(ChannelHandle, NativeDriver), Ended> {
    let refused = || Ended::Outcome(ConnectionOutcome::Refused);
    let hello = match handshake::server::read_hello(&mut framed, deadline).await {
        Greeting::Hello(hello) => hello,
        Greeting::Closed => return Err(Ended::Outcome(ConnectionOutcome::Closed)),
        Greeting::TimedOut => {
            tracing::debug!(timeout = ?settings.handshake_timeout, "handshake timed out");
            return Err(refused());
        }
        Greeting::Refused => return Err(refused()),
        Greeting::Failed(error) => return Err(error.into()),
    };
    if let Some(keys) = &settings.secret {
        let proven = tokio::time::timeout_at(
            deadline,
            handshake::auth::challenge(&mut framed, keys, &hello.auth, &hello.key_id),
        )
        .await
        .unwrap_or(Err("the handshake timed out during authentication"));
        match proven {
            Ok(key_id) => identity = identity.with_key_id(key_id),
            Err(reason) => {
                tracing::info!(peer.addr = %peer_addr, kernel = %hello.kernel, key_id = %hello.key_id, reason, "refused a peer that did not prove the shared secret");
                send_refusal(&mut framed, refuse(pb::RefuseCode::Auth, reason)).await;
                return Err(refused());
            }
        }
    }
    if drain.is_cancelled() {
        let refusal = refuse(pb::RefuseCode::ShuttingDown, "server is shutting down");
        send_refusal(&mut framed, refusal).await;
        return Err(refused());
    }
    let peer_limits = PeerLimits::from_proto(hello.limits.as_ref());
    let send_limit = peer_limits.frame_limit(settings.codec.get_max_frame_length());
    let peer = PeerInfo::new(hello.kernel, hello.aliases, hello.pid).with_identity(identity);
    // What is left of the Hello (its `auth` bytes) shares the read buffer it
    // was decoded from. Kept alive for the whole connection, it would make
    // the next read allocate a second buffer: 8 KiB more per connection.
    drop(hello.auth);
    tracing::Span::current().record("kernel", peer.kernel.as_str());
    let builder = channel_builder(settings, send_limit).peer_limits(peer_limits);
    let registered = match builder.register(peer) {
        Ok(registered) => registered,
        Err(error) => {
            tracing::info!(%error, "refusing handshake");
            let code = match error {
                RegisterError::NameTaken { .. } => pb::RefuseCode::NameTaken,
                _ => pb::RefuseCode::BadHello,
            };
            send_refusal(&mut framed, refuse(code, error.to_string())).await;
            return Err(refused());
        }
    };

    let limits = handshake::limits(
        settings.codec.get_max_frame_length(),
        settings.max_in_flight,
        settings.keepalive,
    );
    let welcome = handshake::server::welcome(&settings.kernel, settings.worker, limits);
    tokio::time::timeout_at(deadline, framed.send(welcome))
        .await
        .map_err(|_| IkcError::new(ikc_core::ErrorKind::Timeout, "sending Welcome timed out"))??;

    // `map_codec` keeps the read buffer: frames the peer sent right behind
    // its Hello are not lost.
    let framed = IdleFramed::new(framed.map_codec(HandshakeCodec::into_frame_codec));
    Ok(registered.connect(framed))
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

#[cfg(feature = "perl")]
fn legacy_accept(
    settings: &Settings,
    deadline: tokio::time::Instant,
    identity: Identity,
) -> legacy::Accept<'_> {
    legacy::Accept {
        identity,
        builder: channel_builder(settings, settings.codec.get_max_frame_length()),
        kernel: &settings.kernel,
        max_frame_length: settings.codec.get_max_frame_length(),
        deadline,
    }
}
