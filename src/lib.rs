//! ikc: inter-kernel communication for Rust.
//!
//! Processes ("kernels") connect over TCP or Unix sockets and post or call
//! named events on the sessions other kernels publish. ikc carries forward
//! Perl's POE::Component::IKC and is built from the Rust networking stack: a
//! tokio-util codec carrying protobuf messages, tower services for sessions,
//! tower layers for middleware, tracing for logs.
//!
//! This crate gathers the workspace's crates:
//!
//! - [`proto`]: the wire protocol, codecs and [`Value`].
//! - [`core`]: [`Kernel`], sessions, the router, channels, monitors.
//! - [`server`]: [`Server`] and [`Client`] on real sockets.
//! - [`prefork`]: a supervisor that pre-forks worker processes.
//! - [`testing`]: a kit to test sessions without sockets.
//!
//! The `ikc` command line (`ikc serve`, `call`, `post`, `ping`, `monitor`,
//! `bench`), its load generator and its demo `echo` session live in the
//! `ikc-cli` crate, so this library depends on nothing but what a user of
//! it needs.
//!
//! # Guide
//!
//! ## Concepts
//!
//! - A **kernel** ([`Kernel`]) is one process's node: a name, aliases, the
//!   sessions it publishes and the kernels connected to it.
//! - A **session** is a named tower `Service<Request, Response = Value>`,
//!   published with [`Kernel::publish`] for a list of events. Each
//!   [`Request`] carries the event, its argument ([`Value`], or any serde type
//!   through [`Request::arg_as`]), its deadline, and the connected kernel it
//!   came from ([`Request::caller`]).
//! - A **specifier** ([`Specifier`]) names the target:
//!   `poe://kernel/session/event`, `session/event` for the local kernel, `*`
//!   for any kernel that has the session.
//! - **Call** waits for the answer, a value or a typed [`IkcError`] (never a
//!   hang: every call has a deadline); **post** delivers and returns.
//! - **Subscribe** ([`Client::subscribe`]) checks that a remote session is
//!   published and returns a [`RemoteSession`](core::RemoteSession), itself a
//!   tower service, so tower middleware composes on the caller's side too.
//! - A **monitor** ([`Kernel::monitor`]) is the ordered stream of kernels
//!   registering and unregistering.
//!
//! ## Serve
//!
//! [`Server::builder`] binds TCP or a Unix socket and serves a kernel;
//! [`Server::layer`] wraps every request in tower layers (timeouts,
//! concurrency limits, load shedding, your own). Examples:
//! `examples/calc_server.rs` (events, serde arguments, typed errors),
//! `examples/middleware.rs` (tower layers and one of your own).
//!
//! ## Call
//!
//! [`Client::connect`] (or [`Client::builder`] for a name, timeouts,
//! reconnects) calls and posts; a client may publish sessions too, and the
//! server, or another client through it, calls them back. Examples:
//! `examples/calc_client.rs`, `examples/remote_session.rs` (a subscription
//! under `tower::retry`), `examples/callback.rs` (symmetric peers and a
//! hub), `examples/monitor.rs`.
//!
//! ## Pre-fork
//!
//! [`prefork::Supervisor`] binds once, forks workers that each run your
//! server on their own runtime, and keeps them healthy (heartbeat, CPU over
//! a window, crash loops, recycling, SIGHUP reloads, SIGUSR2 status). The
//! `ikc serve --workers N` command is one such binary;
//! `examples/prefork_embed.rs` is your own.
//!
//! ## Secure
//!
//! A shared secret ([`server::auth::Secret`], an HMAC challenge both ways;
//! the secret never goes on the wire) and TLS ([`server::tls`]) are options
//! of the server and the client builders. Servers listen on loopback unless
//! told otherwise.
//!
//! ## Perl
//!
//! A server accepts Perl POE::Component::IKC clients as they are, and the
//! legacy client ([`server::client::ClientBuilder::legacy`]) calls a Perl
//! IKC server: `examples/perl_peer.rs`, with the Perl side in its comment.
//!
//! ## Test
//!
//! [`testing`] connects kernels in memory in one line and gives a scripted
//! [`MockSession`](testing::MockSession), bounded waits on monitor events,
//! and faults to inject: test your sessions without sockets.
//!
//! # Examples
//!
//! ```
//! use ikc::{Client, Kernel, Request, Server, Value, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kernel = Kernel::new("Server");
//! kernel.publish("echo", ["upper"], service_fn(|req: Request| async move {
//!     let text = req.arg_as::<String>()?;
//!     Ok::<_, ikc::core::BoxError>(Value::from(text.to_uppercase()))
//! }))?;
//! let server = Server::builder().kernel(kernel).bind("127.0.0.1:0".parse()?).serve().await?;
//!
//! let client = Client::connect(&server.local_addr().to_string()).await?;
//! assert_eq!(client.call("echo/upper", "hi").await?, Value::from("HI"));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(warnings, rust_2018_idioms))))]

pub mod testing;

pub use ikc_core as core;
pub use ikc_core::{ErrorKind, IkcError, Kernel, Request, Specifier, Value, service_fn};
#[cfg(feature = "prefork")]
#[cfg_attr(docsrs, doc(cfg(feature = "prefork")))]
pub use ikc_prefork as prefork;
pub use ikc_proto as proto;
pub use ikc_server as server;
pub use ikc_server::{Client, Server};
