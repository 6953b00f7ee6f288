//! Opening a connection: the socket, TLS, the handshake
//! ([`crate::handshake::client`] or the Perl negotiation), the channel.

use std::future::Future;
use std::time::Duration;

use ikc_core::channel::SessionService;
use ikc_core::{Channel, ChannelHandle, Kernel, PeerInfo, PeerLimits};
use ikc_proto::HandshakeCodec;
use ikc_proto::codec::Builder;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::ClientBuilder;
use crate::error::{Error, TransportErrorKind};
use crate::framed::IdleFramed;
use crate::handshake;
use crate::io::Io;
#[cfg(feature = "tls")]
use crate::tls::ClientTls;
use crate::trace::RequestTrace;

/// A live connection: its channel and what the server said about itself.
#[derive(Debug, Clone)]
pub(super) struct Connected {
    pub(super) handle: ChannelHandle,
    pub(super) worker: u32,
}

/// The end of one connection attempt: [`ClientBuilder::connect_timeout`]
/// after it began. Every step of the attempt (connect, TLS, handshake) runs
/// against this one instant, so the steps share the timeout rather than
/// each getting a fresh one.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    /// `None` when the timeout is too long to add to the clock: no bound.
    at: Option<Instant>,
    timeout: Duration,
}

impl Deadline {
    fn starting_now(timeout: Duration) -> Self {
        Deadline {
            at: Instant::now().checked_add(timeout),
            timeout,
        }
    }

    /// Runs `step` of the attempt to `addr` until the deadline; past it,
    /// `step` is dropped (closing its socket) and the attempt fails with
    /// [`TransportErrorKind::Timeout`], naming the step that was under way.
    async fn bound<T>(
        self,
        addr: &str,
        what: &str,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let Some(at) = self.at else {
            return step.await;
        };
        tokio::time::timeout_at(at, step).await.unwrap_or_else(|_| {
            Err(Error::new(
                TransportErrorKind::Timeout,
                format!(
                    "cannot connect to {addr}: {what} did not finish within the connect timeout ({:?})",
                    self.timeout
                ),
            ))
        })
    }
}

async fn open(addr: &str, settings: &ClientBuilder, deadline: Deadline) -> Result<Io, Error> {
    let failed = |e: std::io::Error| {
        Error::new(
            TransportErrorKind::Connect,
            format!("cannot connect to {addr}"),
        )
        .with_source(e)
    };
    match addr.strip_prefix("unix:") {
        Some(path) => {
            let connect = async { UnixStream::connect(path).await.map_err(failed) };
            deadline
                .bound(addr, "the Unix socket connect", connect)
                .await
                .map(Io::Unix)
        }
        None => {
            // Name resolution and every resolved address tried count too.
            let connect = async { TcpStream::connect(addr).await.map_err(failed) };
            let stream = deadline.bound(addr, "the TCP connect", connect).await?;
            let _ = stream.set_nodelay(true);
            #[cfg(not(feature = "tls"))]
            let _ = settings;
            #[cfg(feature = "tls")]
            if let Some(tls) = &settings.tls {
                return open_tls(addr, tls, stream, deadline).await;
            }
            Ok(Io::Tcp(stream))
        }
    }
}

/// The TLS handshake over a connected TCP `stream`.
#[cfg(feature = "tls")]
async fn open_tls(
    addr: &str,
    tls: &ClientTls,
    stream: TcpStream,
    deadline: Deadline,
) -> Result<Io, Error> {
    // The certificate must name the host or IP address dialled.
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let handshake = async {
        tls.connect(host, stream).await.map_err(|e| {
            Error::new(
                TransportErrorKind::Handshake,
                format!("TLS handshake with {addr} failed"),
            )
            .with_source(e)
        })
    };
    let stream = deadline.bound(addr, "the TLS handshake", handshake).await?;
    Ok(Io::TlsClient(Box::new(stream)))
}

/// Connects `kernel` to `addr` and runs the handshake: one attempt, all of
/// it within `settings.connect_timeout`.
pub(super) async fn establish(
    kernel: &Kernel,
    addr: &str,
    settings: &ClientBuilder,
) -> Result<Connected, Error> {
    let deadline = Deadline::starting_now(settings.connect_timeout);
    let io = open(addr, settings, deadline).await?;
    #[cfg(feature = "perl")]
    if settings.legacy {
        return establish_legacy(kernel, addr, settings, io, deadline).await;
    }
    let mut codec = Builder::new();
    codec.max_frame_length(settings.max_frame_length);
    let mut framed = Framed::new(io, codec.new_client_handshake());
    let limits = handshake::limits(
        settings.max_frame_length,
        settings.max_in_flight,
        settings.keepalive,
    );
    let hello = handshake::client::hello(kernel, limits, settings.secret.as_ref());
    let exchange = handshake::client::exchange(&mut framed, addr, hello, settings.secret.as_ref());
    // The handshake timeout bounds this step; the deadline, the whole attempt.
    let handshake = async {
        tokio::time::timeout(settings.handshake_timeout, exchange)
            .await
            .map_err(|_| {
                Error::new(
                    TransportErrorKind::Handshake,
                    format!(
                        "{addr} did not answer the handshake within {:?}",
                        settings.handshake_timeout
                    ),
                )
            })?
    };
    let welcome = deadline.bound(addr, "the handshake", handshake).await?;
    // The server, as this side knows it: the address dialled and the key it
    // proved, when there was one (the server's own TLS certificate is
    // checked against the address, not kept).
    let mut identity = ikc_core::Identity::default().with_addr(addr);
    if let Some(secret) = &settings.secret {
        identity = identity.with_key_id(handshake::auth::id(secret));
    }
    let peer = PeerInfo::new(welcome.kernel, welcome.aliases, welcome.pid).with_identity(identity);
    let framed = IdleFramed::new(framed.map_codec(HandshakeCodec::into_frame_codec));
    let peer_limits = PeerLimits::from_proto(welcome.limits.as_ref());
    let send_limit = peer_limits.frame_limit(settings.max_frame_length);
    let handle = start_channel(
        kernel,
        settings,
        addr,
        (peer, peer_limits),
        framed,
        send_limit,
    )?;
    Ok(Connected {
        handle,
        worker: welcome.worker,
    })
}

#[cfg(feature = "perl")]
/// [`establish`] with a Perl IKC server, within the attempt's `deadline`.
async fn establish_legacy(
    kernel: &Kernel,
    addr: &str,
    settings: &ClientBuilder,
    io: Io,
    deadline: Deadline,
) -> Result<Connected, Error> {
    let negotiation = async {
        tokio::time::timeout(
            settings.handshake_timeout,
            crate::legacy::negotiate(io, kernel, settings.max_frame_length),
        )
        .await
        .map_err(|_| {
            Error::new(
                TransportErrorKind::Handshake,
                format!(
                    "{addr} did not finish the IKC negotiation within {:?}",
                    settings.handshake_timeout
                ),
            )
        })?
        .map_err(|e| {
            let kind = match e {
                crate::legacy::LegacyError::Refused { .. } => TransportErrorKind::Refused,
                _ => TransportErrorKind::Handshake,
            };
            Error::new(kind, format!("IKC negotiation with {addr} failed")).with_source(e)
        })
    };
    let (peer, transport) = deadline
        .bound(addr, "the IKC negotiation", negotiation)
        .await?;
    // Perl IKC announces no limits.
    let handle = start_channel(
        kernel,
        settings,
        addr,
        (peer, PeerLimits::default()),
        ikc_core::transport::Frames::new(transport),
        settings.max_frame_length,
    )?;
    Ok(Connected { handle, worker: 0 })
}

/// Registers the server with the client's kernel and runs the channel over
/// `transport` on its own task.
fn start_channel<T>(
    kernel: &Kernel,
    settings: &ClientBuilder,
    addr: &str,
    (peer, peer_limits): (PeerInfo, PeerLimits),
    transport: T,
    max_frame_length: usize,
) -> Result<ChannelHandle, Error>
where
    T: ikc_core::transport::Transport<Error: Send> + Send + 'static,
{
    // The server's requests run in `ikc.request` spans as a server's
    // peers' do: a kernel called through a hub is one more hop of the
    // caller's trace.
    let requests = RequestTrace::new(kernel.router());
    let registered = Channel::builder(kernel.clone())
        .service(SessionService::new(requests))
        .call_timeout(settings.call_timeout)
        .max_frame_length(max_frame_length)
        .keepalive(settings.keepalive)
        .max_in_flight(settings.max_in_flight)
        .overloaded_retry_after(settings.overloaded_retry_after)
        .peer_limits(peer_limits)
        .max_queued_calls(settings.max_queued_calls)
        .register(peer)
        .map_err(|e| {
            Error::new(
                TransportErrorKind::Handshake,
                format!("cannot register the server at {addr}"),
            )
            .with_source(e)
        })?;
    let (handle, driver) = registered.connect(transport);
    let addr = addr.to_owned();
    tokio::spawn(async move {
        if let Err(error) = driver.await {
            tracing::debug!(%addr, error = %ikc_core::error::error_chain(&error), "connection to the server failed");
        }
    });
    Ok(handle)
}
