//! Reading a network-order image.

use std::collections::BTreeMap;

use bytes::Bytes;
use ikc_proto::Value;
use ikc_proto::value::MAX_DEPTH;

use super::{KEY_IS_SV, KEY_UTF8, KEY_WAS_UTF8, MAX_NESTING, MAX_VALUES, StorableError, op};

/// A seen object: where it starts, and whether it is complete. Objects are
/// numbered in the order they start (Storable's tags).
#[derive(Debug, Clone, Copy)]
struct Seen {
    start: usize,
    complete: bool,
}

pub(super) struct Reader<'a> {
    image: &'a [u8],
    pos: usize,
    seen: Vec<Seen>,
    /// The tag the next object gets: `seen.len()`, except while a
    /// back-reference reads an object again.
    next_tag: usize,
    values: usize,
    /// Lists and maps open around the current position.
    depth: usize,
    /// Lists, maps and references open around the current position.
    nesting: usize,
}

impl<'a> Reader<'a> {
    /// Bytes of the image not read yet.
    pub(super) fn left(&self) -> usize {
        self.image.len() - self.pos
    }

    pub(super) fn new(image: &'a [u8]) -> Self {
        Reader {
            image,
            pos: 0,
            seen: Vec::new(),
            next_tag: 0,
            values: 0,
            depth: 0,
            nesting: 0,
        }
    }

    fn truncated(&self) -> StorableError {
        StorableError::Truncated {
            offset: self.image.len(),
        }
    }

    pub(super) fn u8(&mut self) -> Result<u8, StorableError> {
        let byte = *self.image.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(byte)
    }

    fn u32(&mut self) -> Result<u32, StorableError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A length, checked against the bytes left (every item takes at least
    /// `min_item` bytes) before anything is allocated for it.
    fn len(&mut self, long: bool, min_item: usize) -> Result<usize, StorableError> {
        let len = if long {
            usize::try_from(self.u32()?).map_err(|_| self.truncated())?
        } else {
            usize::from(self.u8()?)
        };
        let left = self.image.len() - self.pos;
        if len.saturating_mul(min_item) > left {
            return Err(self.truncated());
        }
        Ok(len)
    }

    fn take(&mut self, len: usize) -> Result<&[u8], StorableError> {
        let end = self.pos.checked_add(len).ok_or_else(|| self.truncated())?;
        let bytes = self
            .image
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(bytes)
    }

    fn count_value(&mut self) -> Result<(), StorableError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(StorableError::TooManyValues { max: MAX_VALUES });
        }
        Ok(())
    }

    /// Numbers the object starting at `start`; returns its tag.
    fn see(&mut self, start: usize) -> usize {
        let tag = self.next_tag;
        // Read again through a back-reference, an object keeps its tag.
        if tag == self.seen.len() {
            self.seen.push(Seen {
                start,
                complete: false,
            });
        }
        self.next_tag += 1;
        tag
    }

    fn done(&mut self, tag: usize) {
        self.seen[tag].complete = true;
    }

    /// Enters a reference (`container = false`), list or map.
    fn enter(&mut self, container: bool) -> Result<(), StorableError> {
        self.nesting += 1;
        if container {
            self.depth += 1;
        }
        if self.depth > MAX_DEPTH || self.nesting > MAX_NESTING {
            return Err(StorableError::TooDeep { max: MAX_DEPTH });
        }
        Ok(())
    }

    fn leave(&mut self, container: bool) {
        self.nesting -= 1;
        if container {
            self.depth -= 1;
        }
    }

    fn unsupported(what: impl Into<String>, offset: usize) -> StorableError {
        StorableError::Unsupported {
            what: what.into(),
            offset,
        }
    }

    pub(super) fn object(&mut self) -> Result<Value, StorableError> {
        let start = self.pos;
        let opcode = self.u8()?;
        if opcode == op::OBJECT {
            return self.back_reference(start);
        }
        self.count_value()?;
        let tag = self.see(start);
        let value = match opcode {
            op::UNDEF | op::SV_UNDEF | op::SVUNDEF_ELEM => Value::Null,
            op::SV_YES | op::BOOLEAN_TRUE => Value::Bool(true),
            op::SV_NO | op::BOOLEAN_FALSE => Value::Bool(false),
            op::BYTE => Value::Int(i64::from(self.u8()?) - 128),
            op::NETINT => Value::Int(i64::from(self.u32()? as i32)),
            op::SCALAR | op::LSCALAR => {
                let len = self.len(opcode == op::LSCALAR, 1)?;
                let bytes = self.take(len)?;
                if bytes.is_ascii() {
                    Value::String(String::from_utf8_lossy(bytes).into_owned())
                } else {
                    Value::Bytes(Bytes::copy_from_slice(bytes))
                }
            }
            op::UTF8STR | op::LUTF8STR => {
                let len = self.len(opcode == op::LUTF8STR, 1)?;
                let offset = self.pos;
                let text = std::str::from_utf8(self.take(len)?)
                    .map_err(|_| StorableError::InvalidUtf8 { offset })?;
                Value::String(text.to_owned())
            }
            op::REF | op::WEAKREF => {
                // Perl nests a reference around every inner list or map;
                // the value is what it points at.
                self.enter(false)?;
                let value = self.object()?;
                self.leave(false);
                value
            }
            op::ARRAY => {
                let len = self.len(true, 1)?;
                self.enter(true)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.object()?);
                }
                self.leave(true);
                Value::List(items)
            }
            op::HASH | op::FLAG_HASH => {
                let flagged = opcode == op::FLAG_HASH;
                if flagged {
                    // Hash flags (restricted hashes) change nothing for a copy.
                    self.u8()?;
                }
                // Each entry is at least a value byte and a 4-byte key length.
                let len = self.len(true, 5)?;
                self.enter(true)?;
                let mut entries = BTreeMap::new();
                for _ in 0..len {
                    let value = self.object()?;
                    let key = self.key(flagged)?;
                    entries.insert(key, value);
                }
                self.leave(true);
                Value::Map(entries)
            }
            op::BLESS | op::IX_BLESS => return Err(self.blessed(opcode, start)),
            op::CODE => return Err(Self::unsupported("code reference", start)),
            op::HOOK => return Err(Self::unsupported("object stored by a hook", start)),
            op::OVERLOAD | op::WEAKOVERLOAD => {
                return Err(Self::unsupported("overloaded object", start));
            }
            op::TIED_ARRAY | op::TIED_HASH | op::TIED_SCALAR | op::TIED_KEY | op::TIED_IDX => {
                return Err(Self::unsupported("tied variable", start));
            }
            op::VSTRING | op::LVSTRING => return Err(Self::unsupported("v-string", start)),
            op::REGEXP => return Err(Self::unsupported("regexp", start)),
            op::LOBJECT => return Err(Self::unsupported("object over 2 GiB", start)),
            op::INTEGER | op::DOUBLE => {
                return Err(Self::unsupported("native-order number", start));
            }
            opcode => {
                return Err(StorableError::BadOpcode {
                    opcode,
                    offset: start,
                });
            }
        };
        self.done(tag);
        Ok(value)
    }

    fn key(&mut self, flagged: bool) -> Result<String, StorableError> {
        let offset = self.pos;
        let flags = if flagged { self.u8()? } else { 0 };
        if flags & KEY_IS_SV != 0 {
            return Err(Self::unsupported("hash key stored as an object", offset));
        }
        let len = self.len(true, 1)?;
        let bytes = self.take(len)?;
        if flags & KEY_UTF8 != 0 && flags & KEY_WAS_UTF8 == 0 {
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| StorableError::InvalidUtf8 { offset })
        } else {
            // A Perl key without the UTF-8 flag is Latin-1 text.
            Ok(bytes.iter().map(|&b| char::from(b)).collect())
        }
    }

    fn blessed(&mut self, opcode: u8, start: usize) -> StorableError {
        let class = if opcode == op::BLESS {
            let len = match self.u8() {
                Ok(len) if len & 0x80 != 0 => self.u32().map(|l| l as usize),
                Ok(len) => Ok(usize::from(len)),
                Err(e) => Err(e),
            };
            len.and_then(|len| {
                self.take(len)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .ok()
        } else {
            None
        };
        let what = match class {
            Some(class) => format!("blessed object of class {class}"),
            None => "blessed object".to_owned(),
        };
        Self::unsupported(what, start)
    }

    /// `SX_OBJECT`: the same Perl object again. It is read again from where
    /// it starts, so no value is kept around for objects never referenced
    /// twice (nearly all of them).
    fn back_reference(&mut self, offset: usize) -> Result<Value, StorableError> {
        let tag = self.u32()?;
        let bad = StorableError::BadBackReference { tag, offset };
        let index = usize::try_from(tag).map_err(|_| bad.clone())?;
        let Some(seen) = self.seen.get(index).copied() else {
            return Err(bad);
        };
        if !seen.complete || index >= self.next_tag {
            return Err(bad);
        }
        // Reading it again numbers its inner objects with the tags they
        // already have.
        let (resume, next_tag) = (self.pos, self.next_tag);
        self.pos = seen.start;
        self.next_tag = index;
        let value = self.object();
        self.pos = resume;
        self.next_tag = next_tag;
        value
    }
}
