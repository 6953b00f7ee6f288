//! [`Value`]: the dynamically typed argument and result of every ikc event.
//!
//! A `Value` is what travels on the wire as `ikc.v1.Value`: null, bool, a
//! signed 64-bit integer, a double, a UTF-8 string, bytes, a list, or a map
//! with string keys. It converts from and to Rust types with `From` and
//! `TryFrom`, and from and to any serde type with [`to_value`] and
//! [`from_value`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use ikc_proto::Value;
//!
//! let v = Value::from(vec![1, 2, 3]);
//! assert_eq!(Vec::<i64>::try_from(v)?, vec![1, 2, 3]);
//!
//! let mut map = BTreeMap::new();
//! map.insert("name".to_owned(), Value::from("ikc"));
//! assert_eq!(Value::from(map.clone()), Value::Map(map));
//! # Ok::<(), ikc_proto::ValueError>(())
//! ```
//!
//! # Depth limit
//!
//! Values are trees, and a peer controls the ones it sends. Conversions from
//! the wire and through serde refuse values nested deeper than
//! [`MAX_DEPTH`] levels with [`ValueError::TooDeep`].

mod convert;
mod error;
mod serde;

use std::collections::BTreeMap;

use bytes::Bytes;

pub use self::error::ValueError;
pub use self::serde::{from_value, to_value};
use crate::pb;

/// Deepest nesting of lists and maps accepted from the wire and through
/// serde: 32 levels. A scalar is depth 0; `[1]` is depth 1.
pub const MAX_DEPTH: usize = 32;

/// A dynamically typed value: the argument and result of every ikc event.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value (Perl's `undef`, JSON's `null`).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// Raw bytes.
    Bytes(Bytes),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with string keys, ordered by key.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The name of this value's type, as used in error messages.
    #[must_use]
    pub const fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// Whether this is [`Value::Null`].
    #[must_use]
    pub const fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The boolean, if this is one.
    #[must_use]
    pub const fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    #[must_use]
    pub const fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as a float, if this is a float or an integer.
    #[must_use]
    #[allow(clippy::cast_precision_loss)] // documented: integers become the nearest float
    pub const fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is [`Value::Bytes`].
    #[must_use]
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if this is a list.
    #[must_use]
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries, if this is a map.
    #[must_use]
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// How deeply lists and maps nest in this value (a scalar is 0).
    #[must_use]
    pub fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Map(entries) => 1 + entries.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Converts a decoded wire value, refusing nesting deeper than
    /// [`MAX_DEPTH`]. An absent value is null.
    ///
    /// # Errors
    ///
    /// [`ValueError::TooDeep`] when the value nests too deeply.
    pub fn from_proto(value: Option<pb::Value>) -> Result<Value, ValueError> {
        convert::from_proto(value, 0)
    }

    /// Converts to the wire representation.
    #[must_use]
    pub fn into_proto(self) -> pb::Value {
        convert::into_proto(self)
    }
}

impl From<Value> for pb::Value {
    fn from(value: Value) -> Self {
        value.into_proto()
    }
}

impl TryFrom<pb::Value> for Value {
    type Error = ValueError;

    fn try_from(value: pb::Value) -> Result<Self, ValueError> {
        Value::from_proto(Some(value))
    }
}
