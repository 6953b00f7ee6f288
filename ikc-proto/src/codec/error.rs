//! The error every ikc codec reports.

use std::io;

/// Why a codec could not decode or encode a message.
///
/// Incomplete input is never an error: decoders return `Ok(None)` and wait
/// for more bytes. Every variant here ends the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame's length is over the configured maximum. On decode this is
    /// reported from the 4-byte head alone, before any buffer is reserved.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Length the frame head announced (or the encoded length).
        len: u64,
        /// The configured maximum frame length.
        max: usize,
    },
    /// The frame's bytes are not a valid protobuf message of the expected type.
    #[error("frame is not a valid ikc message")]
    Decode(#[source] prost::DecodeError),
    /// The connection did not start with the ikc preface (`IKC` + version).
    #[error("connection does not start with the ikc preface (got {found:02x?})")]
    BadPreface {
        /// The first bytes received (at most 4).
        found: Vec<u8>,
    },
    /// The preface names a protocol version this build does not speak.
    #[error("peer speaks ikc protocol version {version}, this kernel speaks {supported}", supported = super::Preface::CURRENT_VERSION)]
    UnsupportedVersion {
        /// The version byte of the peer's preface.
        version: u8,
    },
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    UnexpectedEof {
        /// Bytes of the incomplete frame that had arrived.
        buffered: usize,
    },
    /// Reading from or writing to the transport failed.
    #[error("i/o error on the connection")]
    Io(#[from] io::Error),
}

impl From<prost::DecodeError> for CodecError {
    fn from(error: prost::DecodeError) -> Self {
        CodecError::Decode(error)
    }
}
