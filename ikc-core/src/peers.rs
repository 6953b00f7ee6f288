//! The connected peer kernels: each channel's handle under the peer's name
//! and every alias, registered as the channel starts and removed as it
//! ends, with a [`MonitorEvent`] each time.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, Weak};

use foldhash::fast::RandomState as FastHash;

use crate::channel::{ChannelHandle, Links};
use crate::monitor::{MonitorBus, MonitorEvent};
use crate::names::{Names, PeerInfo, RegisterError, kernel_name};

struct Table {
    peers: RwLock<HashMap<String, ChannelHandle, FastHash>>,
    /// This kernel's names, which no peer may take.
    names: Arc<Names>,
    monitor: MonitorBus,
}

/// A kernel's connected peers. Cheap to clone: clones share the table.
#[derive(Clone)]
pub(crate) struct Peers(Arc<Table>);

/// A reference to the peers that does not keep them alive.
#[derive(Clone)]
pub(crate) struct WeakPeers(Weak<Table>);

impl WeakPeers {
    pub(crate) fn upgrade(&self) -> Option<Peers> {
        self.0.upgrade().map(Peers)
    }
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("kernels", &self.kernels().len())
            .finish_non_exhaustive()
    }
}

impl Peers {
    pub(crate) fn new(names: Arc<Names>, monitor: MonitorBus) -> Self {
        Peers(Arc::new(Table {
            peers: RwLock::default(),
            names,
            monitor,
        }))
    }

    pub(crate) fn downgrade(&self) -> WeakPeers {
        WeakPeers(Arc::downgrade(&self.0))
    }

    /// Where the kernel announces what happens.
    pub(crate) fn monitor(&self) -> &MonitorBus {
        &self.0.monitor
    }

    /// The connected peer kernels, sorted by name.
    pub(crate) fn kernels(&self) -> Vec<PeerInfo> {
        let peers = self.read();
        let mut list: Vec<_> = peers
            .iter()
            .filter(|(name, handle)| **name == handle.peer().kernel)
            .map(|(_, handle)| handle.peer().clone())
            .collect();
        list.sort_by(|a, b| a.kernel.cmp(&b.kernel));
        list
    }

    /// The channel to the kernel called `name` (name or alias).
    pub(crate) fn get(&self, name: &str) -> Option<ChannelHandle> {
        self.read().get(name).cloned()
    }

    /// Every connected kernel's channel, once each.
    pub(crate) fn all(&self) -> Vec<ChannelHandle> {
        self.read()
            .iter()
            .filter(|(name, h)| **name == h.peer().kernel)
            .map(|(_, h)| h.clone())
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ChannelHandle, FastHash>> {
        self.0.peers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ChannelHandle, FastHash>> {
        self.0.peers.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Links for Peers {
    /// Adds a peer under its name and every alias, then announces it.
    fn register(&self, handle: &ChannelHandle) -> Result<(), RegisterError> {
        let info = handle.peer();
        for name in info.names() {
            kernel_name(name).map_err(RegisterError::BadName)?;
        }
        {
            let mut peers = self.write();
            // A second peer claiming a connected name is refused rather than
            // silently shadowing the first: calls would go to the wrong process.
            if let Some(name) = info
                .names()
                .find(|n| peers.contains_key(*n) || self.0.names.is_named(n))
            {
                return Err(RegisterError::NameTaken {
                    name: name.to_owned(),
                });
            }
            for name in info.names() {
                peers.insert(name.to_owned(), handle.clone());
            }
        }
        self.0.monitor.emit(MonitorEvent::Register {
            kernel: info.kernel.clone(),
            aliases: info.aliases.clone(),
            pid: info.pid,
        });
        Ok(())
    }

    /// Removes a registered peer, then announces it.
    fn unregister(&self, handle: &ChannelHandle) {
        let info = handle.peer();
        {
            let mut peers = self.write();
            for name in info.names() {
                if peers.get(name).is_some_and(|h| h.same_channel(handle)) {
                    peers.remove(name);
                }
            }
        }
        self.0.monitor.emit(MonitorEvent::Unregister {
            kernel: info.kernel.clone(),
        });
    }
}
