//! The codec for the preface and the handshake messages.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::delimited::Delimited;
use super::{Builder, CodecError, FrameCodec, Preface};
use crate::pb;

/// Largest handshake message accepted, in bytes: 64 KiB. A `Hello` carries
/// names and a few numbers; a peer sending more is not a real peer.
pub const MAX_HANDSHAKE_LENGTH: usize = 64 * 1024;

/// Which end of the connection a [`HandshakeCodec`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Writes the preface before its first message.
    Client { preface_sent: bool },
    /// Expects the preface before the first message.
    Server { preface_seen: bool },
}

/// Encodes and decodes the preface and the [`pb::Handshake`] messages.
///
/// The client side writes the [`Preface`] in front of its first message; the
/// server side checks it before decoding the first message and reports
/// [`CodecError::BadPreface`] or [`CodecError::UnsupportedVersion`]. Messages
/// use the same length-delimited layout as frames, with a maximum of
/// [`MAX_HANDSHAKE_LENGTH`].
///
/// Once the handshake is over, switch codecs with
/// `framed.map_codec(HandshakeCodec::into_frame_codec)`: `map_codec` keeps
/// the read buffer, so a frame that arrived in the same read as the last
/// handshake message is not lost.
#[derive(Debug)]
pub struct HandshakeCodec {
    role: Role,
    framing: Delimited,
    frames: Builder,
}

impl HandshakeCodec {
    /// The connecting side's codec, with default frame settings.
    #[must_use]
    pub fn client() -> Self {
        Self::client_with(Builder::new())
    }

    /// The accepting side's codec, with default frame settings.
    #[must_use]
    pub fn server() -> Self {
        Self::server_with(Builder::new())
    }

    pub(crate) fn client_with(frames: Builder) -> Self {
        Self::with_role(
            Role::Client {
                preface_sent: false,
            },
            frames,
        )
    }

    pub(crate) fn server_with(frames: Builder) -> Self {
        Self::with_role(
            Role::Server {
                preface_seen: false,
            },
            frames,
        )
    }

    fn with_role(role: Role, frames: Builder) -> Self {
        HandshakeCodec {
            role,
            framing: Delimited::new(MAX_HANDSHAKE_LENGTH),
            frames,
        }
    }

    /// The frame codec to use once the handshake is done, configured by the
    /// same [`Builder`] as this codec.
    #[must_use]
    pub fn into_frame_codec(self) -> FrameCodec {
        self.frames.new_frame_codec()
    }
}

impl Decoder for HandshakeCodec {
    type Item = pb::Handshake;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<pb::Handshake>, CodecError> {
        if let Role::Server {
            preface_seen: preface_seen @ false,
        } = &mut self.role
        {
            let Some(preface) = Preface::decode(src)? else {
                return Ok(None);
            };
            if preface.version() != Preface::CURRENT_VERSION {
                return Err(CodecError::UnsupportedVersion {
                    version: preface.version(),
                });
            }
            src.advance(Preface::LEN);
            *preface_seen = true;
        }
        self.framing.decode(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<pb::Handshake>, CodecError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::UnexpectedEof {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<pb::Handshake> for HandshakeCodec {
    type Error = CodecError;

    fn encode(&mut self, message: pb::Handshake, dst: &mut BytesMut) -> Result<(), CodecError> {
        if let Role::Client {
            preface_sent: preface_sent @ false,
        } = &mut self.role
        {
            dst.put_slice(&Preface::CURRENT.to_bytes());
            *preface_sent = true;
        }
        self.framing.encode(&message, dst)
    }
}
