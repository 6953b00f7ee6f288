//! Length-delimited protobuf messages: the framing both codecs share.

use std::io;

use bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

use super::CodecError;

/// Size of the big-endian length head in front of every message.
pub(crate) const HEAD_LEN: usize = 4;

/// Decodes with tokio-util's `LengthDelimitedCodec` (4-byte big-endian head,
/// the head checked against the maximum before any reservation), then prost.
#[derive(Debug)]
pub(crate) struct Delimited {
    inner: LengthDelimitedCodec,
    max: usize,
}

impl Delimited {
    pub(crate) fn new(max: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .big_endian()
            .length_field_length(HEAD_LEN)
            .max_frame_length(max)
            .new_codec();
        Delimited { inner, max }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn set_max(&mut self, max: usize) {
        self.inner.set_max_frame_length(max);
        self.max = max;
    }

    pub(crate) fn decode<M: Message + Default>(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<M>, CodecError> {
        match self.inner.decode(src) {
            // Decoding from frozen `Bytes` lets prost slice `bytes` fields out
            // of the read buffer instead of copying them.
            Ok(Some(frame)) => Ok(Some(M::decode(frame.freeze())?)),
            Ok(None) => Ok(None),
            Err(error) => Err(self.head_error(error, src)),
        }
    }

    pub(crate) fn decode_eof<M: Message + Default>(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<M>, CodecError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => Err(CodecError::UnexpectedEof {
                buffered: src.len(),
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
        message
            .encode(dst)
            .map_err(|error| CodecError::Io(io::Error::other(error)))
    }

    /// `LengthDelimitedCodec` reports an oversized head as an opaque
    /// `InvalidData` error without consuming it; read the head back to name
    /// the length.
    fn head_error(&self, error: io::Error, src: &BytesMut) -> CodecError {
        if error.kind() == io::ErrorKind::InvalidData && src.len() >= HEAD_LEN {
            let len = u64::from((&src[..HEAD_LEN]).get_u32());
            if len > self.max as u64 {
                return CodecError::FrameTooLarge { len, max: self.max };
            }
        }
        CodecError::Io(error)
    }
}
