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

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Length of a handshake nonce, in bytes.
pub const NONCE_LEN: usize = 16;

const SERVER_LABEL: &[u8] = b"ikc-v1 server";
const CLIENT_LABEL: &[u8] = b"ikc-v1 client";

/// A shared secret. Cheap to clone; `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A secret made of `bytes`.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into().into())
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
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key length");
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
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "Secret(..)");
    }
}
