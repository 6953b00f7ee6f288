//! The heart of ikc: kernels, sessions as tower services, routing, channels,
//! monitors and subscriptions, independent of any socket.
//!
//! - A [`Kernel`] is the local node: a name and aliases, the sessions it
//!   publishes, the peer kernels connected to it, and a [`Monitor`] bus.
//! - A session is any tower `Service<Request, Response = Value>`, published
//!   with [`Kernel::publish`] for a list of events.
//! - The [`Router`] dispatches each request by its [`Specifier`]
//!   (`poe://kernel/session/event`) to a local session or a connected kernel.
//! - A [`Channel`] connects two kernels over any
//!   [`Transport`](transport::Transport); [`transport::memory`] does it in
//!   memory.
//! - [`Kernel::subscribe`] returns a [`RemoteSession`], itself a tower
//!   service, to call a session of a connected kernel.
//!
//! Every call ends with a value or a typed [`IkcError`]; nothing a peer sends
//! panics the process or closes the connection of another peer.
//!
//! # Modules
//!
//! Each module holds one idea; the imports between them form a DAG, leaves
//! first (`kernel` is a thin facade over the rest, and nothing imports it):
//!
//! | module | the idea | uses |
//! |---|---|---|
//! | `specifier` | [`Specifier`]: `poe://kernel/session/event` | |
//! | [`error`] | [`IkcError`] and its [`ErrorKind`] | |
//! | `monitor` | [`Monitor`]: what happens to a kernel, in order | |
//! | `identity` | who a peer proved it is ([`Identity`]): address, key id, certificate, Unix credentials | - |
//! | `names` | a kernel's names, a peer's ([`PeerInfo`]) | specifier, identity |
//! | `request` | [`Request`]: what a session is called with | names, specifier |
//! | `propagation` | the `otel` feature: a request's W3C `traceparent` from and into OpenTelemetry contexts | - |
//! | `sessions` | the published sessions, each a boxed tower service | request |
//! | [`transport`] | [`Transport`](transport::Transport): what a channel runs over; [`transport::memory`] | error |
//! | [`channel`] | one connected peer: [`ChannelHandle`] to call it, the driver that runs the connection, [`RemoteSession`]; given a small [`ChannelContext`](channel::ChannelContext) (monitor, sessions, default service, peer registry), not the kernel | transport, sessions, monitor |
//! | `peers` | the connected kernels, by name and alias | channel, names, monitor |
//! | [`router`] | [`Router`]: every request to its session or its kernel | sessions, peers, channel |
//! | [`builtin`] | the `IKC` session every kernel publishes | router, peers, sessions |
//! | `kernel` | [`Kernel`]: the facade over all of it | everything above |
//!
//! # Examples
//!
//! ```
//! use ikc_core::{Kernel, Request, Value, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kernel = Kernel::new("Calc");
//! kernel.publish("calc", ["add"], service_fn(|req: Request| async move {
//!     let (a, b): (i64, i64) = req.arg_as()?;
//!     Ok::<_, ikc_core::BoxError>(Value::from(a + b))
//! }))?;
//! assert_eq!(kernel.call(&"calc/add".parse()?, Value::from(vec![2, 3])).await?, Value::from(5));
//!
//! // A wrong argument is a typed error, not a panic.
//! let error = kernel.call(&"calc/add".parse()?, Value::from("two")).await.unwrap_err();
//! assert_eq!(error.kind(), ikc_core::ErrorKind::BadRequest);
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(warnings, rust_2018_idioms))))]

pub mod builtin;
pub mod channel;
pub mod error;
mod identity;
mod kernel;
mod monitor;
mod names;
mod peers;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod propagation;
mod request;
pub mod router;
mod sessions;
mod specifier;
pub mod transport;

// The root holds what users name; the low-level pieces stay in their
// modules: `channel` (the driver, the registration, the boxed session
// service), `router` (its future), `builtin` (the `IKC` session's events),
// `error` (the error chain for logs).
pub use builtin::IKC_SESSION;
pub use channel::{
    Call, Channel, ChannelBuilder, ChannelError, ChannelHandle, PeerLimits, RemoteSession,
};
pub use error::{BoxError, ErrorKind, IkcError};
pub use identity::{Certificate, Identity, UnixCredentials};
pub use ikc_proto::Value;
pub use kernel::Kernel;
pub use monitor::{MONITOR_CAPACITY, Monitor, MonitorEvent};
pub use names::{PeerInfo, RegisterError};
pub use request::Request;
pub use router::Router;
pub use specifier::{
    KernelTarget, MAX_NAME_LEN, MAX_SPECIFIER_LEN, ParseSpecifierError, Part, Specifier,
};
pub use tower::service_fn;
