//! The sessions a kernel publishes: each a boxed tower service and the
//! events it accepts, and a generation that changes with every publish or
//! retract (a [`Router`](crate::Router) keeps the services it calls while
//! the generation it saw holds).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use foldhash::fast::RandomState as FastHash;
use ikc_proto::Value;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::specifier::{self, Part};
use crate::{BoxError, ParseSpecifierError, Request};

/// The boxed form every published session is stored in.
pub type SessionService = BoxCloneSyncService<Request, Value, BoxError>;

/// One published session.
pub(crate) struct Published {
    events: HashSet<String, FastHash>,
    pub(crate) service: SessionService,
}

impl Published {
    pub(crate) fn allows(&self, event: &str) -> bool {
        self.events.contains(event)
    }
}

#[derive(Default)]
struct Table {
    sessions: RwLock<HashMap<String, Arc<Published>, FastHash>>,
    /// Bumped on every change to `sessions`.
    generation: AtomicU64,
}

/// A kernel's published sessions. Cheap to clone: clones share the table.
#[derive(Clone, Default)]
pub(crate) struct Sessions(Arc<Table>);

/// A reference to the sessions that does not keep them alive (for the
/// built-in session, which is one of them).
#[derive(Clone)]
pub(crate) struct WeakSessions(Weak<Table>);

impl WeakSessions {
    pub(crate) fn upgrade(&self) -> Option<Sessions> {
        self.0.upgrade().map(Sessions)
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Publishes `service` as session `name`, accepting `events`; a name
    /// published again is replaced.
    pub(crate) fn publish<S, E>(
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
        let mut sessions = self.write();
        sessions.insert(name, Arc::new(Published { events, service }));
        self.0.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Removes session `name`; whether it was published.
    pub(crate) fn retract(&self, name: &str) -> bool {
        let removed = self.write().remove(name).is_some();
        self.0.generation.fetch_add(1, Ordering::Release);
        removed
    }

    /// The published sessions and their events, sorted.
    pub(crate) fn list(&self) -> Vec<(String, Vec<String>)> {
        let sessions = self.read();
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

    pub(crate) fn is_published(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Published>> {
        self.read().get(name).cloned()
    }

    /// Changes with every publish or retract.
    pub(crate) fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    pub(crate) fn downgrade(&self) -> WeakSessions {
        WeakSessions(Arc::downgrade(&self.0))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Published>, FastHash>> {
        self.0
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Published>, FastHash>> {
        self.0
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
