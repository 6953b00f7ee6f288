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
    /// Expects the preface before the first message. `first_message_seen` stays
    /// false until that message is complete, so a stream ending right after
    /// the preface is not taken for a clean end.
    Server {
        preface_seen: bool,
        first_message_seen: bool,
    },
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
                first_message_seen: false,
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

    /// On the server side, checks and consumes the preface the first time
    /// round; `Ok(false)` while it is still incomplete.
    fn preface(&mut self, src: &mut BytesMut) -> Result<bool, CodecError> {
        if let Role::Server {
            preface_seen: preface_seen @ false,
            ..
        } = &mut self.role
        {
            let Some(preface) = Preface::decode(src)? else {
                return Ok(false);
            };
            if preface.version() != Preface::CURRENT_VERSION {
                return Err(CodecError::UnsupportedVersion {
                    version: preface.version(),
                });
            }
            src.advance(Preface::LEN);
            *preface_seen = true;
        }
        Ok(true)
    }
}

impl Decoder for HandshakeCodec {
    type Item = pb::Handshake;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<pb::Handshake>, CodecError> {
        if !self.preface(src)? {
            return Ok(None);
        }
        let message = self.framing.decode(src)?;
        if let (
            Some(_),
            Role::Server {
                first_message_seen, ..
            },
        ) = (&message, &mut self.role)
        {
            *first_message_seen = true;
        }
        Ok(message)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<pb::Handshake>, CodecError> {
        if !self.preface(src)? {
            return if src.is_empty() {
                Ok(None)
            } else {
                Err(CodecError::UnexpectedEof {
                    buffered: src.len(),
                })
            };
        }
        if let Some(message) = self.decode(src)? {
            return Ok(Some(message));
        }
        // After a preface, the first message is due even at a message
        // boundary; the preface, already consumed, counts as received.
        let first_message_due = matches!(
            self.role,
            Role::Server {
                first_message_seen: false,
                ..
            }
        );
        match (self.framing.decode_eof(src), first_message_due) {
            (Err(CodecError::UnexpectedEof { buffered }), true) => Err(CodecError::UnexpectedEof {
                buffered: Preface::LEN + buffered,
            }),
            (Ok(None), true) => Err(CodecError::UnexpectedEof {
                buffered: Preface::LEN,
            }),
            (result, _) => result,
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
            // A message refused for its size must not leave a lone preface
            // in `dst`, nor count the preface as sent.
            let start = dst.len();
            dst.put_slice(&Preface::CURRENT.to_bytes());
            if let Err(error) = self.framing.encode(&message, dst) {
                dst.truncate(start);
                return Err(error);
            }
            *preface_sent = true;
            return Ok(());
        }
        self.framing.encode(&message, dst)
    }
}
