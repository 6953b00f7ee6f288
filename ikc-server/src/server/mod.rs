//! The builder, [`Server`], and the running server, [`ServerHandle`].

mod accept;
mod conn;
mod requests;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use ikc_core::channel::SessionService;
use ikc_core::{Kernel, Request, Value};
use ikc_proto::codec::{Builder as CodecBuilder, DEFAULT_MAX_FRAME_LENGTH};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use self::accept::AcceptLoop;
use self::conn::ServeConnection;
pub use self::conn::{Connection, ConnectionOutcome};
pub use self::requests::{RequestRouter, RequestRouterFuture};
use crate::BoxError;
use crate::access::{AccessLayer, Policy};
use crate::error::{Error, TransportErrorKind};
use crate::handshake::Keyring;
use crate::io::{Connected, Io};
use crate::limit::ConnectionLimitLayer;
use crate::listener::{ListenAddr, Listener};
use crate::metrics::MetricsLayer;
use crate::shutdown::{Shutdown, ShutdownMonitorLayer};
#[cfg(feature = "tls")]
use crate::tls::ServerTls;
use crate::trace::{ConnectionTraceLayer, RequestTrace};

/// Default TCP address: 127.0.0.1:6030. IKC listened on 0.0.0.0:603; ikc
/// listens on loopback unless told otherwise, since anyone who can connect
/// can call every published session.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6030));

/// Default for [`Server::max_connections`]: 10,000.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

pub use crate::handshake::DEFAULT_HANDSHAKE_TIMEOUT;

/// Default for [`Server::grace_period`]: 30 seconds.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);

/// Default kernel name when neither [`Server::name`] nor [`Server::kernel`]
/// is given.
pub const DEFAULT_NAME: &str = "ikc";

/// Builds and runs an ikc server, in the manner of tonic's `Server`: it
/// listens on TCP or a Unix socket and serves a kernel's sessions.
///
/// ```no_run
/// use ikc_core::{Kernel, Request, service_fn};
/// use ikc_server::Server;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let kernel = Kernel::new("Server");
/// kernel.publish("echo", ["say"], service_fn(|req: Request| async move {
///     Ok::<_, ikc_core::BoxError>(req.into_arg())
/// }))?;
/// let server = Server::builder()
///     .kernel(kernel)
///     .bind("127.0.0.1:6030".parse()?)
///     .serve_with_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// println!("listening on {}", server.local_addr());
/// let report = server.stopped().await;
/// println!("stopped: {report:?}");
/// # Ok(())
/// # }
/// ```
///
/// Each accepted connection goes through the connection stack, outermost
/// first: [`ConnectionTrace`](crate::trace::ConnectionTrace) (a span per
/// connection), [`ConnectionLimit`](crate::limit::ConnectionLimit) (a permit
/// taken before accept), [`ShutdownMonitor`](crate::shutdown::ShutdownMonitor)
/// (drain and abort), then the handshake and the channel. Each request goes
/// through [`RequestTrace`], the layers added
/// with [`Server::layer`], the request timeout, then the kernel's router.
///
/// # Graceful shutdown
///
/// On [`ServerHandle::shutdown`], the shutdown signal, or `IKC/shutdown`
/// from a peer (only with [`Server::allow_remote_shutdown`]), the server stops
/// accepting (a Unix socket file is removed), emits `Shutdown` on the
/// monitor bus, and sends every peer `GoAway`. Requests already accepted
/// finish and are answered; new ones get `ShuttingDown`. Connections close
/// once idle. After the grace period, what is left is aborted, and
/// [`ServerHandle::stopped`] reports how many.
#[derive(Debug, Clone)]
#[must_use]
pub struct Server<L = Identity> {
    kernel: Option<Kernel>,
    name: String,
    aliases: Vec<String>,
    bind: SocketAddr,
    unix: Option<PathBuf>,
    max_connections: usize,
    max_in_flight: usize,
    keepalive: Option<Duration>,
    overloaded_retry_after: Duration,
    request_timeout: Option<Duration>,
    call_timeout: Option<Duration>,
    max_frame_length: usize,
    handshake_timeout: Duration,
    grace_period: Duration,
    allow_remote_shutdown: bool,
    remote_shutdown: Option<RemoteShutdown>,
    worker: u32,
    accept_limit: Option<u64>,
    legacy: bool,
    secret: Option<Keyring>,
    access: Option<AccessLayer>,
    metrics: bool,
    #[cfg(feature = "tls")]
    tls: Option<ServerTls>,
    layer: L,
}

impl Server {
    /// A server with the defaults.
    pub fn builder() -> Self {
        Server {
            kernel: None,
            name: DEFAULT_NAME.to_owned(),
            aliases: Vec::new(),
            bind: DEFAULT_BIND,
            unix: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_in_flight: ikc_core::channel::DEFAULT_MAX_IN_FLIGHT,
            keepalive: Some(ikc_core::channel::DEFAULT_KEEPALIVE),
            overloaded_retry_after: ikc_core::channel::DEFAULT_OVERLOADED_RETRY_AFTER,
            request_timeout: None,
            call_timeout: Some(ikc_core::channel::DEFAULT_CALL_TIMEOUT),
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            grace_period: DEFAULT_GRACE_PERIOD,
            allow_remote_shutdown: false,
            remote_shutdown: None,
            worker: 0,
            accept_limit: None,
            legacy: true,
            secret: None,
            access: None,
            metrics: false,
            #[cfg(feature = "tls")]
            tls: None,
            layer: Identity::new(),
        }
    }
}

impl<L> Server<L> {
    /// Serves this kernel (its published sessions and its name). Without
    /// it, the server makes a kernel from [`name`](Self::name).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// The kernel name, when no [`kernel`](Self::kernel) is given. Default:
    /// [`DEFAULT_NAME`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds an alias the kernel answers to. The bound `ip:port` is always
    /// added as an alias, as in IKC.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// The TCP address to listen on. Default: [`DEFAULT_BIND`]
    /// (127.0.0.1:6030); port 0 picks a free port, reported by
    /// [`ServerHandle::local_addr`].
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Listen on a Unix socket at `path` instead of TCP.
    pub fn unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.unix = Some(path.into());
        self
    }

    /// Connections held at once; when full, the server stops accepting
    /// until one closes. Default: [`DEFAULT_MAX_CONNECTIONS`] (10,000).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Requests run at once per connection; more are answered `Overloaded`
    /// (with the [`overloaded_retry_after`](Self::overloaded_retry_after)
    /// hint). Announced in `Welcome`: an ikc client keeps its calls within
    /// it and queues the rest. Default:
    /// [`DEFAULT_MAX_IN_FLIGHT`](ikc_core::channel::DEFAULT_MAX_IN_FLIGHT)
    /// (1024).
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// How long a native connection may stay silent before the server sends
    /// the peer a `Ping`; when it stays silent as long again, the server
    /// drops it (a half-open TCP connection, a frozen peer). Announced in
    /// `Welcome`; the peer probes at its own interval, which does not change
    /// the server's. Default:
    /// [`DEFAULT_KEEPALIVE`](ikc_core::channel::DEFAULT_KEEPALIVE) (30 s);
    /// `None` (or zero) never probes.
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval.filter(|i| !i.is_zero());
        self
    }

    /// The retry hint sent with `Overloaded` to a peer that has more than
    /// [`max_in_flight`](Self::max_in_flight) requests running. Default:
    /// [`DEFAULT_OVERLOADED_RETRY_AFTER`](ikc_core::channel::DEFAULT_OVERLOADED_RETRY_AFTER)
    /// (20 ms).
    pub fn overloaded_retry_after(mut self, hint: Duration) -> Self {
        self.overloaded_retry_after = hint;
        self
    }

    /// How long a request may run before its caller is answered `Timeout`
    /// (the handler is dropped). Default: none; callers' own deadlines
    /// still apply.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long calls the server makes to its peers wait. Default: 30 s.
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Largest frame accepted or sent, in bytes. Default: 16 MiB.
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// How long a peer has to complete the handshake: one deadline from the
    /// accept, covering TLS, telling native from Perl peers, the Hello, the
    /// shared-secret exchange and the Welcome. Default: 5 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// How long a graceful shutdown waits for connections to finish before
    /// aborting them. Default: 30 s.
    pub fn grace_period(mut self, period: Duration) -> Self {
        self.grace_period = period;
        self
    }

    /// Lets peers shut the server down with `IKC/shutdown`. Default: off.
    pub fn allow_remote_shutdown(mut self, allow: bool) -> Self {
        self.allow_remote_shutdown = allow;
        self
    }

    /// What an allowed `IKC/shutdown` does instead of this server's own
    /// graceful shutdown. A pre-forked worker passes a hook that asks its
    /// supervisor to stop every worker. Default: none (the server shuts
    /// itself down).
    pub fn on_remote_shutdown(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.remote_shutdown = Some(RemoteShutdown(Arc::new(hook)));
        self
    }

    /// The pre-forked worker number reported in `Welcome` (0 = single
    /// process). Set by the prefork supervisor.
    pub fn worker(mut self, worker: u32) -> Self {
        self.worker = worker;
        self
    }

    /// Lets peers call and post only what `policy` allows them (see
    /// [`access`](crate::access)), `IKC/*` built-ins included; the rest is
    /// answered `Forbidden`. The check runs before the layers added with
    /// [`layer`](Self::layer), as an [`AccessLayer`] would outermost.
    /// Default: none, every peer may call every published session.
    pub fn access_policy(mut self, policy: Policy) -> Self {
        self.access = Some(AccessLayer::new(policy));
        self
    }

    /// Records request metrics (per session and event: requests, errors by
    /// kind, latency; requests in flight) into the global `metrics`
    /// recorder; see [`metrics`](crate::metrics). Connection metrics are
    /// recorded either way. Default: off.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    /// Requires every peer to prove it knows `secret` in the handshake
    /// (HMAC-SHA256 challenge and response, both ways; see
    /// [`auth`](crate::auth)): one [`Secret`](crate::auth::Secret), or a
    /// [`Keyring`](crate::auth::Keyring) of several named keys, for
    /// rotation. Peers without it are refused with a reason, and legacy
    /// Perl peers are not accepted. Default: none.
    pub fn secret(mut self, secret: impl Into<Keyring>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    /// Speaks TLS on TCP connections, with this certificate and key (see
    /// [`tls`](crate::tls)). Default: none.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Stops accepting after `connections` connections, lets them finish
    /// on their own, then stops (IKC's `connections`: a pre-forked worker
    /// recycles itself this way). Default: no limit.
    pub fn accept_limit(mut self, connections: u64) -> Self {
        self.accept_limit = Some(connections.max(1));
        self
    }

    /// Accepts Perl POE::Component::IKC peers too, told apart from native
    /// ones by their first line (`SETUP` or `HELLO`); see
    /// [`legacy`](crate::legacy). Default: on.
    #[cfg(feature = "perl")]
    #[cfg_attr(docsrs, doc(cfg(feature = "perl")))]
    pub fn legacy(mut self, accept: bool) -> Self {
        self.legacy = accept;
        self
    }

    /// Adds a tower layer around request handling (timeouts, concurrency
    /// limits, rate limits, your own middleware). The first layer added is
    /// the outermost.
    pub fn layer<NL>(self, layer: NL) -> Server<Stack<NL, L>> {
        Server {
            kernel: self.kernel,
            name: self.name,
            aliases: self.aliases,
            bind: self.bind,
            unix: self.unix,
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
            keepalive: self.keepalive,
            overloaded_retry_after: self.overloaded_retry_after,
            request_timeout: self.request_timeout,
            call_timeout: self.call_timeout,
            max_frame_length: self.max_frame_length,
            handshake_timeout: self.handshake_timeout,
            grace_period: self.grace_period,
            allow_remote_shutdown: self.allow_remote_shutdown,
            remote_shutdown: self.remote_shutdown,
            worker: self.worker,
            accept_limit: self.accept_limit,
            legacy: self.legacy,
            secret: self.secret,
            access: self.access,
            metrics: self.metrics,
            #[cfg(feature = "tls")]
            tls: self.tls,
            layer: Stack::new(layer, self.layer),
        }
    }
}

impl<L> Server<L>
where
    L: Layer<RequestRouter>,
    L::Service: Service<Request, Response = Value> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Error: Into<BoxError>,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    /// Binds the configured address and serves until
    /// [`ServerHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// When binding fails ([`TransportErrorKind::AddressInUse`] names the address)
    /// or a setting is invalid.
    pub async fn serve(self) -> Result<ServerHandle, Error> {
        let listener = self.bind_listener().await?;
        self.serve_internal(listener, None)
    }

    /// Like [`serve`](Self::serve), and also shuts down gracefully when
    /// `signal` completes.
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub async fn serve_with_shutdown<F>(self, signal: F) -> Result<ServerHandle, Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = self.bind_listener().await?;
        self.serve_internal(listener, Some(Box::pin(signal)))
    }

    /// Serves on a listener bound elsewhere (a pre-forking supervisor binds
    /// once in the parent).
    ///
    /// # Errors
    ///
    /// When a setting is invalid.
    pub fn serve_with_listener(self, listener: Listener) -> Result<ServerHandle, Error> {
        self.serve_internal(listener, None)
    }

    /// [`serve_with_listener`](Self::serve_with_listener) with a shutdown
    /// signal.
    ///
    /// # Errors
    ///
    /// When a setting is invalid.
    pub fn serve_with_listener_shutdown<F>(
        self,
        listener: Listener,
        signal: F,
    ) -> Result<ServerHandle, Error>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.serve_internal(listener, Some(Box::pin(signal)))
    }

    async fn bind_listener(&self) -> Result<Listener, Error> {
        match &self.unix {
            Some(path) => Listener::bind_unix(path),
            None => Listener::bind_tcp(self.bind).await,
        }
    }

    /// Every entry point ends here.
    fn serve_internal(
        self,
        listener: Listener,
        signal: Option<BoxFuture<'static, ()>>,
    ) -> Result<ServerHandle, Error> {
        let kernel = match self.kernel {
            Some(kernel) => kernel,
            None => Kernel::try_new(&self.name).map_err(|e| {
                Error::new(TransportErrorKind::Config, "invalid kernel name").with_source(e)
            })?,
        };
        for alias in &self.aliases {
            kernel.add_alias(alias).map_err(|e| {
                Error::new(
                    TransportErrorKind::Config,
                    format!("invalid alias {alias:?}"),
                )
                .with_source(e)
            })?;
        }
        if let ListenAddr::Tcp(addr) = listener.local_addr() {
            // `ip:port` is always a valid kernel name.
            let _ = kernel.add_alias(&addr.to_string());
        }

        let stop = CancellationToken::new();
        if self.allow_remote_shutdown {
            match self.remote_shutdown {
                Some(RemoteShutdown(hook)) => kernel.allow_remote_shutdown(move || hook()),
                None => {
                    let stop = stop.clone();
                    kernel.allow_remote_shutdown(move || stop.cancel());
                }
            }
        }

        let requests = self
            .layer
            .layer(RequestRouter::new(kernel.router(), self.request_timeout));
        // A stack for each choice rather than `Either`s: without a policy or
        // metrics, a request takes no extra step. Metrics outside the
        // policy: refusals are counted. `RequestTrace` boxes the errors.
        let metered = self.metrics.then(MetricsLayer::new);
        let requests = match (metered, self.access) {
            (Some(metrics), Some(access)) => {
                SessionService::new(RequestTrace::new(metrics.layer(access.layer(requests))))
            }
            (Some(metrics), None) => {
                SessionService::new(RequestTrace::new(metrics.layer(requests)))
            }
            (None, Some(access)) => SessionService::new(RequestTrace::new(access.layer(requests))),
            (None, None) => SessionService::new(RequestTrace::new(requests)),
        };

        let mut codec = CodecBuilder::new();
        codec.max_frame_length(self.max_frame_length);
        let shutdown = Shutdown::new();
        let connections = ServiceBuilder::new()
            .layer(ConnectionTraceLayer::new())
            .layer(ConnectionLimitLayer::new(self.max_connections))
            .layer(ShutdownMonitorLayer::new(shutdown.clone()))
            .service(ServeConnection::new(conn::Settings {
                kernel: kernel.clone(),
                codec,
                handshake_timeout: self.handshake_timeout,
                max_in_flight: self.max_in_flight,
                keepalive: self.keepalive,
                overloaded_retry_after: self.overloaded_retry_after,
                call_timeout: self.call_timeout,
                requests,
                worker: self.worker,
                legacy: self.legacy,
                secret: self.secret,
                #[cfg(feature = "tls")]
                tls: self.tls,
            }));

        let served = tower::util::BoxCloneSyncService::new(connections.clone());
        let local_addr = listener.local_addr().clone();
        let (report_tx, report_rx) = watch::channel(None);
        let accepted = Arc::new(AtomicU64::new(0));
        let not_accepting = CancellationToken::new();
        let accept = AcceptLoop {
            accepted: Arc::clone(&accepted),
            not_accepting: not_accepting.clone(),
            accept_limit: self.accept_limit,
            listener,
            stop: stop.clone(),
            signal,
            kernel: kernel.clone(),
            shutdown,
            grace_period: self.grace_period,
        };
        tokio::spawn(async move {
            let report = accept.run(connections).await;
            let _ = report_tx.send(Some(report));
        });
        Ok(ServerHandle {
            local_addr,
            connections: served,
            kernel,
            stop,
            accepted,
            not_accepting,
            report: report_rx,
        })
    }
}

/// The hook behind [`Server::on_remote_shutdown`].
#[derive(Clone)]
struct RemoteShutdown(Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for RemoteShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteShutdown(..)")
    }
}

/// What a finished shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections open when the shutdown began.
    pub connections: usize,
    /// Of those, how many were still open at the end of the grace period
    /// and were aborted.
    pub aborted: usize,
}

/// A running server: its address, its kernel, and its shutdown.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    local_addr: ListenAddr,
    /// The connection stack the listener's connections go through, for
    /// [`serve_connection`](Self::serve_connection).
    connections: tower::util::BoxCloneSyncService<Connection, ConnectionOutcome, BoxError>,
    kernel: Kernel,
    stop: CancellationToken,
    accepted: Arc<AtomicU64>,
    not_accepting: CancellationToken,
    report: watch::Receiver<Option<ShutdownReport>>,
}

impl ServerHandle {
    /// Where the server listens (the real port when bound to port 0).
    #[must_use]
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local_addr
    }

    /// The served kernel (publish, retract, monitor, call peers).
    #[must_use]
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Connections accepted so far.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Completes once the server no longer accepts connections: its
    /// [accept limit](Server::accept_limit) was reached, or it is shutting
    /// down. The connections it holds may still run.
    pub async fn stopped_accepting(&self) {
        self.not_accepting.cancelled().await;
    }

    /// Serves one connection over `io`, a stream of your own (see
    /// [`Connected`]), as if the listener had accepted it: it takes a
    /// connection permit (waiting while [`Server::max_connections`] are
    /// open), runs the handshake (TLS when `io` is a TCP stream and the
    /// server speaks TLS; wrap any other stream in TLS yourself), then the
    /// channel, and a shutdown drains it with the others. Completes when
    /// the connection ends, with how it ended.
    ///
    /// In the manner of hyper's `serve_connection`: a listener of your own
    /// (a tunnel, an in-memory pipe in a test) feeds the same server.
    ///
    /// # Errors
    ///
    /// When the connection fails (a transport error during the handshake);
    /// a refused or closed handshake is an [`Ok`] outcome.
    pub async fn serve_connection<C: Connected>(
        &self,
        io: C,
    ) -> Result<ConnectionOutcome, BoxError> {
        let peer = io.peer_addr();
        let mut connections = self.connections.clone();
        connections.ready().await?;
        connections
            .call(Connection::new(Io::from_connected(io), peer))
            .await
    }

    /// Starts a graceful shutdown; see [`Server`], "Graceful shutdown".
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Completes when the server has stopped, with what the shutdown did.
    pub async fn stopped(&self) -> ShutdownReport {
        let mut report = self.report.clone();
        // The sender lives until the report is sent; if the accept task
        // died (panicked), report what we know: nothing.
        match report.wait_for(Option::is_some).await {
            Ok(report) => report.unwrap_or_default(),
            Err(_) => ShutdownReport::default(),
        }
    }
}
