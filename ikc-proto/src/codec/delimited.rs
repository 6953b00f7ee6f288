//! Length-delimited protobuf messages: the framing both codecs share.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use super::CodecError;

/// Size of the big-endian length head in front of every message.
pub(crate) const HEAD_LEN: usize = 4;

/// Where the decoder is within the current message.
#[derive(Debug, Clone, Copy)]
enum DecodeState {
    /// Waiting for a 4-byte head.
    Head,
    /// The head was consumed; waiting for this many bytes of protobuf.
    Data(usize),
}

/// A 4-byte big-endian head, then that many bytes of protobuf; the head is
/// checked against the maximum before anything is reserved, as in tokio-util's
/// `LengthDelimitedCodec::decode_head`.
///
/// The decode state is kept here rather than in a wrapped
/// `LengthDelimitedCodec`: that codec hides whether it has consumed a head, so
/// a stream ending right after a head would look like a clean end.
#[derive(Debug)]
pub(crate) struct Delimited {
    state: DecodeState,
    max: usize,
}

impl Delimited {
    pub(crate) fn new(max: usize) -> Self {
        Delimited {
            state: DecodeState::Head,
            max,
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Applies to the next head decoded; a message whose head was already
    /// accepted is still read in full.
    pub(crate) fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    pub(crate) fn decode<M: Message + Default>(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<M>, CodecError> {
        match self.decode_bytes(src)? {
            Some(message) => Ok(Some(M::decode(message)?)),
            None => Ok(None),
        }
    }

    /// The length of the next message when it is whole in `src`, its head
    /// not yet consumed, and at most `limit` (and the maximum) long: such
    /// a message can be read in place, then consumed with its head.
    pub(crate) fn whole(&self, src: &BytesMut, limit: usize) -> Option<usize> {
        if !matches!(self.state, DecodeState::Head) {
            return None;
        }
        let head = src.first_chunk::<HEAD_LEN>()?;
        let len = usize::try_from(u32::from_be_bytes(*head)).ok()?;
        (len <= limit.min(self.max) && src.len() >= HEAD_LEN + len).then_some(len)
    }

    /// The next message's bytes, without its head, undecoded.
    pub(crate) fn decode_bytes(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        let len = match self.state {
            DecodeState::Head => match self.decode_head(src)? {
                Some(len) => {
                    self.state = DecodeState::Data(len);
                    len
                }
                None => return Ok(None),
            },
            DecodeState::Data(len) => len,
        };
        if src.len() < len {
            // Room for the rest of the frame (again: the buffer may have
            // been swapped for a smaller one since its head was read).
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.state = DecodeState::Head;
        // Decoding from frozen `Bytes` lets prost slice `bytes` fields out of
        // the read buffer instead of copying them.
        let message = src.split_to(len).freeze();
        src.reserve(HEAD_LEN.saturating_sub(src.len()));
        Ok(Some(message))
    }

    /// Reads and consumes the head, refusing a length over the maximum
    /// before reserving room for it: the peer chooses that length.
    fn decode_head(&self, src: &mut BytesMut) -> Result<Option<usize>, CodecError> {
        let Some(head) = src.first_chunk::<HEAD_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*head);
        match usize::try_from(len) {
            Ok(len) if len <= self.max => {
                src.advance(HEAD_LEN);
                src.reserve(len.saturating_sub(src.len()));
                Ok(Some(len))
            }
            _ => Err(CodecError::FrameTooLarge {
                len: u64::from(len),
                max: self.max,
            }),
        }
    }

    pub(crate) fn decode_eof<M: Message + Default>(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<M>, CodecError> {
        match self.decode_bytes_eof(src)? {
            Some(message) => Ok(Some(M::decode(message)?)),
            None => Ok(None),
        }
    }

    /// [`decode_bytes`](Self::decode_bytes) at the end of the stream: a
    /// partial message left over is an error.
    pub(crate) fn decode_bytes_eof(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Bytes>, CodecError> {
        if let Some(message) = self.decode_bytes(src)? {
            return Ok(Some(message));
        }
        match self.state {
            DecodeState::Head if src.is_empty() => Ok(None),
            DecodeState::Head => Err(CodecError::UnexpectedEof {
                buffered: src.len(),
            }),
            // The head was consumed from `src`; count it as received.
            DecodeState::Data(_) => Err(CodecError::UnexpectedEof {
                buffered: HEAD_LEN + src.len(),
            }),
        }
    }

    /// Writes the head and the message straight into `dst`: encoding into a
    /// temporary `Bytes` for `LengthDelimitedCodec`'s encoder would copy
    /// every payload twice.
    pub(crate) fn encode<M: Message>(
        &self,
        message: &M,
        dst: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let len = message.encoded_len();
        if len > self.max {
            return Err(CodecError::FrameTooLarge {
                len: len as u64,
                max: self.max,
            });
        }
        dst.reserve(HEAD_LEN + len);
        // `len <= max` and the head is 4 bytes; a max over u32::MAX could let
        // `len` overflow the head, so that is checked too.
        let head = u32::try_from(len).map_err(|_| CodecError::FrameTooLarge {
            len: len as u64,
            max: u32::MAX as usize,
        })?;
        dst.put_u32(head);
        // `encode` would compute the length again to check the space that
        // was just reserved.
        message.encode_raw(dst);
        Ok(())
    }
}
