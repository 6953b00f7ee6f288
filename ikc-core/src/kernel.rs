//! [`Kernel`]: the local node, its published sessions and its connected peers.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState as FastHash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use ikc_proto::Value;
use tokio::sync::broadcast;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::channel::ChannelHandle;
use crate::monitor::{MONITOR_CAPACITY, Monitor, MonitorEvent};
use crate::router::{self, Destination};
use crate::specifier::{self, Part};
use crate::{
    BoxError, IkcError, KernelTarget, ParseSpecifierError, RemoteSession, Request, Router,
    Specifier,
};

/// The boxed form every published session is stored in.
pub type SessionService = BoxCloneSyncService<Request, Value, BoxError>;

/// Name of the session every kernel publishes about itself.
pub const IKC_SESSION: &str = "IKC";

/// What a kernel knows about a connected peer kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer kernel's name.
    pub kernel: String,
    /// Other names it answers to.
    pub aliases: Vec<String>,
    /// Its process id.
    pub pid: u32,
}

impl PeerInfo {
    /// The peer's name and aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.kernel.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// Why a peer could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A connected kernel (or this one) already uses one of the peer's names.
    #[error("kernel name {name:?} is already in use by a connected kernel")]
    NameTaken {
        /// The contested name.
        name: String,
    },
    /// The peer's name is not a valid kernel name.
    #[error("invalid kernel name")]
    BadName(#[source] ParseSpecifierError),
}

pub(crate) struct Published {
    events: HashSet<String, FastHash>,
    pub(crate) service: SessionService,
}

impl Published {
    pub(crate) fn allows(&self, event: &str) -> bool {
        self.events.contains(event)
    }
}

struct Inner {
    name: String,
    aliases: RwLock<Vec<String>>,
    pid: u32,
    sessions: RwLock<HashMap<String, Arc<Published>, FastHash>>,
    /// Bumped on every change to `sessions`, so a router can tell whether
    /// the services it holds are still the published ones.
    generation: AtomicU64,
    peers: RwLock<HashMap<String, ChannelHandle, FastHash>>,
    monitor: broadcast::Sender<MonitorEvent>,
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
            .field("name", &self.inner.name)
            .field(
                "aliases",
                &*self
                    .inner
                    .aliases
                    .read()
                    .unwrap_or_else(PoisonError::into_inner),
            )
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
        let name = kernel_name(name)?;
        let (monitor, _) = broadcast::channel(MONITOR_CAPACITY);
        let kernel = Kernel {
            inner: Arc::new(Inner {
                name,
                aliases: RwLock::default(),
                pid: std::process::id(),
                sessions: RwLock::default(),
                generation: AtomicU64::new(0),
                peers: RwLock::default(),
                monitor,
            }),
        };
        crate::builtin::publish(&kernel, None);
        Ok(kernel)
    }

    /// The kernel's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The kernel's aliases.
    #[must_use]
    pub fn aliases(&self) -> Vec<String> {
        self.inner
            .aliases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// This process's id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Adds an alias this kernel also answers to (a server adds its bound
    /// `ip:port`, as IKC does).
    ///
    /// # Errors
    ///
    /// When `alias` is not a valid kernel name.
    pub fn add_alias(&self, alias: &str) -> Result<(), ParseSpecifierError> {
        let alias = kernel_name(alias)?;
        let mut aliases = self
            .inner
            .aliases
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !aliases.contains(&alias) && alias != self.inner.name {
            aliases.push(alias);
        }
        Ok(())
    }

    /// Whether `name` is this kernel's name or one of its aliases.
    #[must_use]
    pub fn is_named(&self, name: &str) -> bool {
        name == self.inner.name
            || self
                .inner
                .aliases
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|a| a == name)
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
        let name = specifier::name(Part::Session, name)?;
        let events = events
            .into_iter()
            .map(|event| specifier::name(Part::Event, event.as_ref()))
            .collect::<Result<_, _>>()?;
        let service = BoxCloneSyncService::new(service.map_err(Into::into));
        let mut sessions = self
            .inner
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.insert(name, Arc::new(Published { events, service }));
        self.inner.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Lets connected kernels call `IKC/shutdown`, which calls `hook` (a
    /// server passes its graceful shutdown). Off by default: any peer could
    /// otherwise stop the kernel.
    pub fn allow_remote_shutdown(&self, hook: impl Fn() + Send + Sync + 'static) {
        crate::builtin::publish(self, Some(Arc::new(hook)));
    }

    /// Removes session `name`; returns whether it was published. Requests
    /// already running finish. A connection that called the session keeps
    /// its clone of the service until its next call to a local session or
    /// until it closes (see [`Router`](crate::Router)).
    pub fn retract(&self, name: &str) -> bool {
        let mut sessions = self
            .inner
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let removed = sessions.remove(name).is_some();
        self.inner.generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// The published sessions and their events, sorted.
    #[must_use]
    pub fn published(&self) -> Vec<(String, Vec<String>)> {
        let sessions = self
            .inner
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = sessions
            .iter()
            .map(|(name, published)| {
                let mut events: Vec<_> = published.events.iter().cloned().collect();
                events.sort();
                (name.clone(), events)
            })
            .collect();
        list.sort();
        list
    }

    /// Whether session `name` is published here.
    #[must_use]
    pub fn is_published(&self, name: &str) -> bool {
        self.inner
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }

    /// Changes with every publish or retract (see [`Router`]'s cache).
    pub(crate) fn sessions_generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    pub(crate) fn session(&self, name: &str) -> Option<Arc<Published>> {
        self.inner
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The connected peer kernels.
    #[must_use]
    pub fn kernels(&self) -> Vec<PeerInfo> {
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut list: Vec<_> = peers
            .iter()
            .filter(|(name, handle)| **name == handle.peer().kernel)
            .map(|(_, handle)| handle.peer().clone())
            .collect();
        list.sort_by(|a, b| a.kernel.cmp(&b.kernel));
        list
    }

    /// The channel to the connected kernel called `name` (name or alias).
    #[must_use]
    pub fn peer(&self, name: &str) -> Option<ChannelHandle> {
        self.inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub(crate) fn peers(&self) -> Vec<ChannelHandle> {
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        peers
            .iter()
            .filter(|(name, h)| **name == h.peer().kernel)
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Adds a peer under its name and every alias, then announces it.
    pub(crate) fn register(&self, handle: &ChannelHandle) -> Result<(), RegisterError> {
        let info = handle.peer();
        for name in info.names() {
            kernel_name(name).map_err(RegisterError::BadName)?;
        }
        {
            let mut peers = self
                .inner
                .peers
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            // A second peer claiming a connected name is refused rather than
            // silently shadowing the first: calls would go to the wrong process.
            if let Some(name) = info
                .names()
                .find(|n| peers.contains_key(*n) || self.is_named(n))
            {
                return Err(RegisterError::NameTaken {
                    name: name.to_owned(),
                });
            }
            for name in info.names() {
                peers.insert(name.to_owned(), handle.clone());
            }
        }
        self.emit(MonitorEvent::Register {
            kernel: info.kernel.clone(),
            aliases: info.aliases.clone(),
            pid: info.pid,
        });
        Ok(())
    }

    /// Removes a registered peer, then announces it.
    pub(crate) fn unregister(&self, handle: &ChannelHandle) {
        let info = handle.peer();
        {
            let mut peers = self
                .inner
                .peers
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for name in info.names() {
                if peers.get(name).is_some_and(|h| h.same_channel(handle)) {
                    peers.remove(name);
                }
            }
        }
        self.emit(MonitorEvent::Unregister {
            kernel: info.kernel.clone(),
        });
    }

    /// A stream of what happens to this kernel from now on.
    #[must_use]
    pub fn monitor(&self) -> Monitor {
        Monitor::new(self.inner.monitor.subscribe())
    }

    /// Announces `event` to every monitor.
    pub fn emit(&self, event: MonitorEvent) {
        // No monitor listening is the normal case, not an error.
        let _ = self.inner.monitor.send(event);
    }

    /// The tower service that dispatches requests for this kernel.
    #[must_use]
    pub fn router(&self) -> Router {
        Router::new(self.clone())
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
        let req = Request::post(target.clone(), arg);
        let Destination::Local(published) = router::resolve(self, &req)? else {
            return self.router().oneshot(req).await.map(drop);
        };
        // The session's failure is not the poster's: report it as a peer's
        // failing post is reported.
        if let Err(error) = published.service.clone().oneshot(req).await {
            let error = IkcError::from_box(error);
            tracing::warn!(%target, %error, "post failed");
            self.emit(MonitorEvent::Error {
                kernel: None,
                message: format!("post to {target} failed: {error}"),
            });
        }
        Ok(())
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

    pub(crate) fn downgrade(&self) -> WeakKernel {
        WeakKernel(Arc::downgrade(&self.inner))
    }
}

/// A kernel reference that does not keep it alive (for the built-in session).
#[derive(Clone)]
pub(crate) struct WeakKernel(Weak<Inner>);

impl WeakKernel {
    pub(crate) fn upgrade(&self) -> Option<Kernel> {
        self.0.upgrade().map(|inner| Kernel { inner })
    }
}

fn kernel_name(name: &str) -> Result<String, ParseSpecifierError> {
    if name == "*" {
        return Err(ParseSpecifierError::BadChar {
            part: Part::Kernel,
            ch: '*',
        });
    }
    specifier::name(Part::Kernel, name)
}
