//! [`LegacyError`]: why a legacy (Perl IKC) connection failed.

use std::io;

use super::storable::StorableError;

/// Why a connection to or from a Perl IKC peer failed.
///
/// Each variant ends the connection. A message the peer sent that cannot be
/// read (bad Storable data) does not: the peer is answered with an
/// `IKC/remote_error` message and the connection goes on, so these
/// variants are about the stream itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyError {
    /// A negotiation line is longer than the limit.
    #[error("negotiation line longer than {max} bytes")]
    LineTooLong {
        /// The limit, [`MAX_LINE_LENGTH`](super::codec::MAX_LINE_LENGTH).
        max: usize,
    },
    /// A frame's length is over the configured maximum; reported from the
    /// frame's head before any buffer is reserved.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The length the head announced (or the encoded length).
        len: u64,
        /// The maximum frame length.
        max: usize,
    },
    /// A frame does not start with `<decimal length>\0`.
    #[error("frame head is not <decimal length> NUL (got {found:02x?})")]
    BadFrameHead {
        /// The first bytes of the head (at most 24).
        found: Vec<u8>,
    },
    /// The stream ended in the middle of a line or a frame.
    #[error("connection closed in the middle of a message ({buffered} bytes buffered)")]
    UnexpectedEof {
        /// Bytes of the incomplete message that had arrived.
        buffered: usize,
    },
    /// The peer closed the connection during the negotiation.
    #[error("connection closed during the negotiation")]
    Closed,
    /// The peer refused the negotiation (`NOT`).
    #[error("peer refused the negotiation: {reason}")]
    Refused {
        /// What was refused.
        reason: String,
    },
    /// The peer broke the negotiation's rules.
    #[error("negotiation failed: {reason}")]
    Handshake {
        /// What went wrong.
        reason: String,
    },
    /// A message of ours could not be written as Storable data.
    #[error("cannot encode the message")]
    Encode(#[from] StorableError),
    /// Reading from or writing to the socket failed.
    #[error("i/o error on the connection")]
    Io(#[from] io::Error),
}
