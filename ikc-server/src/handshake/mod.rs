//! The native ikc handshake, both sides: after the preface, the client's
//! `Hello`, the server's `Challenge` and the client's `Proof` when a shared
//! secret is set, then the server's `Welcome` or `Refuse` (see
//! [`ikc_proto::codec`] for the bytes).
//!
//! - [`server`]: reads and checks a `Hello`, answers it.
//! - [`client`]: says `Hello` and reads the answer.
//! - [`auth`]: the shared-secret exchange, each side's half.
//!
//! The Perl IKC negotiation has its own, text-based handshake in
//! [`legacy`](crate::legacy); both end in a channel built by the caller.

#[cfg(feature = "auth")]
pub(crate) mod auth;
#[cfg(not(feature = "auth"))]
#[path = "no_auth.rs"]
pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod server;

use std::time::Duration;

use ikc_proto::pb;

#[cfg(not(feature = "auth"))]
pub(crate) use self::auth::{Keyring, Secret};
/// The shared secret a side may hold ([`crate::auth::Secret`]) and the
/// keys a server accepts ([`crate::auth::Keyring`]); without the `auth`
/// feature, none can be given.
#[cfg(feature = "auth")]
pub(crate) use crate::auth::{Keyring, Secret};

/// Default for [`Server::handshake_timeout`](crate::Server::handshake_timeout)
/// and [`ClientBuilder::handshake_timeout`](crate::ClientBuilder::handshake_timeout):
/// 5 seconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a side announces of its limits in `Hello` or `Welcome`.
pub(crate) fn limits(
    max_frame_length: usize,
    max_in_flight: usize,
    keepalive: Option<Duration>,
) -> pb::Limits {
    pb::Limits {
        max_frame_len: u32::try_from(max_frame_length).unwrap_or(u32::MAX),
        max_in_flight: u32::try_from(max_in_flight).unwrap_or(u32::MAX),
        keepalive_ms: ikc_core::channel::keepalive_ms(keepalive),
    }
}
