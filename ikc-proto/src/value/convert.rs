//! Conversions between [`Value`] and the wire type, and between [`Value`]
//! and Rust types.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use bytes::Bytes;

use super::{MAX_DEPTH, Value, ValueError};
use crate::pb::{self, value::Kind};

pub(super) fn from_proto(value: Option<pb::Value>, depth: usize) -> Result<Value, ValueError> {
    let Some(kind) = value.and_then(|v| v.kind) else {
        return Ok(Value::Null);
    };
    Ok(match kind {
        Kind::Null(_) => Value::Null,
        Kind::Bool(b) => Value::Bool(b),
        Kind::Int(i) => Value::Int(i),
        Kind::Float(f) => Value::Float(f),
        Kind::String(s) => Value::String(s),
        Kind::Bytes(b) => Value::Bytes(b),
        Kind::List(list) => {
            let depth = nested(depth)?;
            Value::List(
                list.items
                    .into_iter()
                    .map(|item| from_proto(Some(item), depth))
                    .collect::<Result<_, _>>()?,
            )
        }
        Kind::Map(map) => {
            let depth = nested(depth)?;
            Value::Map(
                map.entries
                    .into_iter()
                    .map(|(key, item)| Ok((key, from_proto(Some(item), depth)?)))
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

pub(super) fn nested(depth: usize) -> Result<usize, ValueError> {
    if depth >= MAX_DEPTH {
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    } else {
        Ok(depth + 1)
    }
}

pub(super) fn into_proto(value: Value) -> pb::Value {
    let kind = match value {
        Value::Null => Kind::Null(pb::Null::Value.into()),
        Value::Bool(b) => Kind::Bool(b),
        Value::Int(i) => Kind::Int(i),
        Value::Float(f) => Kind::Float(f),
        Value::String(s) => Kind::String(s),
        Value::Bytes(b) => Kind::Bytes(b),
        Value::List(items) => Kind::List(pb::List {
            items: items.into_iter().map(into_proto).collect(),
        }),
        Value::Map(entries) => Kind::Map(pb::Map {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k, into_proto(v)))
                .collect(),
        }),
    };
    pb::Value { kind: Some(kind) }
}

// ---- Rust types into Value ----

macro_rules! from_scalar {
    ($variant:ident: $($ty:ty),*) => {
        $(
            impl From<$ty> for Value {
                fn from(v: $ty) -> Self {
                    Value::$variant(v.into())
                }
            }
        )*
    };
}

// `u8` is left out on purpose: `Vec<u8>` and `&[u8]` are bytes, not lists.
from_scalar!(Bool: bool);
from_scalar!(Int: i8, i16, i32, i64, u16, u32);
from_scalar!(Float: f32, f64);
from_scalar!(String: String, &str, &String, Box<str>, Cow<'_, str>);
from_scalar!(Bytes: Bytes, Vec<u8>, &'static [u8]);

macro_rules! try_from_unsigned {
    ($($ty:ty),*) => {
        $(
            impl TryFrom<$ty> for Value {
                type Error = ValueError;

                fn try_from(v: $ty) -> Result<Self, ValueError> {
                    i64::try_from(v)
                        .map(Value::Int)
                        .map_err(|_| ValueError::OutOfRange { target: "ikc int (i64)" })
                }
            }
        )*
    };
}

try_from_unsigned!(u64, usize);

impl From<()> for Value {
    fn from((): ()) -> Self {
        Value::Null
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::List(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Value>> FromIterator<T> for Value {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Value::List(iter.into_iter().map(Into::into).collect())
    }
}

impl<K: Into<String>, T: Into<Value>> From<BTreeMap<K, T>> for Value {
    fn from(entries: BTreeMap<K, T>) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<String>, T: Into<Value>, S> From<HashMap<K, T, S>> for Value {
    fn from(entries: HashMap<K, T, S>) -> Self {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

// ---- Value into Rust types ----

pub(super) fn mismatch(expected: &'static str, found: &Value) -> ValueError {
    ValueError::Type {
        expected,
        found: found.type_name(),
    }
}

impl TryFrom<Value> for bool {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        v.as_bool().ok_or_else(|| mismatch("bool", &v))
    }
}

macro_rules! try_into_int {
    ($($ty:ty),*) => {
        $(
            impl TryFrom<Value> for $ty {
                type Error = ValueError;

                fn try_from(v: Value) -> Result<Self, ValueError> {
                    let i = v.as_i64().ok_or_else(|| mismatch("int", &v))?;
                    <$ty>::try_from(i).map_err(|_| ValueError::OutOfRange { target: stringify!($ty) })
                }
            }
        )*
    };
}

try_into_int!(i8, i16, i32, i64, u16, u32, u64, usize);

impl TryFrom<Value> for f64 {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        v.as_f64().ok_or_else(|| mismatch("float", &v))
    }
}

impl TryFrom<Value> for String {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::String(s) => Ok(s),
            other => Err(mismatch("string", &other)),
        }
    }
}

impl TryFrom<Value> for Bytes {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Bytes(b) => Ok(b),
            other => Err(mismatch("bytes", &other)),
        }
    }
}

impl TryFrom<Value> for Vec<u8> {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        Bytes::try_from(v).map(Vec::from)
    }
}

impl TryFrom<Value> for () {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        if v.is_null() {
            Ok(())
        } else {
            Err(mismatch("null", &v))
        }
    }
}

impl<T: TryFrom<Value, Error = ValueError>> TryFrom<Value> for Option<T> {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        if v.is_null() {
            Ok(None)
        } else {
            T::try_from(v).map(Some)
        }
    }
}

impl<T: TryFrom<Value, Error = ValueError>> TryFrom<Value> for Vec<T> {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::List(items) => items.into_iter().map(T::try_from).collect(),
            other => Err(mismatch("list", &other)),
        }
    }
}

impl<T: TryFrom<Value, Error = ValueError>> TryFrom<Value> for BTreeMap<String, T> {
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| Ok((k, T::try_from(v)?)))
                .collect(),
            other => Err(mismatch("map", &other)),
        }
    }
}

impl<K, T, S> TryFrom<Value> for HashMap<K, T, S>
where
    K: From<String> + Eq + Hash,
    T: TryFrom<Value, Error = ValueError>,
    S: BuildHasher + Default,
{
    type Error = ValueError;

    fn try_from(v: Value) -> Result<Self, ValueError> {
        match v {
            Value::Map(entries) => entries
                .into_iter()
                .map(|(k, v)| Ok((K::from(k), T::try_from(v)?)))
                .collect(),
            other => Err(mismatch("map", &other)),
        }
    }
}
