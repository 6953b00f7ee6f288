//! tracing for connections and requests.
//!
//! - [`ConnectionTraceLayer`] opens an `ikc.conn` span per connection (with
//!   `peer.addr`, and `kernel` once the handshake names it) and logs its
//!   opening and end at `debug`, a failure at `debug` with the whole cause.
//! - [`RequestTraceLayer`] opens an `ikc.request` span per request (with
//!   `session`, `event`, `kind = call|post`) and logs its latency and
//!   outcome at `debug`. A server runs its peers' requests in it, and a
//!   [`Client`](crate::Client) the requests its server sends it.
//!
//! # Across kernels
//!
//! With the `otel` feature (and a `tracing-opentelemetry` layer in the
//! subscriber), a request's span is the child of the caller's: the caller's
//! channel sends its current span's context in the request's `traceparent`
//! (W3C Trace Context, see ikc-core's `propagation`), and
//! [`RequestTrace`] makes it the parent of the `ikc.request` span before
//! the span starts. A hub that forwards the request does so inside that
//! span, so the next kernel's span is the hub's child: `client -> hub ->
//! client` is one trace of three spans in a line. A `traceparent` that
//! does not parse is ignored (the span is a root); a hub built without the
//! feature passes its caller's context on unchanged. Without the feature
//! nothing is parsed and nothing changes.
//!
//! Nothing here logs above `debug` per connection or per request, so a flood
//! of bad peers cannot flood the log; problems an operator can act on are
//! logged where they are found (accept errors, for one).

pub mod future;
mod layer;
mod service;

pub use self::layer::{ConnectionTraceLayer, RequestTraceLayer};
pub use self::service::{ConnectionTrace, RequestTrace};
