//! ikc: inter-kernel communication for Rust.
//!
//! Processes ("kernels") connect over TCP or Unix sockets and post or call
//! named events on the sessions other kernels publish. ikc carries forward
//! Perl's POE::Component::IKC and is built from the Rust networking stack: a
//! tokio-util codec carrying protobuf messages, tower services for sessions,
//! tower layers for middleware, tracing for logs.
//!
//! This crate re-exports the workspace's crates:
//!
//! - [`proto`]: the wire protocol, codecs and [`Value`].
//!
//! # Examples
//!
//! ```
//! use ikc::Value;
//!
//! let arg = Value::from("hello");
//! assert_eq!(arg.as_str(), Some("hello"));
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(warnings, rust_2018_idioms))))]

pub use ikc_proto as proto;
pub use ikc_proto::Value;
