//! The shared-secret exchange of the handshake (see [`crate::auth`] for the
//! scheme): the server challenges and checks the client's proof; the
//! client checks the server's proof first, then proves itself.

use futures::{SinkExt, StreamExt};
use ikc_proto::{HandshakeCodec, pb};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

pub(crate) use crate::auth::NONCE_LEN;
use crate::auth::{self, DEFAULT_KEY_ID, Keyring, Secret};

/// The server's half: challenge the peer, whose `Hello` carried
/// `client_nonce` and named key `key_id` (empty: the default key), then
/// check its proof. `Ok` is the id of the key the peer proved; `Err` says
/// why it failed, for the refusal and the log.
pub(crate) async fn challenge<T>(
    framed: &mut Framed<T, HandshakeCodec>,
    keys: &Keyring,
    client_nonce: &[u8],
    key_id: &str,
) -> Result<String, &'static str>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if client_nonce.len() != auth::NONCE_LEN {
        return Err("this server requires a shared secret");
    }
    let key_id = if key_id.is_empty() {
        DEFAULT_KEY_ID
    } else {
        key_id
    };
    let Some(secret) = keys.get(key_id) else {
        return Err("this server has no key of that id");
    };
    let server_nonce = auth::nonce();
    let challenge = pb::Challenge {
        nonce: server_nonce.to_vec().into(),
        proof: secret.server_proof(client_nonce, &server_nonce).into(),
    };
    framed
        .send(challenge.into())
        .await
        .map_err(|_| "the peer went away during authentication")?;
    match framed.next().await {
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Proof(proof)),
        })) if secret.verify_client(&server_nonce, client_nonce, &proof.proof) => {
            Ok(secret.id().to_owned())
        }
        Some(Ok(pb::Handshake {
            kind: Some(pb::handshake::Kind::Proof(_)),
        })) => Err("wrong shared secret"),
        _ => Err("expected a proof of the shared secret"),
    }
}

/// The nonce a client holding `secret` sends in its `Hello`.
pub(crate) fn nonce(_: &Secret) -> [u8; NONCE_LEN] {
    auth::nonce()
}

/// The id of `secret`'s key.
pub(crate) fn id(secret: &Secret) -> &str {
    secret.id()
}

/// The key id a client holding `secret` names in its `Hello`: empty for
/// the default key, as a server of one key expects.
pub(crate) fn key_id(secret: &Secret) -> String {
    match secret.id() {
        DEFAULT_KEY_ID => String::new(),
        id => id.to_owned(),
    }
}

/// Why the client's half failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofError {
    /// The server asks for a secret the client was not given.
    NoSecret,
    /// The server's own proof is wrong: it does not know the secret.
    ServerUnproven,
}

/// The client's half: check the server's proof in `challenge`, then prove
/// the secret (the client's `Hello` carried `client_nonce`).
pub(crate) fn prove(
    secret: Option<&Secret>,
    client_nonce: Option<[u8; auth::NONCE_LEN]>,
    challenge: &pb::Challenge,
) -> Result<pb::Proof, ProofError> {
    let (Some(secret), Some(client_nonce)) = (secret, client_nonce) else {
        return Err(ProofError::NoSecret);
    };
    if !secret.verify_server(&client_nonce, &challenge.nonce, &challenge.proof) {
        return Err(ProofError::ServerUnproven);
    }
    Ok(pb::Proof {
        proof: secret.client_proof(&challenge.nonce, &client_nonce).into(),
    })
}
