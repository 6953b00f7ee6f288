//! Deserialization from a [`Value`] (the `Deserializer` behind
//! [`from_value`](super::from_value)), and `Deserialize` for [`Value`].

use std::collections::BTreeMap;
use std::fmt;
use std::num::IntErrorKind;

use ::serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use ::serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, Unexpected, VariantAccess, Visitor,
};
use ::serde::{Deserialize, forward_to_deserialize_any};
use bytes::Bytes;

use crate::value::convert::{mismatch, nested};
use crate::value::{Value, ValueError};

/// Most items reserved up front from a format's length hint, which a peer
/// may control.
const MAX_PREALLOCATION: usize = 4096;

// ---- Any format into Value ----

impl<'de> Deserialize<'de> for Value {
    /// Reads any self-describing format. An integer that does not fit `i64`
    /// (a large `u64`, say) becomes the nearest [`Value::Float`]; lists and
    /// maps nested deeper than [`MAX_DEPTH`](crate::value::MAX_DEPTH) are
    /// refused.
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor { depth: 0 })
    }
}

/// Builds a [`Value`] nested inside `depth` lists and maps; the depth is
/// checked before a nested list or map is read, so deep input is refused
/// before it can exhaust the stack.
#[derive(Debug, Clone, Copy)]
struct ValueVisitor {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueVisitor {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ikc value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    // An integer too large for `Int` keeps its magnitude as a float, as
    // JSON readers do, rather than failing the whole value.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v.into()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_newtype_struct<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = nested(self.depth).map_err(de::Error::custom)?;
        let capacity = seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATION);
        let mut items = Vec::with_capacity(capacity);
        while let Some(item) = seq.next_element_seed(ValueVisitor { depth })? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = nested(self.depth).map_err(de::Error::custom)?;
        let mut entries = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            // A repeated key keeps its last value, as serde_json's own
            // `Value` does.
            entries.insert(key, map.next_value_seed(ValueVisitor { depth })?);
        }
        Ok(Value::Map(entries))
    }
}

// ---- Value into any type ----

/// Deserializes a [`Value`] nested inside `depth` lists and maps.
#[derive(Debug)]
pub(super) struct Deserializer {
    value: Value,
    depth: usize,
}

impl Deserializer {
    pub(super) const fn new(value: Value) -> Self {
        Deserializer { value, depth: 0 }
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for Deserializer {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

fn visit_list<'de, V: Visitor<'de>>(
    items: Vec<Value>,
    outer: usize,
    visitor: V,
) -> Result<V::Value, ValueError> {
    let depth = nested(outer)?;
    let mut seq = SeqDeserializer::<_, ValueError>::new(
        items.into_iter().map(|value| Deserializer { value, depth }),
    );
    let out = visitor.visit_seq(&mut seq)?;
    seq.end()?;
    Ok(out)
}

fn visit_map<'de, V: Visitor<'de>>(
    entries: BTreeMap<String, Value>,
    outer: usize,
    visitor: V,
) -> Result<V::Value, ValueError> {
    let depth = nested(outer)?;
    let mut map = MapDeserializer::<_, ValueError>::new(
        entries
            .into_iter()
            .map(|(key, value)| (MapKey(key), Deserializer { value, depth })),
    );
    let out = visitor.visit_map(&mut map)?;
    map.end()?;
    Ok(out)
}

/// Reads an integer value as `$ty`, with a typed error when it does not fit.
macro_rules! deserialize_int {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
                match self.value {
                    Value::Int(i) => visitor.$visit(<$ty>::try_from(i).map_err(|_| {
                        ValueError::OutOfRange { target: stringify!($ty) }
                    })?),
                    other => Err(mismatch("int", &other)),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Deserializer {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::String(s) => visitor.visit_string(s),
            Value::Bytes(b) => visitor.visit_byte_buf(b.into()),
            Value::List(items) => visit_list(items, self.depth, visitor),
            Value::Map(entries) => visit_map(entries, self.depth, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Bool(b) => visitor.visit_bool(b),
            other => Err(mismatch("bool", &other)),
        }
    }

    deserialize_int!(
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    );

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Int(i) => visitor.visit_i64(i),
            other => Err(mismatch("int", &other)),
        }
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Int(i) => visitor.visit_i128(i.into()),
            other => Err(mismatch("int", &other)),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Float(f) => visitor.visit_f64(f),
            // An integer is a fine float, as in JSON.
            Value::Int(i) => visitor.visit_i64(i),
            other => Err(mismatch("float", &other)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::String(s) => visitor.visit_string(s),
            other => Err(mismatch("string", &other)),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Bytes(b) => visitor.visit_byte_buf(b.into()),
            // What a JSON round trip leaves of bytes.
            Value::String(s) => visitor.visit_string(s),
            Value::List(items) => visit_list(items, self.depth, visitor),
            other => Err(mismatch("bytes", &other)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            other => Err(mismatch("null", &other)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::List(items) => visit_list(items, self.depth, visitor),
            // Lets a `Vec<u8>` (a sequence to serde) read bytes from a peer.
            Value::Bytes(bytes) => {
                let mut seq = SeqDeserializer::<_, ValueError>::new(bytes.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            other => Err(mismatch("list", &other)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Map(entries) => visit_map(entries, self.depth, visitor),
            other => Err(mismatch("map", &other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.value {
            Value::Map(entries) => visit_map(entries, self.depth, visitor),
            // Fields in order, as serde_json also accepts.
            Value::List(items) => visit_list(items, self.depth, visitor),
            other => Err(mismatch("map", &other)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self.value {
            Value::String(variant) => {
                let variant: StringDeserializer<ValueError> = variant.into_deserializer();
                visitor.visit_enum(variant)
            }
            Value::Map(entries) => {
                let mut entries = entries.into_iter();
                match (entries.next(), entries.next()) {
                    (Some((variant, value)), None) => visitor.visit_enum(EnumDeserializer {
                        variant,
                        value,
                        depth: nested(self.depth)?,
                    }),
                    _ => Err(de::Error::invalid_value(
                        Unexpected::Map,
                        &"a map with a single key",
                    )),
                }
            }
            other => Err(mismatch("string or map", &other)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_unit()
    }
}

/// An enum written as `{variant: value}`; `depth` is the value's.
#[derive(Debug)]
struct EnumDeserializer {
    variant: String,
    value: Value,
    depth: usize,
}

impl<'de> EnumAccess<'de> for EnumDeserializer {
    type Error = ValueError;
    type Variant = Deserializer;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Deserializer), ValueError> {
        let variant: StringDeserializer<ValueError> = self.variant.into_deserializer();
        let content = Deserializer {
            value: self.value,
            depth: self.depth,
        };
        Ok((seed.deserialize(variant)?, content))
    }
}

impl<'de> VariantAccess<'de> for Deserializer {
    type Error = ValueError;

    fn unit_variant(self) -> Result<(), ValueError> {
        match self.value {
            Value::Null => Ok(()),
            other => Err(mismatch("null", &other)),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, ValueError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

// ---- Map keys ----

/// A map key, which is always a string in a [`Value`]: parsed back into an
/// integer or a bool when the target type asks for one, the reverse of what
/// [`to_value`](super::to_value) does with such keys.
#[derive(Debug)]
struct MapKey(String);

impl<'de> IntoDeserializer<'de, ValueError> for MapKey {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! deserialize_key_int {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
                let n = self.0.parse::<$ty>().map_err(|error| match error.kind() {
                    IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                        ValueError::OutOfRange { target: stringify!($ty) }
                    }
                    _ => ValueError::Type { expected: "int", found: "string" },
                })?;
                visitor.$visit(n)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for MapKey {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_string(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self.0.as_str() {
            "true" => visitor.visit_bool(true),
            "false" => visitor.visit_bool(false),
            _ => Err(ValueError::Type {
                expected: "bool",
                found: "string",
            }),
        }
    }

    deserialize_key_int!(
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        let variant: StringDeserializer<ValueError> = self.0.into_deserializer();
        visitor.visit_enum(variant)
    }

    forward_to_deserialize_any! {
        f32 f64 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}
