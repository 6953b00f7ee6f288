//! Who a kernel is: its own names ([`Names`]), what it knows of a peer
//! ([`PeerInfo`]), and the rule for a valid kernel name.

use std::sync::{PoisonError, RwLock};

use crate::ParseSpecifierError;
use crate::identity::Identity;
use crate::specifier::{self, Part};

/// What a kernel knows about a connected peer kernel: the names and pid
/// its handshake claimed, and the [`Identity`] the connection proved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer kernel's name.
    pub kernel: String,
    /// Other names it answers to.
    pub aliases: Vec<String>,
    /// Its process id.
    pub pid: u32,
    /// Who the peer proved it is (empty when it proved nothing).
    pub identity: Identity,
}

impl PeerInfo {
    /// A peer kernel named `kernel`, also answering to `aliases`, in
    /// process `pid`, that proved nothing yet.
    #[must_use]
    pub fn new(kernel: impl Into<String>, aliases: Vec<String>, pid: u32) -> Self {
        PeerInfo {
            kernel: kernel.into(),
            aliases,
            pid,
            identity: Identity::default(),
        }
    }

    /// The peer, with the identity its connection proved.
    #[must_use]
    pub fn with_identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

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

/// This kernel's name, aliases and process id.
#[derive(Debug)]
pub(crate) struct Names {
    name: String,
    aliases: RwLock<Vec<String>>,
    pid: u32,
}

impl Names {
    /// The names of a kernel called `name`, in this process.
    pub(crate) fn new(name: &str) -> Result<Self, ParseSpecifierError> {
        Ok(Names {
            name: kernel_name(name)?,
            aliases: RwLock::default(),
            pid: std::process::id(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn aliases(&self) -> Vec<String> {
        self.aliases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn add_alias(&self, alias: &str) -> Result<(), ParseSpecifierError> {
        let alias = kernel_name(alias)?;
        let mut aliases = self.aliases.write().unwrap_or_else(PoisonError::into_inner);
        if !aliases.contains(&alias) && alias != self.name {
            aliases.push(alias);
        }
        Ok(())
    }

    /// Whether `name` is this kernel's name or one of its aliases.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        name == self.name
            || self
                .aliases
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|a| a == name)
    }
}

/// `name` if it is a valid kernel name: a valid specifier part, and not `*`.
pub(crate) fn kernel_name(name: &str) -> Result<String, ParseSpecifierError> {
    if name == "*" {
        return Err(ParseSpecifierError::BadChar {
            part: Part::Kernel,
            ch: '*',
        });
    }
    specifier::name(Part::Kernel, name)
}
