//! Codecs for the native ikc wire protocol, built on tokio-util.
//!
//! A connection is the preface, one handshake message each way, then frames:
//!
//! ```text
//! client                                   server
//!   | -- preface "IKC" 0x01 ------------------> |
//!   | -- Handshake { hello } -----------------> |
//!   | <-------------- Handshake { welcome } --- |   (or { refuse }, then close)
//!   | <========= Frame ... Frame =============> |   both directions
//! ```
//!
//! # The preface
//!
//! ```text
//! +------+------+------+---------+
//! |  'I' |  'K' |  'C' | version |
//! | 0x49 | 0x4b | 0x43 |  0x01   |
//! +------+------+------+---------+
//! ```
//!
//! # Messages
//!
//! Handshake messages and frames share one layout: a 4-byte big-endian
//! length, then that many bytes of protobuf (`ikc.v1.Handshake` during the
//! handshake, `ikc.v1.Frame` after it).
//!
//! ```text
//! +---- len: u32 (BE) ----+--------- len bytes ----------+
//! | 0x00 0x00 0x00 0x04   | 0x3a 0x02 0x08 0x07          |
//! +-----------------------+------------------------------+
//!                           Frame { ping: Ping { nonce: 7 } }
//! ```
//!
//! Those exact bytes decode to that frame:
//!
//! ```
//! use bytes::BytesMut;
//! use ikc_proto::{FrameCodec, pb};
//! use tokio_util::codec::Decoder;
//!
//! let mut wire = BytesMut::from(&[0x00, 0x00, 0x00, 0x04, 0x3a, 0x02, 0x08, 0x07][..]);
//! let frame = FrameCodec::new().decode(&mut wire)?;
//! assert_eq!(frame, Some(pb::Frame::from(pb::Ping { nonce: 7 })));
//! assert!(wire.is_empty());
//! # Ok::<(), ikc_proto::CodecError>(())
//! ```
//!
//! A client's first bytes on a connection, the preface then a `Hello` from
//! kernel `A`:
//!
//! ```text
//! +--- preface ---------+---- len --------------+------------ 7 bytes ---------------+
//! | 0x49 0x4b 0x43 0x01 | 0x00 0x00 0x00 0x07   | 0x0a 0x05 0x08 0x01 0x12 0x01 0x41 |
//! +---------------------+-----------------------+------------------------------------+
//!                                                  Handshake { hello: Hello {
//!                                                    version: 1, kernel: "A" } }
//! ```
//!
//! ```
//! use bytes::BytesMut;
//! use ikc_proto::{HandshakeCodec, pb};
//! use tokio_util::codec::Decoder;
//!
//! let mut wire = BytesMut::from(
//!     &[0x49, 0x4b, 0x43, 0x01, 0x00, 0x00, 0x00, 0x07, 0x0a, 0x05, 0x08, 0x01, 0x12, 0x01, 0x41][..],
//! );
//! let hello = pb::Hello { version: 1, kernel: "A".to_owned(), ..Default::default() };
//! assert_eq!(HandshakeCodec::server().decode(&mut wire)?, Some(pb::Handshake::from(hello)));
//! # Ok::<(), ikc_proto::CodecError>(())
//! ```
//!
//! # Limits
//!
//! A head announcing more than the maximum frame length (default 16 MiB, see
//! [`Builder::max_frame_length`]) is [`CodecError::FrameTooLarge`], reported
//! from the 4 head bytes before any buffer is reserved. Handshake messages are
//! limited to [`MAX_HANDSHAKE_LENGTH`]. Incomplete input is `Ok(None)`; a
//! stream that ends inside a message is [`CodecError::UnexpectedEof`].

mod builder;
mod delimited;
mod error;
mod fast;
mod frame;
mod handshake;
mod preface;

pub use builder::{Builder, DEFAULT_MAX_FRAME_LENGTH};
pub use error::CodecError;
pub use frame::FrameCodec;

/// Frames written straight from their parts and measured without being
/// written: the low-level path of ikc-core's channel, which encodes a call
/// from its target and argument and a reply from its value without building
/// a [`pb::Frame`](crate::pb::Frame). The bytes are the ones [`FrameCodec`]
/// writes for the same frame.
pub mod encoded {
    pub use super::frame::{RequestParts, encode_reply, encode_request, encoded_len, over_limit};
}
pub use handshake::{HandshakeCodec, MAX_HANDSHAKE_LENGTH};
pub use preface::Preface;
