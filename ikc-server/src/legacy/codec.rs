//! The two codecs of a legacy connection: [`LineCodec`] for the negotiation
//! lines, then [`LegacyFrameCodec`] for the messages.
//!
//! # Negotiation lines
//!
//! ```text
//! S E T U P ␠ K E R N E L = P r o b e ; ... \r \n
//! ```
//!
//! Lines are written with `\r\n`. When reading, the first line's terminator
//! is detected as `\r\n`, `\n`, `\r` or `\n\r`, as POE::Filter::Line does,
//! and later lines must use the same one. A single `\r` or `\n` that ends the
//! buffered bytes ends the line at once; the next byte tells whether it was
//! the first half of a two-byte terminator.
//!
//! # Frames
//!
//! ```text
//! +-- decimal length --+ NUL +---------- length bytes ----------+
//! | 0x32 0x31 0x36     | 0x00| 0x05 0x0b 0x03 ... (Storable)     |
//! |  '2'  '1'  '6'     |     | 216 bytes                         |
//! +--------------------+-----+-----------------------------------+
//! ```
//!
//! No sign, no spaces, nothing after the payload. A head announcing more
//! than the maximum frame length is [`LegacyError::FrameTooLarge`] before
//! any buffer is reserved; a head that is not digits then NUL within
//! [`MAX_HEAD_DIGITS`] digits is [`LegacyError::BadFrameHead`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::LegacyError;

/// Longest negotiation line accepted, terminator excluded: 4096 bytes.
pub const MAX_LINE_LENGTH: usize = 4096;

/// Most digits a frame head may have: 20 (any `u64`).
pub const MAX_HEAD_DIGITS: usize = 20;

/// The line terminator a peer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Terminator {
    /// Not seen yet.
    Unknown,
    /// A single `\r` or `\n` ended the buffer: the next byte decides.
    Half(u8),
    /// Known: `\r\n`, `\n`, `\r` or `\n\r`.
    Known([u8; 2], usize),
}

/// Splits negotiation lines; see the [module docs](self).
///
/// ```
/// use bytes::BytesMut;
/// use ikc_server::legacy::codec::LineCodec;
/// use tokio_util::codec::Decoder;
///
/// let mut codec = LineCodec::new();
/// let mut wire = BytesMut::from(&b"HELLO\nOK\n"[..]);
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some("HELLO"));
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some("OK"));
/// # Ok::<(), ikc_server::legacy::LegacyError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LineCodec {
    terminator: Terminator,
}

impl Default for LineCodec {
    fn default() -> Self {
        LineCodec::new()
    }
}

impl LineCodec {
    /// A codec that has seen no line yet.
    #[must_use]
    pub const fn new() -> Self {
        LineCodec {
            terminator: Terminator::Unknown,
        }
    }

    /// The byte that may still follow the last line as the second half of
    /// its terminator (the last line ended with a lone `\r` or `\n` at the
    /// end of what had arrived).
    #[must_use]
    pub const fn dangling(&self) -> Option<u8> {
        match self.terminator {
            Terminator::Half(first) => Some(other_half(first)),
            _ => None,
        }
    }
}

const fn other_half(byte: u8) -> u8 {
    if byte == b'\r' { b'\n' } else { b'\r' }
}

fn line(bytes: &[u8]) -> String {
    // Negotiation lines are ASCII; anything else is kept visible, not fatal.
    String::from_utf8_lossy(bytes).into_owned()
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = LegacyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, LegacyError> {
        if let Terminator::Half(first) = self.terminator {
            let Some(&next) = src.first() else {
                return Ok(None);
            };
            self.terminator = if next == other_half(first) {
                src.advance(1);
                Terminator::Known([first, next], 2)
            } else {
                Terminator::Known([first, 0], 1)
            };
        }
        match self.terminator {
            Terminator::Unknown => {
                let found = src.iter().position(|&b| b == b'\r' || b == b'\n');
                let Some(end) = line_end(found, src.len())? else {
                    return Ok(None);
                };
                let text = line(&src.split_to(end));
                let first = src.get_u8();
                self.terminator = match src.first() {
                    None => Terminator::Half(first),
                    Some(&next) if next == other_half(first) => {
                        src.advance(1);
                        Terminator::Known([first, next], 2)
                    }
                    Some(_) => Terminator::Known([first, 0], 1),
                };
                Ok(Some(text))
            }
            Terminator::Known(bytes, len) => {
                let terminator = &bytes[..len];
                let found = src.windows(len).position(|w| w == terminator);
                // A terminator cut by the read end may follow `scanned` bytes.
                let scanned = src.len().saturating_sub(len - 1);
                let Some(end) = line_end(found, scanned)? else {
                    return Ok(None);
                };
                let text = line(&src.split_to(end));
                src.advance(len);
                Ok(Some(text))
            }
            Terminator::Half(_) => unreachable!("resolved above"),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<String>, LegacyError> {
        match self.decode(src)? {
            Some(line) => Ok(Some(line)),
            None if src.is_empty() => Ok(None),
            None => Err(LegacyError::UnexpectedEof {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<&str> for LineCodec {
    type Error = LegacyError;

    fn encode(&mut self, line: &str, dst: &mut BytesMut) -> Result<(), LegacyError> {
        dst.reserve(line.len() + 2);
        dst.put_slice(line.as_bytes());
        dst.put_slice(b"\r\n");
        Ok(())
    }
}

/// Splits `<decimal length>\0<payload>` frames; see the [module docs](self).
///
/// ```
/// use bytes::BytesMut;
/// use ikc_server::legacy::codec::LegacyFrameCodec;
/// use tokio_util::codec::Decoder;
///
/// let mut codec = LegacyFrameCodec::new(1024);
/// let mut wire = BytesMut::from(&b"3\0abc2\0de"[..]);
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some(&b"abc"[..]));
/// assert_eq!(codec.decode(&mut wire)?.as_deref(), Some(&b"de"[..]));
/// # Ok::<(), ikc_server::legacy::LegacyError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LegacyFrameCodec {
    max_frame_length: usize,
    /// The length of the frame whose head was read, waiting for its payload.
    pending: Option<usize>,
    /// A byte to drop if it comes first: the rest of the last negotiation
    /// line's terminator.
    skip: Option<u8>,
}

impl LegacyFrameCodec {
    /// A codec refusing frames longer than `max_frame_length` bytes.
    #[must_use]
    pub const fn new(max_frame_length: usize) -> Self {
        LegacyFrameCodec {
            max_frame_length,
            pending: None,
            skip: None,
        }
    }

    /// The frame codec that follows `lines`: a frame never starts with `\r`
    /// or `\n`, so the second half of the last line's terminator, arriving
    /// late, is dropped rather than read as a bad frame head.
    #[must_use]
    pub const fn after(lines: &LineCodec, max_frame_length: usize) -> Self {
        LegacyFrameCodec {
            skip: lines.dangling(),
            ..Self::new(max_frame_length)
        }
    }

    fn head(&self, src: &mut BytesMut) -> Result<Option<usize>, LegacyError> {
        let window = &src[..src.len().min(MAX_HEAD_DIGITS + 1)];
        let bad = || LegacyError::BadFrameHead {
            found: src[..src.len().min(24)].to_vec(),
        };
        let Some(nul) = window.iter().position(|&b| b == 0) else {
            if window.iter().all(u8::is_ascii_digit) && window.len() <= MAX_HEAD_DIGITS {
                return Ok(None);
            }
            return Err(bad());
        };
        let digits = &window[..nul];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let len = digits.iter().try_fold(0u64, |len, &d| {
            len.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let len = len.ok_or_else(bad)?;
        if usize::try_from(len).map_or(true, |len| len > self.max_frame_length) {
            return Err(LegacyError::FrameTooLarge {
                len,
                max: self.max_frame_length,
            });
        }
        src.advance(nul + 1);
        #[allow(clippy::cast_possible_truncation)] // checked against the maximum above
        Ok(Some(len as usize))
    }
}

impl Decoder for LegacyFrameCodec {
    type Item = Bytes;
    type Error = LegacyError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LegacyError> {
        if let Some(skip) = self.skip {
            let Some(&first) = src.first() else {
                return Ok(None);
            };
            if first == skip {
                src.advance(1);
            }
            self.skip = None;
        }
        let len = match self.pending {
            Some(len) => len,
            None => match self.head(src)? {
                Some(len) => {
                    self.pending = Some(len);
                    len
                }
                None => return Ok(None),
            },
        };
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LegacyError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => Err(LegacyError::UnexpectedEof {
                buffered: src.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for LegacyFrameCodec {
    type Error = LegacyError;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), LegacyError> {
        if payload.len() > self.max_frame_length {
            return Err(LegacyError::FrameTooLarge {
                len: payload.len() as u64,
                max: self.max_frame_length,
            });
        }
        let head = payload.len().to_string();
        dst.reserve(head.len() + 1 + payload.len());
        dst.put_slice(head.as_bytes());
        dst.put_u8(0);
        dst.put_slice(&payload);
        Ok(())
    }
}

/// The end of a line, checked against [`MAX_LINE_LENGTH`]: `found` is where
/// its terminator starts, if it arrived; without one, `scanned` bytes of the
/// line are known. `Ok(None)` while the line may still end within the limit.
fn line_end(found: Option<usize>, scanned: usize) -> Result<Option<usize>, LegacyError> {
    match found {
        Some(end) if end <= MAX_LINE_LENGTH => Ok(Some(end)),
        None if scanned <= MAX_LINE_LENGTH => Ok(None),
        _ => Err(LegacyError::LineTooLong {
            max: MAX_LINE_LENGTH,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(codec: &mut LineCodec, chunks: &[&[u8]]) -> Vec<String> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).expect("valid lines") {
                out.push(line);
            }
        }
        out
    }

    #[test]
    fn crlf_lines_split_at_every_read_boundary() {
        let wire = b"SETUP KERNEL=Probe;FREEZER=Storable;PID=1\r\nOK\r\n";
        for split in 0..wire.len() {
            let got = lines(&mut LineCodec::new(), &[&wire[..split], &wire[split..]]);
            assert_eq!(
                got,
                ["SETUP KERNEL=Probe;FREEZER=Storable;PID=1", "OK"],
                "{split}"
            );
        }
    }

    #[test]
    fn the_first_terminator_is_detected_and_kept() {
        for terminator in [&b"\r\n"[..], b"\n", b"\r", b"\n\r"] {
            let wire = [b"HELLO", terminator, b"OK", terminator, b"DONE", terminator].concat();
            for split in 0..wire.len() {
                let got = lines(&mut LineCodec::new(), &[&wire[..split], &wire[split..]]);
                assert_eq!(got, ["HELLO", "OK", "DONE"], "{terminator:?} split {split}");
            }
        }
    }

    #[test]
    fn later_lines_must_use_the_first_lines_terminator() {
        let got = lines(&mut LineCodec::new(), &[b"HELLO\r\nOK\nDONE\r\n"]);
        assert_eq!(got, ["HELLO", "OK\nDONE"]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut codec = LineCodec::new();
        let mut buf = BytesMut::from(&vec![b'x'; MAX_LINE_LENGTH + 1][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(LegacyError::LineTooLong { .. })
        ));
    }

    #[test]
    fn frames_split_at_every_read_boundary() {
        let wire = b"3\0abc10\x000123456789";
        for split in 0..wire.len() {
            let mut codec = LegacyFrameCodec::new(64);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(frame) = codec.decode(&mut buf).expect("valid frames") {
                    got.push(frame);
                }
            }
            assert_eq!(got, [&b"abc"[..], b"0123456789"], "{split}");
        }
    }

    #[test]
    fn a_terminator_split_from_the_last_line_is_not_read_as_a_frame() {
        let mut lines = LineCodec::new();
        let mut buf = BytesMut::from(&b"UP\r"[..]);
        assert_eq!(lines.decode(&mut buf).expect("line").as_deref(), Some("UP"));
        let mut frames = LegacyFrameCodec::after(&lines, 64);
        buf.extend_from_slice(b"\n3\0abc");
        assert_eq!(
            frames.decode(&mut buf).expect("frame").as_deref(),
            Some(&b"abc"[..])
        );
    }

    #[test]
    fn oversized_frame_is_rejected_before_allocation() {
        let mut codec = LegacyFrameCodec::new(100);
        let mut buf = BytesMut::from(&b"99999999999\0"[..]);
        let capacity = buf.capacity();
        assert!(matches!(
            codec.decode(&mut buf),
            Err(LegacyError::FrameTooLarge {
                len: 99_999_999_999,
                max: 100
            })
        ));
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn heads_that_are_not_digits_then_nul_are_refused() {
        for wire in [
            &b"\0abc"[..],
            b"12a\0",
            b"-1\0",
            b" 5\0",
            b"123456789012345678901",
        ] {
            let mut codec = LegacyFrameCodec::new(100);
            let result = codec.decode(&mut BytesMut::from(wire));
            assert!(
                matches!(result, Err(LegacyError::BadFrameHead { .. })),
                "{wire:?}: {result:?}"
            );
        }
        // A 21-digit length overflows nothing: it is refused by its size.
        let mut codec = LegacyFrameCodec::new(100);
        assert!(
            codec
                .decode(&mut BytesMut::from(&b"99999999999999999999\0"[..]))
                .is_err()
        );
    }

    #[test]
    fn eof_inside_a_frame_is_an_error() {
        let mut codec = LegacyFrameCodec::new(100);
        let mut buf = BytesMut::from(&b"5\0ab"[..]);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(LegacyError::UnexpectedEof { .. })
        ));
    }

    #[test]
    fn frames_are_written_with_a_decimal_head() {
        let mut codec = LegacyFrameCodec::new(100);
        let mut buf = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"hello"), &mut buf)
            .expect("fits");
        assert_eq!(&buf[..], b"5\0hello");
        assert!(codec.encode(Bytes::from(vec![0; 101]), &mut buf).is_err());
    }

    /// Random bytes never panic either codec (a stand-in for the fuzz
    /// target that always runs).
    #[test]
    fn random_input_never_panics_the_codecs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"0123456789\0\r\nSETUP";
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() as usize) % alphabet.len()])
                .collect();
            let mut frames = LegacyFrameCodec::new(16);
            let mut lines = LineCodec::new();
            let mut a = BytesMut::from(&bytes[..]);
            let mut b = a.clone();
            while let Ok(Some(_)) = frames.decode(&mut a) {}
            let _ = frames.decode_eof(&mut a);
            while let Ok(Some(_)) = lines.decode(&mut b) {}
            let _ = lines.decode_eof(&mut b);
        }
    }
}
