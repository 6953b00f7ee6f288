//! [`Kernel`]: the local node, a thin facade over its parts: its names
//! ([`names`](crate::names)), published sessions ([`sessions`](crate::sessions)),
//! connected peers ([`peers`](crate::peers)), monitor bus, and the router
//! and channel context made of them.

use std::sync::Arc;

use ikc_proto::Value;
use tower::{Service, ServiceExt};

use crate::channel::ChannelContext;
use crate::monitor::{Monitor, MonitorBus, MonitorEvent};
use crate::names::{Names, PeerInfo};
use crate::peers::Peers;
use crate::router::Routes;
use crate::sessions::{SessionService, Sessions};
use crate::{
    BoxError, ChannelHandle, IkcError, KernelTarget, ParseSpecifierError, RemoteSession, Request,
    Router, Specifier,
};

struct Inner {
    routes: Routes,
    monitor: MonitorBus,
    /// What each of the kernel's channels is given.
    channels: ChannelContext,
}

/// The local node: a name, aliases, the published sessions, the connected
/// peer kernels and the monitor bus. Cheap to clone: clones share all of it.
///
/// ```
/// use ikc_core::{Kernel, Request, Value, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let kernel = Kernel::new("Server");
/// kernel.publish(
///     "echo",
///     ["say"],
///     service_fn(|req: Request| async move { Ok::<_, ikc_core::BoxError>(req.into_arg()) }),
/// )?;
/// let answer = kernel.call(&"echo/say".parse()?, Value::from("hi")).await?;
/// assert_eq!(answer, Value::from("hi"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Kernel {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.name())
            .field("aliases", &self.aliases())
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// A kernel named `name`, publishing only the built-in `IKC` session.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid kernel name (empty, over 256 bytes, with
    /// `/`, whitespace or control characters); use [`Kernel::try_new`] for
    /// names that come from outside.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self::try_new(name).expect("kernel name must be valid")
    }

    /// A kernel named `name`, publishing only the built-in `IKC` session.
    ///
    /// # Errors
    ///
    /// When `name` is not a valid kernel name.
    pub fn try_new(name: &str) -> Result<Self, ParseSpecifierError> {
        let names = Arc::new(Names::new(name)?);
        let monitor = MonitorBus::new();
        let sessions = Sessions::default();
        let peers = Peers::new(Arc::clone(&names), monitor.clone());
        let routes = Routes {
            names: Arc::clone(&names),
            sessions: sessions.clone(),
            peers: peers.clone(),
        };
        let channels = ChannelContext {
            monitor: monitor.clone(),
            sessions,
            router: SessionService::new(Router::new(routes.clone()).map_err(BoxError::from)),
            links: Arc::new(peers),
            name: Arc::from(names.name()),
        };
        crate::builtin::publish(&routes, None);
        Ok(Kernel {
            inner: Arc::new(Inner {
                routes,
                monitor,
                channels,
            }),
        })
    }

    fn names(&self) -> &Names {
        &self.inner.routes.names
    }

    /// The kernel's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.names().name()
    }

    /// The kernel's aliases.
    #[must_use]
    pub fn aliases(&self) -> Vec<String> {
        self.names().aliases()
    }

    /// This process's id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.names().pid()
    }

    /// Adds an alias this kernel also answers to (a server adds its bound
    /// `ip:port`, as IKC does).
    ///
    /// # Errors
    ///
    /// When `alias` is not a valid kernel name.
    pub fn add_alias(&self, alias: &str) -> Result<(), ParseSpecifierError> {
        self.names().add_alias(alias)
    }

    /// Whether `name` is this kernel's name or one of its aliases.
    #[must_use]
    pub fn is_named(&self, name: &str) -> bool {
        self.names().is_named(name)
    }

    /// Publishes `service` as session `name`, accepting `events`. A request
    /// for any other event is answered `NoEvent` without reaching the
    /// service. Publishing a name again replaces the session.
    ///
    /// The service is any tower `Service<Request, Response = Value>` that is
    /// `Clone` (each request calls a clone, so a slow request never blocks
    /// another); its error converts into a boxed error and reaches the caller
    /// as a `Handler` error (or `BadRequest` for a
    /// [`ValueError`](ikc_proto::ValueError)).
    ///
    /// # Errors
    ///
    /// When `name` or an event is not a valid name.
    pub fn publish<S, E>(
        &self,
        name: &str,
        events: impl IntoIterator<Item = E>,
        service: S,
    ) -> Result<(), ParseSpecifierError>
    where
        S: Service<Request, Response = Value> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        E: AsRef<str>,
    {
        self.inner.routes.sessions.publish(name, events, service)
    }

    /// Lets connected kernels call `IKC/shutdown`, which calls `hook` (a
    /// server passes its graceful shutdown). Off by default: any peer could
    /// otherwise stop the kernel.
    pub fn allow_remote_shutdown(&self, hook: impl Fn() + Send + Sync + 'static) {
        crate::builtin::publish(&self.inner.routes, Some(Arc::new(hook)));
    }

    /// Removes session `name`; returns whether it was published. Requests
    /// already running finish. A connection that called the session keeps
    /// its clone of the service until its next call to a local session or
    /// until it closes (see [`Router`](crate::Router)).
    #[expect(
        clippy::must_use_candidate,
        reason = "retracting is the point; whether it was published is extra"
    )]
    pub fn retract(&self, name: &str) -> bool {
        self.inner.routes.sessions.retract(name)
    }

    /// The published sessions and their events, sorted.
    #[must_use]
    pub fn published(&self) -> Vec<(String, Vec<String>)> {
        self.inner.routes.sessions.list()
    }

    /// Whether session `name` is published here.
    #[must_use]
    pub fn is_published(&self, name: &str) -> bool {
        self.inner.routes.sessions.is_published(name)
    }

    /// The connected peer kernels.
    #[must_use]
    pub fn kernels(&self) -> Vec<PeerInfo> {
        self.inner.routes.peers.kernels()
    }

    /// The channel to the connected kernel called `name` (name or alias).
    #[must_use]
    pub fn peer(&self, name: &str) -> Option<ChannelHandle> {
        self.inner.routes.peers.get(name)
    }

    /// A stream of what happens to this kernel from now on.
    #[must_use]
    pub fn monitor(&self) -> Monitor {
        self.inner.monitor.subscribe()
    }

    /// Announces `event` to every monitor.
    pub fn emit(&self, event: MonitorEvent) {
        self.inner.monitor.emit(event);
    }

    /// The tower service that dispatches requests for this kernel.
    #[must_use]
    pub fn router(&self) -> Router {
        Router::new(self.inner.routes.clone())
    }

    /// Calls `target` (local or on a connected kernel) and waits for the answer.
    ///
    /// # Errors
    ///
    /// The typed error the call ended with.
    pub async fn call(&self, target: &Specifier, arg: Value) -> Result<Value, IkcError> {
        self.router()
            .oneshot(Request::call(target.clone(), arg))
            .await
    }

    /// Posts to `target`: delivered, but nobody waits for an answer. A post
    /// to a local session returns once the session has handled it.
    ///
    /// # Errors
    ///
    /// When the target cannot be reached (unknown kernel, session or event);
    /// a failure of the session itself is only logged and reported on the
    /// monitor bus as [`MonitorEvent::Error`].
    pub async fn post(&self, target: &Specifier, arg: Value) -> Result<(), IkcError> {
        self.inner.routes.post(target, arg).await
    }

    /// Checks that the connected kernel named in `target`
    /// (`poe://kernel/session`) publishes the session, and returns a handle
    /// to call it.
    ///
    /// # Errors
    ///
    /// `NoKernel` when the kernel is not connected, `NoSession` when it does
    /// not publish the session, `Disconnected` or `Timeout` when the
    /// connection fails meanwhile.
    pub async fn subscribe(&self, target: &Specifier) -> Result<RemoteSession, IkcError> {
        let KernelTarget::Named(kernel) = target.kernel() else {
            return Err(IkcError::new(
                crate::ErrorKind::BadRequest,
                "subscribe needs a kernel name: poe://kernel/session",
            ));
        };
        let handle = self
            .peer(kernel)
            .ok_or_else(|| IkcError::no_kernel(kernel))?;
        handle.subscribe(target.session()).await
    }
}

/// A kernel's channels get what they need of it: `Channel::builder(kernel)`.
impl From<Kernel> for ChannelContext {
    fn from(kernel: Kernel) -> Self {
        kernel.inner.channels.clone()
    }
}

impl From<&Kernel> for ChannelContext {
    fn from(kernel: &Kernel) -> Self {
        kernel.inner.channels.clone()
    }
}
