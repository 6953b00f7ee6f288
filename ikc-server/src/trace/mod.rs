//! tracing for connections and requests.
//!
//! - [`ConnectionTraceLayer`] opens an `ikc.conn` span per connection (with
//!   `peer.addr`, and `kernel` once the handshake names it) and logs its
//!   opening and end at `debug`, a failure at `debug` with the whole cause.
//! - [`RequestTraceLayer`] opens an `ikc.request` span per request (with
//!   `session`, `event`, `kind = call|post`) and logs its latency and
//!   outcome at `debug`.
//!
//! Nothing here logs above `debug` per connection or per request, so a flood
//! of bad peers cannot flood the log; problems an operator can act on are
//! logged where they are found (accept errors, for one).

pub mod future;
mod layer;
mod service;

pub use self::layer::{ConnectionTraceLayer, RequestTraceLayer};
pub use self::service::{ConnectionTrace, RequestTrace};
