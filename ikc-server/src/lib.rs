//! ikc on real sockets: the [`Server`] that serves a kernel's sessions over
//! TCP or a Unix socket, and the [`Client`] that connects to one.
//!
//! The server's connection handling is a stack of tower layers, each in its
//! own module: [`limit`] (connections held at once), [`shutdown`] (graceful
//! drain with a deadline), [`trace`] (spans per connection and request).
//! Request handling is the kernel's router wrapped in any tower layers you
//! add with [`Server::layer`].
//!
//! # Examples
//!
//! ```
//! use ikc_core::{Kernel, Request, Value, service_fn};
//! use ikc_server::{Client, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kernel = Kernel::new("Server");
//! kernel.publish("echo", ["say"], service_fn(|req: Request| async move {
//!     Ok::<_, ikc_core::BoxError>(req.into_arg())
//! }))?;
//! let server = Server::builder().kernel(kernel).bind("127.0.0.1:0".parse()?).serve().await?;
//!
//! let client = Client::connect(&server.local_addr().to_string()).await?;
//! let answer = client.call("poe://Server/echo/say", "hello").await?;
//! assert_eq!(answer, Value::from("hello"));
//!
//! server.shutdown();
//! server.stopped().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(warnings, rust_2018_idioms))))]

pub mod auth;
pub mod client;
mod framed;
mod handshake;
mod io;
pub mod legacy;
pub mod limit;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod trace;

pub use client::Client;
pub use ikc_core::BoxError;
pub use io::{Connected, PeerAddr};
pub use server::{
    ConnectionOutcome, Error, ErrorKind, ListenAddr, Listener, Server, ServerHandle, ShutdownReport,
};
