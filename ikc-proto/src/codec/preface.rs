//! The 4 bytes a native ikc client sends first.

use super::CodecError;

/// The connection preface: the magic bytes `IKC` followed by the protocol
/// version.
///
/// ```text
/// +------+------+------+---------+
/// | 0x49 | 0x4b | 0x43 | version |
/// |  'I' |  'K' |  'C' |  0x01   |
/// +------+------+------+---------+
/// ```
///
/// A server reads the preface before anything else, which is how it tells a
/// native ikc peer from a legacy Perl IKC peer (whose first line is text).
///
/// ```
/// use ikc_proto::Preface;
///
/// let preface = Preface::decode(b"IKC\x01")?.expect("four bytes are enough");
/// assert_eq!(preface.version(), 1);
/// assert_eq!(Preface::CURRENT.to_bytes(), *b"IKC\x01");
/// assert_eq!(Preface::decode(b"IK")?, None); // wait for more
/// assert!(Preface::decode(b"SETUP").is_err()); // not ikc
/// # Ok::<(), ikc_proto::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Preface {
    version: u8,
}

impl Preface {
    /// The magic bytes every native connection starts with.
    pub const MAGIC: [u8; 3] = *b"IKC";
    /// Length of the preface in bytes.
    pub const LEN: usize = 4;
    /// The protocol version this build speaks.
    pub const CURRENT_VERSION: u8 = 1;
    /// The preface this build sends.
    pub const CURRENT: Preface = Preface {
        version: Self::CURRENT_VERSION,
    };

    /// A preface announcing `version`.
    #[must_use]
    pub const fn new(version: u8) -> Self {
        Preface { version }
    }

    /// The protocol version the preface announces.
    #[must_use]
    pub const fn version(self) -> u8 {
        self.version
    }

    /// The preface's 4 bytes as they go on the wire.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 4] {
        let [i, k, c] = Self::MAGIC;
        [i, k, c, self.version]
    }

    /// Reads a preface from the start of `src` without consuming anything.
    ///
    /// Returns `Ok(None)` while `src` is a strict prefix of a preface, so a
    /// caller can wait for more bytes.
    ///
    /// # Errors
    ///
    /// [`CodecError::BadPreface`] as soon as the bytes cannot start a
    /// preface. The version is not checked here.
    pub fn decode(src: &[u8]) -> Result<Option<Preface>, CodecError> {
        let seen = src.len().min(Self::MAGIC.len());
        if src[..seen] != Self::MAGIC[..seen] {
            return Err(CodecError::BadPreface {
                found: src[..src.len().min(Self::LEN)].to_vec(),
            });
        }
        match src.get(Self::MAGIC.len()) {
            Some(&version) => Ok(Some(Preface { version })),
            None => Ok(None),
        }
    }
}
