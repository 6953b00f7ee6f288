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
//! - [`demo`]: the `echo` session that `ikc serve` publishes.
//! - [`bench`](mod@bench): the closed-loop load generator behind `ikc bench`.
//! - [`testing`]: a kit to test sessions without sockets.
//!
//! # Examples
//!
//! ```
//! use ikc::{Client, Kernel, Server, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kernel = Kernel::new("Server");
//! ikc::demo::publish_echo(&kernel)?;
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

pub mod bench;
pub mod demo;
pub mod testing;

pub use ikc_core as core;
pub use ikc_core::{ErrorKind, IkcError, Kernel, Request, Specifier, Value, service_fn};
pub use ikc_prefork as prefork;
pub use ikc_proto as proto;
pub use ikc_server as server;
pub use ikc_server::{Client, Server};
