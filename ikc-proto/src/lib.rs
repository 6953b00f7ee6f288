//! The ikc wire protocol: protobuf messages, the connection preface, and the
//! tokio-util codecs that carry them.
//!
//! A native ikc connection is a 4-byte [preface](codec::Preface), one
//! length-delimited [`Handshake`](pb::Handshake) message each way, then
//! length-delimited [`Frame`](pb::Frame)s in both directions. The message
//! types are generated from `proto/ikc.proto` (package `ikc.v1`) and checked
//! in, so building ikc needs no `protoc`.
//!
//! - [`codec`]: [`HandshakeCodec`] and [`FrameCodec`], configured with a
//!   [`codec::Builder`], and the [`CodecError`] they report;
//!   [`codec::encoded`], the low-level path that writes a request or a
//!   reply straight from its parts.
//! - [`value`]: [`Value`], the dynamically typed argument and result of every
//!   event, with conversions from Rust types and through serde.
//! - [`pb`]: the generated messages.
//!
//! # Examples
//!
//! ```
//! use bytes::BytesMut;
//! use ikc_proto::{FrameCodec, Value, pb};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = FrameCodec::new();
//! let mut wire = BytesMut::new();
//! let request = pb::Request {
//!     id: 1,
//!     target: "poe://Server/echo/say".to_owned(),
//!     arg: Some(Value::from("hello").into()),
//!     ..Default::default()
//! };
//! codec.encode(pb::Frame::from(request.clone()), &mut wire)?;
//!
//! let frame = codec.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!(frame, pb::Frame::from(request));
//! # Ok::<(), ikc_proto::CodecError>(())
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(no_crate_inject, attr(deny(warnings, rust_2018_idioms))))]

pub mod codec;
mod message;
pub mod value;

/// Messages generated from `proto/ikc.proto` by prost-build (package `ikc.v1`).
///
/// Never edited by hand: the `codegen` test regenerates the file and fails
/// when it is stale.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    include!("generated/ikc.v1.rs");
}

pub use codec::{CodecError, FrameCodec, HandshakeCodec, Preface};
pub use value::{Value, ValueError};
