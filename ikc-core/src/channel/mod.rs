//! Channels: one connected peer kernel, after the handshake.
//!
//! A channel runs over any [`Transport`] (a `Framed` socket with the ikc
//! frame codec, [`transport::Frames`](crate::transport::Frames) around any
//! `Sink + Stream` of frames, or [`transport::memory`](crate::transport::memory)
//! in tests). It is symmetric: both ends send requests and answer them.
//!
//! | module | the idea |
//! |---|---|
//! | `handle` | [`ChannelHandle`]: calls and posts to the peer; [`Target`] |
//! | `exchange` | the future of one call: into the call table, then its answer |
//! | `batch` | [`ChannelHandle::call_many`]: many calls of one target, one future and one waker |
//! | `calls` | the call table: insert, answer, expire, close; our side of the peer's `max_in_flight` |
//! | `ids` | the call table's entries by id: a slot per id modulo a power of two, no hashing |
//! | `outbox` | frames waiting for the transport, encoded as queued when the transport takes bytes: the one write path |
//! | `shared` | what the handles and the driver share: the call table and the handles' outbox under one lock |
//! | `callee` | the peer's requests: admission, waiting for the service, running, cancels, answers |
//! | `control` | keepalive, the deadline sweep, `GoAway`, `Ping`, `Subscribe` |
//! | `driver` | [`ChannelDriver`]: `poll_control; loop { poll_read; poll_write }; poll_flush` |
//! | `context` | [`ChannelContext`]: what a channel needs of its kernel |
//! | `remote` | [`RemoteSession`]: a subscribed session of the peer, as a service |
//! | `service` | [`ChannelHandle`] as a tower `Service<Request>` |
//! | `limits`, `keepalive` | what the peer announced; the silent-peer probe |
//!
//! [`Channel::builder`] registers the peer with the kernel and returns a
//! [`ChannelHandle`] (to call the peer) and a [`ChannelDriver`] (the future
//! that runs the connection; spawn it), in the manner of tower's
//! `Buffer::pair`.
//!
//! - Outgoing calls carry ids; the answer with the same id resolves them. A
//!   call past its deadline ends with `Timeout`, and the peer is told to drop
//!   the handler (`Cancel`); so is a caller that drops its call. When the
//!   connection ends, every pending call fails with `Disconnected` at once.
//! - Incoming requests run concurrently, up to
//!   [`ChannelBuilder::max_in_flight`]; above it the peer is answered
//!   `Overloaded` (with the retry hint of
//!   [`ChannelBuilder::overloaded_retry_after`]), never left waiting.
//! - Outgoing calls stay within the peer's own limit, announced in the
//!   handshake ([`ChannelBuilder::peer_limits`]): a call over it waits its
//!   turn in a queue of [`ChannelBuilder::max_queued_calls`], keeping its
//!   deadline, and a call that finds the queue full fails at once with
//!   `Overloaded`. Posts are not counted: they get no answer, so the
//!   channel cannot know when the peer is done with one.
//! - Each side probes a silent connection at its own
//!   [`ChannelBuilder::keepalive`] interval; the peer's announced interval
//!   changes nothing here (a `Ping` is answered at once whatever the
//!   answering side's own interval, so it never delays our verdict, and a
//!   peer cannot make us probe faster).
//! - Posts (id 0) get no answer; a failing post is logged and reported on
//!   the kernel's monitor bus.
//!
//! ```
//! use ikc_core::{Channel, Kernel, PeerInfo, Value, service_fn, transport::memory};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Kernel::new("Server");
//! server.publish("echo", ["say"], service_fn(|req: ikc_core::Request| async move {
//!     Ok::<_, ikc_core::BoxError>(req.into_arg())
//! }))?;
//! let client = Kernel::new("Client");
//!
//! let (a, b) = memory::pair(16);
//! let peer = |k: &Kernel| PeerInfo::new(k.name(), vec![], k.pid());
//! let (_, server_driver) = Channel::builder(server.clone()).connect(peer(&client), a)?;
//! let (to_server, client_driver) = Channel::builder(client.clone()).connect(peer(&server), b)?;
//! tokio::spawn(server_driver);
//! tokio::spawn(client_driver);
//!
//! let answer = to_server.call("poe://Server/echo/say", "hi").await?;
//! assert_eq!(answer, Value::from("hi"));
//! # Ok(())
//! # }
//! ```

mod batch;
mod callee;
mod calls;
mod context;
mod control;
mod driver;
mod exchange;
mod handle;
mod ids;
mod keepalive;
mod limits;
mod outbox;
mod remote;
mod service;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use self::callee::Callee;
pub use self::context::ChannelContext;
pub(crate) use self::context::Links;
use self::control::Control;
pub use self::driver::ChannelDriver;
use self::driver::Registration;
pub use self::handle::{ChannelHandle, Target};
pub use self::limits::{PeerLimits, keepalive_ms};
pub use self::remote::{Call, RemoteSession};
pub(crate) use self::shared::{CallLimits, Shared};
pub use crate::sessions::SessionService;
use crate::transport::Transport;
use crate::{BoxError, PeerInfo, RegisterError};

/// Default for [`ChannelBuilder::max_in_flight`]: 1024 requests.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Default for [`ChannelBuilder::keepalive`]: 30 seconds.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// Default for [`ChannelBuilder::call_timeout`]: 30 seconds.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default for [`ChannelBuilder::overloaded_retry_after`]: 20 milliseconds.
pub const DEFAULT_OVERLOADED_RETRY_AFTER: Duration = Duration::from_millis(20);

/// Default for [`ChannelBuilder::max_queued_calls`]: 1024 calls.
pub const DEFAULT_MAX_QUEUED_CALLS: usize = 1024;

/// Why a channel's driver stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Reading from the peer failed (a transport error, or a frame that
    /// could not be decoded; the peer was sent a `Protocol` error first).
    #[error("reading from the peer failed")]
    Read(#[source] BoxError),
    /// Writing to the peer failed.
    #[error("writing to the peer failed")]
    Write(#[source] BoxError),
    /// The peer sent nothing for `silent`, not even an answer to the
    /// keepalive's `Ping`: the channel dropped it.
    #[error("no frame from the peer for {silent:?}, not even an answer to Ping")]
    Silent {
        /// How long the peer was silent.
        silent: Duration,
    },
}

/// Builds channels; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct Channel;

impl Channel {
    /// A builder for channels of `kernel` (a [`Kernel`](crate::Kernel), or
    /// the [`ChannelContext`] one gives).
    #[must_use]
    pub fn builder(kernel: impl Into<ChannelContext>) -> ChannelBuilder {
        ChannelBuilder {
            service: None,
            context: kernel.into(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            max_frame_length: usize::MAX,
            keepalive: Some(DEFAULT_KEEPALIVE),
            overloaded_retry_after: DEFAULT_OVERLOADED_RETRY_AFTER,
            peer_limits: PeerLimits::default(),
            max_queued_calls: DEFAULT_MAX_QUEUED_CALLS,
        }
    }
}

/// Configures a channel before it connects.
#[derive(Debug, Clone)]
pub struct ChannelBuilder {
    context: ChannelContext,
    service: Option<SessionService>,
    max_in_flight: usize,
    call_timeout: Option<Duration>,
    max_frame_length: usize,
    keepalive: Option<Duration>,
    overloaded_retry_after: Duration,
    peer_limits: PeerLimits,
    max_queued_calls: usize,
}

impl ChannelBuilder {
    /// Requests from the peer this channel runs at once; more are answered
    /// `Overloaded`. Default: [`DEFAULT_MAX_IN_FLIGHT`] (1024). Posts count.
    #[must_use]
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// After this long without a frame from the peer, send it a `Ping`;
    /// when it stays silent as long again, it is gone (a half-open TCP
    /// connection, a frozen process): the channel closes and pending calls
    /// fail with `Disconnected`. Default: [`DEFAULT_KEEPALIVE`] (30 s);
    /// `None` (or zero) never probes. The peer's own interval
    /// ([`PeerLimits::keepalive`]) does not change it: see the
    /// [module docs](self).
    #[must_use]
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval.filter(|i| !i.is_zero());
        self
    }

    /// The retry hint sent with `Overloaded` when the peer has more
    /// requests running than [`max_in_flight`](Self::max_in_flight), and
    /// given with the `Overloaded` of a call of ours that finds the queue
    /// of [`max_queued_calls`](Self::max_queued_calls) full. Default:
    /// [`DEFAULT_OVERLOADED_RETRY_AFTER`] (20 ms).
    #[must_use]
    pub fn overloaded_retry_after(mut self, hint: Duration) -> Self {
        self.overloaded_retry_after = hint;
        self
    }

    /// What the peer announced in the handshake. Its `max_in_flight` bounds
    /// our calls at the peer at once: a call over it waits in a queue (see
    /// [`max_queued_calls`](Self::max_queued_calls)) until an answer makes
    /// room, instead of being answered `Overloaded` by the peer. Its
    /// frame limit applies through [`max_frame_length`](Self::max_frame_length),
    /// and the rest is for [`ChannelHandle::peer_limits`]. Default: nothing
    /// announced, no limit.
    #[must_use]
    pub fn peer_limits(mut self, limits: PeerLimits) -> Self {
        self.peer_limits = limits;
        self
    }

    /// Calls that wait for room under the peer's `max_in_flight` (see
    /// [`peer_limits`](Self::peer_limits)); a call that finds them all taken
    /// fails at once with `Overloaded` and the retry hint of
    /// [`overloaded_retry_after`](Self::overloaded_retry_after). A waiting
    /// call keeps its deadline: past it, it answers `Timeout` without ever
    /// being sent. Default: [`DEFAULT_MAX_QUEUED_CALLS`] (1024); 0 fails
    /// every call over the limit at once.
    #[must_use]
    pub fn max_queued_calls(mut self, calls: usize) -> Self {
        self.max_queued_calls = calls;
        self
    }

    /// The largest frame we may send: the smaller of our codec's maximum
    /// and the one the peer announced in the handshake. A call or post
    /// bigger than that fails with `BadRequest` before it is sent, and a
    /// reply bigger than that is answered with a `Protocol` error instead,
    /// so the connection survives. Default: no limit.
    #[must_use]
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// How long our calls over this channel wait for an answer before
    /// `Timeout`. Default: [`DEFAULT_CALL_TIMEOUT`] (30 s); `None` waits
    /// until the connection ends.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The service that handles the peer's requests. Default: the kernel's
    /// [`Router`](crate::Router). Pass the router wrapped in tower layers to
    /// add request middleware (timeouts, concurrency limits, tracing...).
    #[must_use]
    pub fn service(mut self, service: SessionService) -> Self {
        self.service = Some(service);
        self
    }

    /// Registers `peer` with the kernel and returns the channel's handle and
    /// driver. The peer is announced (`Register`) before the driver reads
    /// its first request.
    ///
    /// # Errors
    ///
    /// [`RegisterError::NameTaken`] when a connected kernel (or this one)
    /// already uses one of the peer's names.
    pub fn connect<T: Transport>(
        self,
        peer: PeerInfo,
        transport: T,
    ) -> Result<(ChannelHandle, ChannelDriver<T>), RegisterError> {
        Ok(self.register(peer)?.connect(transport))
    }

    /// Registers `peer` without a transport yet: a server does this before it
    /// answers the handshake, so a name conflict can still be refused.
    /// Dropping the [`Registered`] unregisters the peer.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn register(self, peer: PeerInfo) -> Result<Registered, RegisterError> {
        let limits = CallLimits {
            peer: self.peer_limits,
            max_queued: self.max_queued_calls,
            retry_after: self.overloaded_retry_after,
        };
        let handle = ChannelHandle::new(Arc::new(Shared::new(
            peer,
            self.call_timeout,
            self.max_frame_length,
            limits,
        )));
        self.context.links.register(&handle)?;
        let registration = Registration {
            context: self.context.clone(),
            handle,
        };
        Ok(Registered {
            builder: self,
            registration,
        })
    }
}

/// A peer registered with the kernel, waiting for its transport; from
/// [`ChannelBuilder::register`].
#[derive(Debug)]
pub struct Registered {
    builder: ChannelBuilder,
    registration: Registration,
}

impl Registered {
    /// The handle the channel will have.
    #[must_use]
    pub fn handle(&self) -> &ChannelHandle {
        &self.registration.handle
    }

    /// Starts the channel over `transport`. Over one that
    /// [takes encoded frames](Transport::takes_encoded), the handles write
    /// each call's frame themselves as they queue it, straight from its
    /// target and argument, and the driver writes its replies straight from
    /// their values: a call costs no `pb::Frame` built, queued, moved,
    /// encoded and dropped. Frames reach the wire in the order they were
    /// queued.
    pub fn connect<T: Transport>(self, transport: T) -> (ChannelHandle, ChannelDriver<T>) {
        let Registered {
            builder,
            registration,
        } = self;
        let service = builder
            .service
            .unwrap_or_else(|| builder.context.router.clone());
        let handle = registration.handle.clone();
        let callee = Callee::new(
            service,
            builder.max_in_flight,
            builder.overloaded_retry_after,
            Arc::clone(handle.peer_arc()),
            builder.context.clone(),
        );
        let control = Control::new(builder.keepalive);
        let driver = ChannelDriver::new(transport, registration, callee, control);
        (handle, driver)
    }
}
