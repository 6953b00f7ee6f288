//! Configuration shared by the handshake and frame codecs.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::{FrameCodec, HandshakeCodec};

/// Default largest frame, in bytes of protobuf after the 4-byte head: 16 MiB.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// Configures and builds ikc codecs, in the manner of tokio-util's
/// `length_delimited::Builder`.
///
/// ```
/// use ikc_proto::codec::Builder;
///
/// let codec = Builder::new().max_frame_length(64 * 1024).new_frame_codec();
/// assert_eq!(codec.max_frame_length(), 64 * 1024);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Builder {
    max_frame_length: usize,
}

impl Builder {
    /// A builder with the defaults.
    #[must_use]
    pub const fn new() -> Self {
        Builder {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
        }
    }

    /// Sets the largest frame accepted on decode and produced on encode, in
    /// bytes of protobuf after the 4-byte head.
    ///
    /// Default: [`DEFAULT_MAX_FRAME_LENGTH`] (16 MiB). A longer frame is
    /// [`CodecError::FrameTooLarge`](super::CodecError::FrameTooLarge); on
    /// decode this is found from the head, before any allocation.
    pub fn max_frame_length(&mut self, bytes: usize) -> &mut Self {
        self.max_frame_length = bytes;
        self
    }

    /// The configured maximum frame length.
    #[must_use]
    pub const fn get_max_frame_length(&self) -> usize {
        self.max_frame_length
    }

    /// A frame codec with this configuration.
    #[must_use]
    pub fn new_frame_codec(&self) -> FrameCodec {
        FrameCodec::with_max_frame_length(self.max_frame_length)
    }

    /// A handshake codec for the connecting side: it writes the preface
    /// before its first message.
    #[must_use]
    pub fn new_client_handshake(&self) -> HandshakeCodec {
        HandshakeCodec::client_with(*self)
    }

    /// A handshake codec for the accepting side: it expects the preface
    /// before the first message.
    #[must_use]
    pub fn new_server_handshake(&self) -> HandshakeCodec {
        HandshakeCodec::server_with(*self)
    }

    /// Wraps `io` in a [`Framed`] with a frame codec of this configuration.
    pub fn new_framed<T>(&self, io: T) -> Framed<T, FrameCodec>
    where
        T: AsyncRead + AsyncWrite,
    {
        Framed::new(io, self.new_frame_codec())
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}
