//! Limits how many connections a server holds at once.
//!
//! [`ConnectionLimit`] takes a semaphore permit in `poll_ready` and keeps it
//! in the connection's future until the connection ends. The accept loop
//! waits for readiness *before* it accepts, so a full server stops accepting
//! and new peers wait in the kernel's backlog: backpressure, not
//! accept-then-drop.
//!
//! This counts live connections. To limit requests in flight use
//! `tower::limit::ConcurrencyLimitLayer` as a request layer, or the server's
//! per-connection `max_in_flight`.

pub mod future;
mod layer;
mod service;

pub use self::layer::ConnectionLimitLayer;
pub use self::service::ConnectionLimit;
