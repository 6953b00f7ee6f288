//! [`Identity`]: who a connected peer is, as the connection established it
//! (not as the peer claims): its address, the shared-secret key it proved,
//! its TLS client certificate, its Unix socket credentials.

use std::fmt;

/// How a connected peer proved who it is, filled in by the server (or
/// client) that accepted the connection; see [`PeerInfo`](crate::PeerInfo)
/// and [`Request::caller`](crate::Request::caller). Empty for a peer that
/// proved nothing (no secret, no certificate, not a Unix socket).
///
/// Several sources may hold at once: a peer on a Unix socket that also
/// proved a shared secret has both `unix` and `key_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The peer's address (`127.0.0.1:40312`, `unix`), for logs and
    /// policies; not a proof of anything.
    pub addr: Option<String>,
    /// The id of the shared-secret key the peer proved it holds.
    pub key_id: Option<String>,
    /// The TLS client certificate the server verified.
    pub certificate: Option<Certificate>,
    /// The Unix socket peer's credentials, from the kernel
    /// (`SO_PEERCRED`).
    pub unix: Option<UnixCredentials>,
    /// The peer speaks the Perl IKC protocol: it has only a kernel name
    /// and an address.
    pub legacy: bool,
}

impl Identity {
    /// An identity with the peer's address only.
    #[must_use]
    pub fn with_addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// Adds the id of the shared-secret key the peer proved.
    #[must_use]
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// Adds the verified TLS client certificate.
    #[must_use]
    pub fn with_certificate(mut self, certificate: Certificate) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// Adds the Unix socket peer's credentials.
    #[must_use]
    pub fn with_unix(mut self, unix: UnixCredentials) -> Self {
        self.unix = Some(unix);
        self
    }

    /// Marks a Perl IKC peer.
    #[must_use]
    pub fn with_legacy(mut self, legacy: bool) -> Self {
        self.legacy = legacy;
        self
    }

    /// Whether the peer proved anything: a key, a certificate, or its Unix
    /// credentials.
    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        self.key_id.is_some() || self.certificate.is_some() || self.unix.is_some()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut part = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| {
            let written = write!(f, "{sep}{args}");
            sep = " ";
            written
        };
        if let Some(key_id) = &self.key_id {
            part(f, format_args!("key={key_id}"))?;
        }
        if let Some(certificate) = &self.certificate {
            part(f, format_args!("cert={:?}", certificate.subject))?;
        }
        if let Some(unix) = &self.unix {
            part(f, format_args!("uid={} gid={}", unix.uid, unix.gid))?;
        }
        if self.legacy {
            part(f, format_args!("legacy"))?;
        }
        if !self.is_authenticated() && !self.legacy {
            part(f, format_args!("unauthenticated"))?;
        }
        if let Some(addr) = &self.addr {
            part(f, format_args!("from {addr}"))?;
        }
        Ok(())
    }
}

/// A verified TLS client certificate, as policies match it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Certificate {
    /// The subject's distinguished name, RFC 4514 form (`CN=worker-1,O=Acme`).
    pub subject: String,
    /// The subject alternative names: DNS names, and IP addresses as text.
    pub sans: Vec<String>,
}

impl Certificate {
    /// A certificate of `subject` with `sans`.
    #[must_use]
    pub fn new(subject: impl Into<String>, sans: Vec<String>) -> Self {
        Certificate {
            subject: subject.into(),
            sans,
        }
    }
}

/// A Unix socket peer's credentials, from the operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnixCredentials {
    /// The peer process's user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// Its process id, where the system tells it.
    pub pid: Option<i32>,
}

impl UnixCredentials {
    /// Credentials of user `uid`, group `gid`, process `pid`.
    #[must_use]
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        UnixCredentials { uid, gid, pid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_prints_what_the_peer_proved() {
        let peer = Identity::default()
            .with_addr("127.0.0.1:4000")
            .with_key_id("2026")
            .with_unix(UnixCredentials::new(1000, 100, Some(7)));
        assert!(peer.is_authenticated());
        assert_eq!(
            peer.to_string(),
            "key=2026 uid=1000 gid=100 from 127.0.0.1:4000"
        );
        let nobody = Identity::default().with_addr("unix");
        assert!(!nobody.is_authenticated());
        assert_eq!(nobody.to_string(), "unauthenticated from unix");
    }
}
