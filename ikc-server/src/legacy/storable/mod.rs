//! Storable's network-order image format (`Storable::nfreeze`), the subset
//! that IKC messages carry, read into and written from [`Value`].
//!
//! An image is a 2-byte header and one object:
//!
//! ```text
//! +------ header ------+------------------ object ------------------+
//! | 0x05 (2 << 1 | 1)  | 0x0b (minor 11) | 03 00 00 00 01 ...        |
//! | major 2, netorder  |                 | SX_HASH, 1 entry, ...     |
//! +--------------------+-----------------+---------------------------+
//! ```
//!
//! | Storable                                   | [`Value`]                           |
//! |--------------------------------------------|-------------------------------------|
//! | `undef` (`SX_UNDEF`, `SX_SV_UNDEF`, ...)   | `Null`                              |
//! | `SX_BYTE`, `SX_NETINT`                     | `Int`                               |
//! | `SX_SV_YES` / `SX_SV_NO`, booleans         | `Bool`                              |
//! | UTF-8 string (`SX_UTF8STR`, `SX_LUTF8STR`) | `String`                            |
//! | byte string (`SX_SCALAR`, `SX_LSCALAR`)    | `String` when ASCII, else `Bytes`   |
//! | array / hash (and references to them)      | `List` / `Map`                      |
//!
//! Writing is the reverse, as Perl's `nfreeze` would write the same data:
//! integers outside the 32-bit range and every float are written as decimal
//! strings (network order has no other form for them), booleans as `'1'`
//! and `''`, non-ASCII strings as UTF-8 strings, [`Value::Bytes`] as byte
//! strings. So `Value -> image -> Value` keeps every value except those
//! three, which come back as strings, and ASCII bytes, which come back as a
//! string.
//!
//! A Perl byte string that is not ASCII becomes [`Value::Bytes`]: Perl does
//! not say whether such a string is Latin-1 text or binary data, and bytes
//! go back to Perl unchanged.
//!
//! Blessed objects, code references, tied or overloaded data, regexps and
//! the other types IKC messages do not use are a typed
//! [`StorableError::Unsupported`], never a panic. Reading is bounded: every
//! length is checked against the bytes left before anything is allocated,
//! nesting is limited to [`MAX_DEPTH`] lists and maps, and one image may
//! produce at most [`MAX_VALUES`] values (back-references copy, so a small
//! image could otherwise expand without bound).

use ikc_proto::Value;
use ikc_proto::value::MAX_DEPTH;

use self::read::Reader;
use self::write::write_object;

mod read;
#[cfg(test)]
mod tests;
mod write;

/// Most values one image may produce: 1,000,000 (back-references count
/// every copy they make).
pub const MAX_VALUES: usize = 1_000_000;

/// Header byte of a network-order image of binary major version 2.
const NETORDER_MAJOR_2: u8 = (2 << 1) | 1;

/// Minor version written, as Storable 3.26 writes it.
const MINOR_WRITTEN: u8 = 11;

/// References, lists and maps nested in one another, at most. A Perl value
/// nests a reference around every inner list or map, so twice the depth.
const MAX_NESTING: usize = 2 * MAX_DEPTH + 2;

/// Strings longer than this use the 4-byte length opcodes.
const SHORT_STRING: usize = 255;

mod op {
    pub(super) const OBJECT: u8 = 0;
    pub(super) const LSCALAR: u8 = 1;
    pub(super) const ARRAY: u8 = 2;
    pub(super) const HASH: u8 = 3;
    pub(super) const REF: u8 = 4;
    pub(super) const UNDEF: u8 = 5;
    pub(super) const INTEGER: u8 = 6;
    pub(super) const DOUBLE: u8 = 7;
    pub(super) const BYTE: u8 = 8;
    pub(super) const NETINT: u8 = 9;
    pub(super) const SCALAR: u8 = 10;
    pub(super) const TIED_ARRAY: u8 = 11;
    pub(super) const TIED_HASH: u8 = 12;
    pub(super) const TIED_SCALAR: u8 = 13;
    pub(super) const SV_UNDEF: u8 = 14;
    pub(super) const SV_YES: u8 = 15;
    pub(super) const SV_NO: u8 = 16;
    pub(super) const BLESS: u8 = 17;
    pub(super) const IX_BLESS: u8 = 18;
    pub(super) const HOOK: u8 = 19;
    pub(super) const OVERLOAD: u8 = 20;
    pub(super) const TIED_KEY: u8 = 21;
    pub(super) const TIED_IDX: u8 = 22;
    pub(super) const UTF8STR: u8 = 23;
    pub(super) const LUTF8STR: u8 = 24;
    pub(super) const FLAG_HASH: u8 = 25;
    pub(super) const CODE: u8 = 26;
    pub(super) const WEAKREF: u8 = 27;
    pub(super) const WEAKOVERLOAD: u8 = 28;
    pub(super) const VSTRING: u8 = 29;
    pub(super) const LVSTRING: u8 = 30;
    pub(super) const SVUNDEF_ELEM: u8 = 31;
    pub(super) const REGEXP: u8 = 32;
    pub(super) const LOBJECT: u8 = 33;
    pub(super) const BOOLEAN_TRUE: u8 = 34;
    pub(super) const BOOLEAN_FALSE: u8 = 35;
}

/// Key flag of `SX_FLAG_HASH`: the key's bytes are UTF-8.
const KEY_UTF8: u8 = 0x01;
/// Key flag: the key was UTF-8 and was stored downgraded to Latin-1.
const KEY_WAS_UTF8: u8 = 0x02;
/// Key flag: the key is stored as a whole scalar object (not supported).
const KEY_IS_SV: u8 = 0x08;

/// Why a Storable image could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorableError {
    /// The image ended before the object did.
    #[error("storable image is truncated at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },
    /// The image was written by `freeze`, not `nfreeze` (native byte
    /// order), which only a Perl of the same build could read.
    #[error(
        "storable image is in native byte order (header {header:#04x}); IKC peers send network order"
    )]
    NotNetworkOrder {
        /// The header byte.
        header: u8,
    },
    /// The image's binary major version is not 2.
    #[error("storable binary major version {major} is not supported (only 2)")]
    UnsupportedVersion {
        /// The major version.
        major: u8,
    },
    /// The image holds a type IKC messages do not carry.
    #[error("storable {what} at byte {offset} is not supported")]
    Unsupported {
        /// The type (`blessed object of class Foo`, `code reference`...).
        what: String,
        /// Where it starts.
        offset: usize,
    },
    /// An opcode Storable never writes.
    #[error("storable opcode {opcode} at byte {offset} is invalid")]
    BadOpcode {
        /// The opcode.
        opcode: u8,
        /// Where it is.
        offset: usize,
    },
    /// A back-reference names an object that does not exist, or one that
    /// contains it (a cycle, which a tree of values cannot hold).
    #[error("storable back-reference to object {tag} at byte {offset} is invalid or cyclic")]
    BadBackReference {
        /// The referenced object number.
        tag: u32,
        /// Where the back-reference is.
        offset: usize,
    },
    /// Lists and maps nest deeper than [`MAX_DEPTH`].
    #[error("storable data nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The image would produce more than [`MAX_VALUES`] values.
    #[error("storable data holds more than {max} values")]
    TooManyValues {
        /// The limit.
        max: usize,
    },
    /// A string flagged UTF-8 is not valid UTF-8.
    #[error("storable UTF-8 string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
    },
    /// Bytes follow the object.
    #[error("{count} bytes follow the storable image")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A string or a container is too long for the format (over 2 GiB).
    #[error("a value of {len} items is too long for storable")]
    TooLong {
        /// Its length.
        len: usize,
    },
}

/// Reads one network-order image into a [`Value`].
///
/// ```
/// use ikc_proto::Value;
/// use ikc_server::legacy::storable;
///
/// // nfreeze([1, 'two'])
/// let image = [0x05, 0x0b, 0x02, 0, 0, 0, 2, 0x08, 0x81, 0x0a, 3, b't', b'w', b'o'];
/// let value = storable::from_slice(&image)?;
/// assert_eq!(value, Value::List(vec![Value::Int(1), Value::from("two")]));
/// # Ok::<(), storable::StorableError>(())
/// ```
///
/// # Errors
///
/// When the image is malformed, holds an unsupported type, or exceeds the
/// limits in the [module docs](self).
pub fn from_slice(image: &[u8]) -> Result<Value, StorableError> {
    let mut reader = Reader::new(image);
    let header = reader.u8()?;
    if header & 1 == 0 {
        return Err(StorableError::NotNetworkOrder { header });
    }
    if header != NETORDER_MAJOR_2 {
        return Err(StorableError::UnsupportedVersion { major: header >> 1 });
    }
    // Every minor version of major 2 reads the same for this subset.
    reader.u8()?;
    let value = reader.object()?;
    match reader.left() {
        0 => Ok(value),
        count => Err(StorableError::TrailingBytes { count }),
    }
}

/// Writes `value` as `nfreeze` would write the same Perl data; see the
/// [module docs](self) for the mapping.
///
/// A list or map at the top is the image's root (`nfreeze(\%hash)`), as
/// every IKC message is.
///
/// # Errors
///
/// [`StorableError::TooLong`] for a string, list or map of 2 GiB or more.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, StorableError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[NETORDER_MAJOR_2, MINOR_WRITTEN]);
    write_object(&mut out, value, true)?;
    Ok(out)
}
