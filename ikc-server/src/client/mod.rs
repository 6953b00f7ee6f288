//! [`Client`]: connects a kernel to an ikc server and calls its sessions.
//!
//! ```no_run
//! use ikc_server::Client;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("127.0.0.1:6030").await?;
//! let answer = client.call("echo/say", "hello").await?; // the server's echo/say
//! println!("{answer:?}");
//! client.post("poe://Server/echo/say", "fire and forget").await?;
//! # Ok(())
//! # }
//! ```
//!
//! The connection is symmetric: sessions the client publishes
//! ([`Client::publish`]) can be called by the server, and by other clients
//! through the server.
//!
//! # Limits
//!
//! The handshake carries each side's limits. The client keeps its calls at
//! the server within the server's `max_in_flight`; calls beyond it wait
//! their turn (up to [`ClientBuilder::max_queued_calls`], each keeping its
//! timeout) instead of being answered `Overloaded`. It announces its own
//! [`max_in_flight`](ClientBuilder::max_in_flight) for the server's calls
//! to the sessions it publishes, and its
//! [`keepalive`](ClientBuilder::keepalive) interval; each side probes a
//! silent connection at its own interval.

mod connect;
mod service;

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::Either;
use ikc_core::{
    BoxError, ChannelHandle, ErrorKind as CallErrorKind, IkcError, Kernel, PeerInfo, RemoteSession,
    Request, Specifier, Value,
};
use ikc_proto::codec::DEFAULT_MAX_FRAME_LENGTH;
use tower::Service;

use self::connect::{Connected, establish};
use crate::error::{Error, TransportErrorKind};
use crate::handshake::DEFAULT_HANDSHAKE_TIMEOUT;
use crate::handshake::Secret;
#[cfg(feature = "tls")]
use crate::tls::ClientTls;

/// Default first pause before a reconnect attempt: 100 ms.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);

/// Default longest pause between reconnect attempts: 5 s.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Default for [`ClientBuilder::connect_timeout`]: 10 s, from the start of
/// the connect to the server's `Welcome`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a client reconnects after its connection ends: pauses that double
/// from `min` up to `max`, forever, until the client is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// The first pause.
    pub min: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            min: DEFAULT_RECONNECT_MIN,
            max: DEFAULT_RECONNECT_MAX,
        }
    }
}

/// Configures a [`Client`] before it connects.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    pub(crate) kernel: Option<Kernel>,
    pub(crate) name: Option<String>,
    aliases: Vec<String>,
    pub(crate) call_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    handshake_timeout: Duration,
    max_frame_length: usize,
    keepalive: Option<Duration>,
    max_in_flight: usize,
    max_queued_calls: usize,
    overloaded_retry_after: Duration,
    pub(crate) reconnect: Option<Reconnect>,
    #[cfg_attr(not(feature = "perl"), allow(dead_code))]
    legacy: bool,
    secret: Option<Secret>,
    #[cfg(feature = "tls")]
    tls: Option<ClientTls>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            kernel: None,
            name: None,
            aliases: Vec::new(),
            call_timeout: Some(ikc_core::channel::DEFAULT_CALL_TIMEOUT),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            keepalive: Some(ikc_core::channel::DEFAULT_KEEPALIVE),
            max_in_flight: ikc_core::channel::DEFAULT_MAX_IN_FLIGHT,
            max_queued_calls: ikc_core::channel::DEFAULT_MAX_QUEUED_CALLS,
            overloaded_retry_after: ikc_core::channel::DEFAULT_OVERLOADED_RETRY_AFTER,
            reconnect: None,
            secret: None,
            #[cfg(feature = "tls")]
            tls: None,
            legacy: false,
        }
    }
}

impl ClientBuilder {
    /// Connects this kernel (with its published sessions). Without it the
    /// client makes one named [`name`](Self::name).
    pub fn kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// The client kernel's name. Default: `client-PID-N`, unique per
    /// process.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds an alias of the client kernel.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// How long a call waits for its answer before `Timeout`. Default: 30 s;
    /// `None` waits until the connection ends.
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long one connection attempt may take, from the start of the
    /// connect to the server's `Welcome`: name resolution and the TCP or
    /// Unix socket connect, the TLS handshake, and the ikc handshake (or the
    /// Perl IKC negotiation with [`legacy`](Self::legacy)) share this one
    /// deadline. Past it the attempt fails with [`TransportErrorKind::Timeout`],
    /// whose message names the address, the step under way and the timeout.
    /// Each reconnect attempt ([`reconnect`](Self::reconnect)) gets the same
    /// bound. A refused connect fails at once with [`TransportErrorKind::Connect`].
    /// Default: [`DEFAULT_CONNECT_TIMEOUT`], 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server has to answer the ikc handshake (or the Perl IKC
    /// negotiation), once connected; past it the attempt fails with
    /// [`TransportErrorKind::Handshake`]. The [connect
    /// timeout](Self::connect_timeout) still bounds the whole attempt,
    /// handshake included: whichever ends first ends it. Default: 5 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Largest frame accepted or sent, in bytes. Default: 16 MiB.
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// How long the connection may stay silent before the client sends the
    /// server a `Ping`; when it stays silent as long again, the connection
    /// is dropped and pending calls fail with `Disconnected` (a reconnecting
    /// client then reconnects). Announced in `Hello`; the server probes at
    /// its own interval, which does not change the client's. Default:
    /// [`DEFAULT_KEEPALIVE`](ikc_core::channel::DEFAULT_KEEPALIVE) (30 s);
    /// `None` (or zero) never probes.
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval.filter(|i| !i.is_zero());
        self
    }

    /// Requests from the server (to sessions the client
    /// [publishes](Client::publish)) run at once; more are answered
    /// `Overloaded` with the
    /// [`overloaded_retry_after`](Self::overloaded_retry_after) hint.
    /// Announced in `Hello`, so the server keeps its calls within it.
    /// Default: [`DEFAULT_MAX_IN_FLIGHT`](ikc_core::channel::DEFAULT_MAX_IN_FLIGHT)
    /// (1024).
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Calls that wait their turn when the server already runs as many of
    /// ours as it announced it would (its `max_in_flight`): the client never
    /// has more calls at the server than that, so the server never answers
    /// them `Overloaded`. A waiting call keeps its timeout (past it, it is a
    /// `Timeout`, never sent); a call that finds this many waiting fails at
    /// once with `Overloaded` and the
    /// [`overloaded_retry_after`](Self::overloaded_retry_after) hint. Posts
    /// neither wait nor count (they get no answer, so the client cannot know
    /// when the server is done with one). Default:
    /// [`DEFAULT_MAX_QUEUED_CALLS`](ikc_core::channel::DEFAULT_MAX_QUEUED_CALLS)
    /// (1024); 0 fails every call over the server's limit at once.
    pub fn max_queued_calls(mut self, calls: usize) -> Self {
        self.max_queued_calls = calls;
        self
    }

    /// The retry hint given with `Overloaded`: to the server when it has
    /// more than [`max_in_flight`](Self::max_in_flight) requests running
    /// here, and to our own callers when the queue of
    /// [`max_queued_calls`](Self::max_queued_calls) is full. Default:
    /// [`DEFAULT_OVERLOADED_RETRY_AFTER`](ikc_core::channel::DEFAULT_OVERLOADED_RETRY_AFTER)
    /// (20 ms).
    pub fn overloaded_retry_after(mut self, hint: Duration) -> Self {
        self.overloaded_retry_after = hint;
        self
    }

    /// Speaks Perl POE::Component::IKC's protocol, to call the sessions a
    /// Perl IKC server publishes: the IKC0 `SETUP` negotiation as ClientLite
    /// does it (falling back to the old dialect when refused), then
    /// Storable messages; see [`legacy`](crate::legacy). Default: off.
    #[cfg(feature = "perl")]
    #[cfg_attr(docsrs, doc(cfg(feature = "perl")))]
    pub fn legacy(mut self, legacy: bool) -> Self {
        self.legacy = legacy;
        self
    }

    /// Reconnects after the connection ends, with capped backoff. Default:
    /// off (calls after a disconnect fail with `Disconnected`). While
    /// reconnecting, calls fail with `Disconnected` rather than wait.
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = Some(reconnect);
        self
    }

    #[cfg(feature = "auth")]
    #[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
    /// Proves to the server that this client knows `secret`, and requires
    /// the server to prove it too (see [`auth`](crate::auth)). Default:
    /// none.
    pub fn secret(mut self, secret: Secret) -> Self {
        self.secret = Some(secret);
        self
    }

    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    /// Speaks TLS to the server, trusting these roots (see
    /// [`tls`](crate::tls)); the server's certificate must name the host or
    /// IP address in `addr`. Default: plain TCP.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The pauses between a balanced member's attempts to connect.
    pub(crate) fn reconnect_pauses(&self) -> (Duration, Duration) {
        let pauses = self.reconnect.unwrap_or_default();
        (pauses.min, pauses.max)
    }

    /// Connects to `addr`: `host:port`, or `unix:PATH`.
    ///
    /// # Errors
    ///
    /// [`TransportErrorKind::Connect`] when the server cannot be reached,
    /// [`TransportErrorKind::Timeout`] when it does not answer within the [connect
    /// timeout](Self::connect_timeout),
    /// [`TransportErrorKind::Refused`] (with the server's reason) or
    /// [`TransportErrorKind::Version`] when it refuses the handshake,
    /// [`TransportErrorKind::Handshake`] when the handshake fails or outlasts the
    /// [handshake timeout](Self::handshake_timeout).
    pub async fn connect(self, addr: &str) -> Result<Client, Error> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let kernel = match (self.kernel.clone(), &self.name) {
            (Some(kernel), _) => kernel,
            (None, Some(name)) => Kernel::try_new(name).map_err(|e| {
                Error::new(TransportErrorKind::Config, "invalid kernel name").with_source(e)
            })?,
            (None, None) => {
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                Kernel::new(&format!("client-{}-{n}", std::process::id()))
            }
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
        let connected = establish(&kernel, addr, &self).await?;
        let fixed = self.reconnect.is_none().then(|| connected.handle.clone());
        let inner = Arc::new(Inner {
            kernel,
            addr: addr.to_owned(),
            settings: self,
            fixed,
            current: RwLock::new(connected),
        });
        if let Some(reconnect) = inner.settings.reconnect {
            tokio::spawn(reconnect_loop(Arc::downgrade(&inner), reconnect));
        }
        Ok(Client { inner })
    }
}

#[derive(Debug)]
struct Inner {
    kernel: Kernel,
    addr: String,
    settings: ClientBuilder,
    /// The connection's channel when the client never reconnects: calls
    /// borrow it, without the lock and the handle's clone a call takes
    /// otherwise.
    fixed: Option<ChannelHandle>,
    current: RwLock<Connected>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last clone is gone, so nobody can use or close the connection
        // any more: close it gracefully instead of leaving the server holding
        // it (and one of its connection slots) until it restarts.
        self.current
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .handle
            .go_away();
    }
}

impl Inner {
    fn connected(&self) -> Connected {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Where a client sends a call.
enum Route {
    /// Over the connection, to the server (which may forward it).
    Server,
    /// To a session of the client's own kernel.
    Local(Specifier),
}

/// A kernel connected to an ikc server. Cheap to clone; dropping the last
/// clone closes the connection as [`close`](Client::close) does (handles and
/// remote sessions taken from it then answer `ShuttingDown`).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// A builder for clients.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `addr` (`host:port` or `unix:PATH`) with the defaults.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub async fn connect(addr: &str) -> Result<Client, Error> {
        Client::builder().connect(addr).await
    }

    /// Connects to a Perl POE::Component::IKC server at `addr` with the
    /// defaults; see [`ClientBuilder::legacy`].
    ///
    /// ```no_run
    /// use ikc_server::Client;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let perl = Client::connect_legacy("127.0.0.1:603").await?;
    /// let answer = perl.call("echo/say", "hello").await?;
    /// println!("{answer:?}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    #[cfg(feature = "perl")]
    #[cfg_attr(docsrs, doc(cfg(feature = "perl")))]
    pub async fn connect_legacy(addr: &str) -> Result<Client, Error> {
        Client::builder().legacy(true).connect(addr).await
    }

    /// The client's own kernel.
    #[must_use]
    pub fn kernel(&self) -> &Kernel {
        &self.inner.kernel
    }

    /// The server kernel (name, aliases, pid) of the current connection.
    #[must_use]
    pub fn server(&self) -> PeerInfo {
        self.inner.connected().handle.peer().clone()
    }

    /// The pre-forked worker number that accepted the current connection
    /// (0 for a single-process server).
    #[must_use]
    pub fn worker(&self) -> u32 {
        self.inner.connected().worker
    }

    /// The channel of the current connection.
    #[must_use]
    pub fn handle(&self) -> ChannelHandle {
        match &self.inner.fixed {
            Some(handle) => handle.clone(),
            None => self.inner.connected().handle,
        }
    }

    /// Whether the current connection has ended.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.handle().is_closed()
    }

    /// Where `target` goes: a target naming the client's own kernel runs
    /// here; any other goes to the server as written (the server parses it,
    /// routes it to another kernel it knows, and takes a target without a
    /// kernel part as its own session).
    fn route(&self, target: &str) -> Route {
        let kernel = match target.strip_prefix("poe://") {
            Some(rest) => rest.split('/').next(),
            // `kernel/session/event` names a kernel; `session/event` does not.
            None if target.bytes().filter(|&b| b == b'/').nth(1).is_some() => {
                target.split('/').next()
            }
            None => None,
        };
        match kernel {
            Some(kernel) if self.inner.kernel.is_named(kernel) => match target.parse() {
                Ok(spec) => Route::Local(spec),
                // Malformed: let the server answer BadRequest like any other.
                Err(_) => Route::Server,
            },
            _ => Route::Server,
        }
    }

    /// Calls `target` and waits for the answer (at most the call timeout).
    /// `session/event` means the server's session; `poe://kernel/...` any
    /// kernel the server can reach, or the client's own.
    ///
    /// # Errors
    ///
    /// The typed error the call ended with.
    pub fn call<'a>(
        &'a self,
        target: &'a str,
        arg: impl Into<Value>,
    ) -> impl Future<Output = Result<Value, IkcError>> + Send + 'a {
        let arg = arg.into();
        match (self.route(target), &self.inner.fixed) {
            // The channel's own future, not one wrapped around it: a call's
            // arguments are copied once, not once per layer.
            (Route::Server, Some(handle)) => Either::Left(handle.call(target, arg)),
            // Rare, and boxed: they would make every call's future as large
            // as theirs. A client that reconnects finds its channel per call.
            (Route::Server, None) => {
                Either::Right(async move { self.handle().call(target, arg).await }.boxed())
            }
            (Route::Local(spec), _) => {
                Either::Right(async move { self.inner.kernel.call(&spec, arg).await }.boxed())
            }
        }
    }

    /// Calls `target` once with each of `args`, and waits for every answer
    /// (each at most the call timeout), in the order of `args`: the calls
    /// of [`call`](Self::call) in one batch, sent under one lock and waited
    /// for by one future (`ChannelHandle::call_many`). For a caller that
    /// has many calls of one event to make at once: `ikc bench --batch`.
    ///
    /// # Errors
    ///
    /// Each answer is the typed error its call ended with, or its value.
    pub async fn call_many<I>(&self, target: &str, args: I) -> Vec<Result<Value, IkcError>>
    where
        I: IntoIterator<Item = Value>,
        I::IntoIter: Send,
    {
        match self.route(target) {
            Route::Server => self.handle().call_many(target, args).await,
            Route::Local(spec) => {
                let calls = args
                    .into_iter()
                    .map(|arg| self.inner.kernel.call(&spec, arg));
                futures::future::join_all(calls).await
            }
        }
    }

    /// Calls `target` with its own timeout.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_timeout(
        &self,
        target: &str,
        arg: impl Into<Value>,
        timeout: Duration,
    ) -> Result<Value, IkcError> {
        match self.route(target) {
            Route::Server => {
                self.handle()
                    .call_timeout(target, arg.into(), timeout)
                    .await
            }
            Route::Local(spec) => {
                tokio::time::timeout(timeout, self.inner.kernel.call(&spec, arg.into()))
                    .await
                    .unwrap_or_else(|_| {
                        Err(IkcError::new(
                            CallErrorKind::Timeout,
                            format!("no answer within {timeout:?}"),
                        ))
                    })
            }
        }
    }

    /// Posts to `target`: sent, and nobody waits for an answer.
    ///
    /// # Errors
    ///
    /// When the connection is closed, or the target cannot be reached.
    pub async fn post(&self, target: &str, arg: impl Into<Value>) -> Result<(), IkcError> {
        match self.route(target) {
            Route::Server => self.handle().post(target, arg).await,
            Route::Local(spec) => self.inner.kernel.post(&spec, arg.into()).await,
        }
    }

    /// Subscribes to a session of the server: `poe://Server/calc`, or just
    /// `calc`.
    ///
    /// # Errors
    ///
    /// `NoSession` when the server does not publish it, `BadRequest` for a
    /// malformed target, or the connection's error.
    pub async fn subscribe(&self, target: &str) -> Result<RemoteSession, IkcError> {
        let handle = self.handle();
        let session = match target.strip_prefix("poe://") {
            Some(rest) => {
                let spec: Specifier =
                    target.parse().map_err(|e: ikc_core::ParseSpecifierError| {
                        IkcError::new(
                            CallErrorKind::BadRequest,
                            format!("bad target {rest:?}: {e}"),
                        )
                    })?;
                spec.session().to_owned()
            }
            None => target.to_owned(),
        };
        handle.subscribe(&session).await
    }

    /// Publishes a session on the client's kernel, so the server (and other
    /// clients through it) can call it. See [`Kernel::publish`].
    ///
    /// # Errors
    ///
    /// When a name is invalid.
    pub fn publish<S, E>(
        &self,
        name: &str,
        events: impl IntoIterator<Item = E>,
        service: S,
    ) -> Result<(), ikc_core::ParseSpecifierError>
    where
        S: Service<Request, Response = Value> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        E: AsRef<str>,
    {
        self.inner.kernel.publish(name, events, service)
    }

    /// Closes the connection gracefully: the server gets `GoAway`, calls in
    /// flight are answered, then the connection closes. Dropping the last
    /// clone does the same. A reconnecting client stops reconnecting once
    /// every clone is dropped.
    pub fn close(&self) {
        self.handle().go_away();
    }

    /// Completes when the current connection has ended.
    pub async fn closed(&self) {
        self.handle().closed().await;
    }
}

async fn reconnect_loop(client: Weak<Inner>, policy: Reconnect) {
    loop {
        let Some(handle) = client.upgrade().map(|inner| inner.connected().handle) else {
            return;
        };
        handle.closed().await;
        drop(handle);
        let mut pause = policy.min;
        loop {
            let Some(inner) = client.upgrade() else {
                return;
            };
            match establish(&inner.kernel, &inner.addr, &inner.settings).await {
                Ok(connected) => {
                    tracing::info!(addr = %inner.addr, "reconnected");
                    *inner
                        .current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = connected;
                    break;
                }
                Err(error) => {
                    tracing::debug!(addr = %inner.addr, %error, ?pause, "reconnect failed");
                }
            }
            drop(inner);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(policy.max);
        }
    }
}
