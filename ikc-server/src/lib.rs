//! ikc on real sockets: the [`Server`] that serves a kernel's sessions over
//! TCP or a Unix socket, and the [`Client`] that connects to one.
//!
//! The server's connection handling is a stack of tower layers, each in its
//! own module: [`limit`] (connections held at once), [`shutdown`] (graceful
//! drain with a deadline), [`trace`] (spans per connection and request).
//! Request handling is the kernel's router wrapped in any tower layers you
//! add with [`Server::layer`]. A stream of your own (any [`Connected`]) is
//! served through the same stack with [`ServerHandle::serve_connection`].
//!
//! # Modules
//!
//! Each holds one idea; the arrows of `use` between them go down this list.
//!
//! | module | the idea |
//! |---|---|
//! | `server` | the builder ([`Server`]), the accept loop, one connection served in steps, the request service its layers wrap ([`RequestRouter`]) |
//! | [`client`] | the [`Client`] and its builder: connect, reconnect, call |
//! | [`balance`] | [`Balanced`]: calls spread over many servers ([`Client::balanced`]), found by a [`Discovery`](balance::discover::Discovery) |
//! | `handshake` | the native handshake: server side, client side, the shared-secret exchange |
//! | [`legacy`] | the Perl POE::Component::IKC protocol: sniffing, negotiation, Storable, translation (cargo feature `perl`, on by default) |
//! | [`limit`], [`shutdown`], [`trace`] | the connection layers |
//! | [`access`] | who may call or post what: a [`Policy`](access::Policy) and its request layer |
//! | [`metrics`] | request and connection metrics through the `metrics` facade |
//! | [`activation`] | the descriptors systemd or an old generation passes (socket activation) |
//! | [`upgrade`] | binary upgrade: the next generation, the handover to it, the pid file |
//! | [`listener`] | bound sockets ([`Listener`]), and sockets bound before a runtime (pre-fork) |
//! | `io` | the streams a connection runs over ([`Connected`]), a connection as the layers see it ([`ServedConnection`]) |
//! | [`tls`], [`auth`] | TLS settings and mutual TLS; the shared secret and keyrings (cargo features `tls` and `auth`, on by default) |
//! | `framed` | the frame transport a channel runs over |
//! | `error` | [`Error`], why a server could not start or a client connect |
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

pub mod access;
pub mod activation;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod auth;
pub mod balance;
pub mod client;
mod error;
mod framed;
mod handshake;
mod io;
#[cfg(feature = "perl")]
#[cfg_attr(docsrs, doc(cfg(feature = "perl")))]
pub mod legacy;
pub mod limit;
pub mod listener;
pub mod metrics;
mod run;
mod server;
pub mod shutdown;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
pub mod trace;
pub mod upgrade;

pub use balance::Balanced;
pub use client::{Client, ClientBuilder};
pub use error::{Error, TransportErrorKind};
pub use ikc_core::BoxError;
pub use io::{Connected, PeerAddr, ServedConnection};
pub use listener::{ListenAddr, Listener};
pub use server::{
    Connection, ConnectionOutcome, DEFAULT_BIND, DEFAULT_GRACE_PERIOD, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_NAME, RequestRouter, RequestRouterFuture, Server,
    ServerHandle, ShutdownReport,
};
