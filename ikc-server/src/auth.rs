//! Shared-secret authentication in the native handshake.
//!
//! Both sides prove they know the secret without sending it, and neither
//! proof can be replayed on another connection:
//!
//! ```text
//! client                                          server
//!   | -- Hello { auth: client nonce } --------------> |
//!   | <-- Challenge { nonce: server nonce,            |
//!   |       proof: HMAC(secret, "ikc-v1 server"       |
//!   |                   | client nonce | server nonce) }
//!   | -- Proof { proof: HMAC(secret, "ikc-v1 client"  |
//!   |                  | server nonce | client nonce) } ->
//!   | <-- Welcome, or Refuse { AUTH } --------------- |
//! ```
//!
//! Nonces are 16 random bytes, new on every connection; proofs are compared
//! in constant time. A server with a secret refuses clients without one (and
//! legacy Perl peers, which cannot prove anything); a client with a secret
//! refuses a server that does not prove it knows it.
//!
//! # Several keys, for rotation
//!
//! A server holds a [`Keyring`] of named keys; the client's `Hello` names
//! the key it proves (`key_id`; empty names `default`), and the server
//! proves the same key. The peer's [`Identity`](ikc_core::Identity) then
//! carries that key id, for access policies. To rotate: give the servers
//! a keyring of the old and the new key, move the clients to the new one,
//! then drop the old key from the servers. A keyring file is TOML:
//!
//! ```toml
//! [keys]
//! 2026-11 = "the old secret"
//! 2026-12 = "the new secret"
//! ```
//!
//! A file that is not such a table is one key, named `default`, whose
//! bytes are the whole file (one trailing newline dropped).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a handshake nonce, in bytes.
pub const NONCE_LEN: usize = 16;

const SERVER_LABEL: &[u8] = b"ikc-v1 server";
const CLIENT_LABEL: &[u8] = b"ikc-v1 client";

/// The id of a key given without one.
pub const DEFAULT_KEY_ID: &str = "default";

/// A shared secret, with the id peers know it by. Cheap to clone; `Debug`
/// shows the id, not the secret.
#[derive(Clone)]
pub struct Secret {
    id: Arc<str>,
    bytes: Arc<[u8]>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?}, ..)", self.id)
    }
}

impl Secret {
    /// A secret made of `bytes`, with the id [`DEFAULT_KEY_ID`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret::with_id(DEFAULT_KEY_ID, bytes)
    }

    /// A secret made of `bytes`, known as `id`.
    pub fn with_id(id: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Secret {
            id: id.into().into(),
            bytes: bytes.into().into(),
        }
    }

    /// The id peers know this key by.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads a secret from a file; one trailing newline is not part of it.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, or is empty.
    pub fn from_file(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let mut bytes = std::fs::read(path)?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the secret file is empty",
            ));
        }
        Ok(Secret::new(bytes))
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.bytes).expect("HMAC accepts any key length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac
    }

    /// The server's proof over both nonces.
    pub(crate) fn server_proof(&self, client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
        self.mac(SERVER_LABEL, client_nonce, server_nonce)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// The client's proof over both nonces.
    pub(crate) fn client_proof(&self, server_nonce: &[u8], client_nonce: &[u8]) -> Vec<u8> {
        self.mac(CLIENT_LABEL, server_nonce, client_nonce)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// Whether `proof` is the server's proof, compared in constant time.
    pub(crate) fn verify_server(
        &self,
        client_nonce: &[u8],
        server_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac(SERVER_LABEL, client_nonce, server_nonce)
            .verify_slice(proof)
            .is_ok()
    }

    /// Whether `proof` is the client's proof, compared in constant time.
    pub(crate) fn verify_client(
        &self,
        server_nonce: &[u8],
        client_nonce: &[u8],
        proof: &[u8],
    ) -> bool {
        self.mac(CLIENT_LABEL, server_nonce, client_nonce)
            .verify_slice(proof)
            .is_ok()
    }
}

/// The keys a server accepts, by id; see [the module docs](self). Made
/// from one [`Secret`] with `From`.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Arc<[Secret]>,
}

/// Why a keyring could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty, or its `[keys]` table is.
    #[error("{path} holds no key")]
    Empty {
        /// The file.
        path: String,
    },
    /// A key of the `[keys]` table is not a non-empty string.
    #[error("{path}: key {id:?} must be a non-empty string")]
    BadKey {
        /// The file.
        path: String,
        /// The key's id.
        id: String,
    },
}

impl Keyring {
    /// A keyring of `keys`; a later key with the id of an earlier one
    /// replaces it.
    pub fn new(keys: impl IntoIterator<Item = Secret>) -> Self {
        let mut kept: Vec<Secret> = Vec::new();
        for key in keys {
            kept.retain(|k| k.id != key.id);
            kept.push(key);
        }
        Keyring { keys: kept.into() }
    }

    /// Reads a keyring file: a TOML `[keys]` table of id = secret, or else
    /// one secret, `default` (see [the module docs](self)).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or holds no key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyringError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| KeyringError::Read {
            path: shown.clone(),
            source,
        })?;
        let table = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|mut doc| match doc.remove("keys") {
                Some(toml::Value::Table(keys)) => Some(keys),
                _ => None,
            });
        let Some(table) = table else {
            let secret = Secret::from_file(path).map_err(|_| KeyringError::Empty {
                path: shown.clone(),
            })?;
            return Ok(Keyring::from(secret));
        };
        let mut keys = Vec::with_capacity(table.len());
        for (id, value) in table {
            match value {
                toml::Value::String(secret) if !secret.is_empty() => {
                    keys.push(Secret::with_id(id, secret));
                }
                _ => return Err(KeyringError::BadKey { path: shown, id }),
            }
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty { path: shown });
        }
        Ok(Keyring::new(keys))
    }

    /// The key known as `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<&Secret> {
        self.keys.iter().find(|key| &*key.id == id)
    }

    /// The key a client proves: the one named `id`, or with no id the only
    /// key (`None` when there are several, or no such key).
    #[must_use]
    pub fn pick(&self, id: Option<&str>) -> Option<&Secret> {
        match (id, &*self.keys) {
            (Some(id), _) => self.get(id),
            (None, [only]) => Some(only),
            (None, _) => None,
        }
    }

    /// The ids of the keys, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|key| &*key.id)
    }
}

impl From<Secret> for Keyring {
    fn from(secret: Secret) -> Self {
        Keyring::new([secret])
    }
}

/// A fresh random nonce.
pub(crate) fn nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_nonces() {
        let secret = Secret::new("s3cret");
        let (client, server) = (nonce(), nonce());
        let proof = secret.server_proof(&client, &server);
        assert!(secret.verify_server(&client, &server, &proof));
        assert!(!Secret::new("other").verify_server(&client, &server, &proof));
        assert!(
            !secret.verify_server(&server, &client, &proof),
            "nonces are ordered"
        );
        // A server proof is not a client proof (the labels differ).
        assert!(!secret.verify_client(&client, &server, &proof));
        let proof = secret.client_proof(&server, &client);
        assert!(secret.verify_client(&server, &client, &proof));
        assert!(!secret.verify_client(&server, &nonce(), &proof));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        assert_eq!(
            format!("{:?}", Secret::new("s3cret")),
            r#"Secret("default", ..)"#
        );
    }

    #[test]
    fn a_keyring_file_is_a_keys_table_or_one_default_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ring = dir.path().join("ring.toml");
        std::fs::write(&ring, "[keys]\nold = \"one\"\nnew = \"two\"\n").unwrap();
        let keyring = Keyring::from_file(&ring).unwrap();
        assert_eq!(keyring.ids().collect::<Vec<_>>(), ["new", "old"]);
        let (client, server) = (nonce(), nonce());
        let proof = Secret::new("two").server_proof(&client, &server);
        assert!(
            keyring
                .get("new")
                .unwrap()
                .verify_server(&client, &server, &proof)
        );
        assert!(
            !keyring
                .get("old")
                .unwrap()
                .verify_server(&client, &server, &proof)
        );
        assert!(
            keyring.pick(None).is_none(),
            "two keys: the client must name one"
        );
        assert_eq!(keyring.pick(Some("old")).map(Secret::id), Some("old"));

        let single = dir.path().join("secret");
        std::fs::write(&single, "plain = not a table\n").unwrap();
        let keyring = Keyring::from_file(&single).unwrap();
        assert_eq!(keyring.pick(None).map(Secret::id), Some(DEFAULT_KEY_ID));

        std::fs::write(&ring, "[keys]\nbad = 3\n").unwrap();
        assert!(matches!(
            Keyring::from_file(&ring),
            Err(KeyringError::BadKey { id, .. }) if id == "bad"
        ));
        std::fs::write(&ring, "[keys]\n").unwrap();
        assert!(matches!(
            Keyring::from_file(&ring),
            Err(KeyringError::Empty { .. })
        ));
    }
}
