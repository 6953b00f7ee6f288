//! The shared-secret exchange when ikc is built without the `auth`
//! feature: no side holds a secret, so a server never challenges, and a
//! client asked for a proof has none to give.

use ikc_proto::{HandshakeCodec, pb};
use tokio_util::codec::Framed;

/// A secret, of which there are none without the `auth` feature.
#[derive(Debug, Clone)]
pub(crate) enum Secret {}

/// Length of a handshake nonce, in bytes.
pub(crate) const NONCE_LEN: usize = 16;

/// A keyring, of which there are none without the `auth` feature.
#[derive(Debug, Clone)]
pub(crate) enum Keyring {}

/// No keyring, so never called.
pub(crate) async fn challenge<T>(
    _: &mut Framed<T, HandshakeCodec>,
    keys: &Keyring,
    _: &[u8],
    _: &str,
) -> Result<String, &'static str> {
    match *keys {}
}

/// No secret, so never called.
pub(crate) fn nonce(secret: &Secret) -> [u8; NONCE_LEN] {
    match *secret {}
}

/// No secret, so never called.
pub(crate) fn key_id(secret: &Secret) -> String {
    match *secret {}
}

/// Why the client's half failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofError {
    /// The server asks for a secret the client was not given.
    NoSecret,
    /// The server's own proof is wrong: it does not know the secret.
    #[expect(dead_code, reason = "the same errors as with the auth feature")]
    ServerUnproven,
}

/// The client holds no secret: a server that asks for one is refused.
pub(crate) fn prove(
    _: Option<&Secret>,
    _: Option<[u8; NONCE_LEN]>,
    _: &pb::Challenge,
) -> Result<pb::Proof, ProofError> {
    Err(ProofError::NoSecret)
}

/// No secret, so never called.
pub(crate) fn id(secret: &Secret) -> &str {
    match *secret {}
}
