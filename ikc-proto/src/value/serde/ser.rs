//! Serialization into a [`Value`] (the `Serializer` behind
//! [`to_value`](super::to_value)), and `Serialize` for [`Value`].

use std::collections::BTreeMap;

use ::serde::ser::{self, Impossible, Serialize};
use bytes::Bytes;

use crate::value::convert::nested;
use crate::value::{Value, ValueError};

/// Most items reserved up front from a `Serialize` impl's length hint: the
/// hint is not checked against what follows, so it is trusted only this far.
const MAX_PREALLOCATION: usize = 4096;

impl Serialize for Value {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::String(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_bytes(b),
            Value::List(items) => serializer.collect_seq(items),
            Value::Map(entries) => serializer.collect_map(entries),
        }
    }
}

fn out_of_range() -> ValueError {
    ValueError::OutOfRange {
        target: "ikc int (i64)",
    }
}

/// Serializes into a [`Value`] nested inside `depth` lists and maps.
#[derive(Debug, Clone, Copy)]
pub(super) struct Serializer {
    depth: usize,
}

impl Serializer {
    pub(super) const fn new() -> Self {
        Serializer { depth: 0 }
    }
}

impl ser::Serializer for Serializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SerializeList;
    type SerializeTuple = SerializeList;
    type SerializeTupleStruct = SerializeList;
    type SerializeTupleVariant = SerializeTupleVariant;
    type SerializeMap = SerializeMap;
    type SerializeStruct = SerializeMap;
    type SerializeStructVariant = SerializeStructVariant;

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }

    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        Ok(Value::Int(v))
    }

    fn serialize_i128(self, v: i128) -> Result<Value, ValueError> {
        i64::try_from(v).map(Value::Int).map_err(|_| out_of_range())
    }

    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        Ok(Value::Int(v.into()))
    }

    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        i64::try_from(v).map(Value::Int).map_err(|_| out_of_range())
    }

    fn serialize_u128(self, v: u128) -> Result<Value, ValueError> {
        i64::try_from(v).map(Value::Int).map_err(|_| out_of_range())
    }

    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        Ok(Value::Float(v.into()))
    }

    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Ok(Value::Float(v))
    }

    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_string()))
    }

    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_owned()))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Bytes(Bytes::copy_from_slice(v)))
    }

    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Null)
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::String(variant.to_owned()))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, ValueError> {
        let depth = nested(self.depth)?;
        let value = value.serialize(Serializer { depth })?;
        Ok(Value::Map(BTreeMap::from([(variant.to_owned(), value)])))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<SerializeList, ValueError> {
        SerializeList::new(self.depth, len)
    }

    fn serialize_tuple(self, len: usize) -> Result<SerializeList, ValueError> {
        SerializeList::new(self.depth, Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SerializeList, ValueError> {
        SerializeList::new(self.depth, Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SerializeTupleVariant, ValueError> {
        // `{variant: [..]}`: the map is one level, the list another.
        let depth = nested(self.depth)?;
        Ok(SerializeTupleVariant {
            variant,
            items: SerializeList::new(depth, Some(len))?,
        })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<SerializeMap, ValueError> {
        SerializeMap::new(self.depth)
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<SerializeMap, ValueError> {
        SerializeMap::new(self.depth)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<SerializeStructVariant, ValueError> {
        // `{variant: {..}}`: two levels, like a tuple variant.
        let depth = nested(self.depth)?;
        Ok(SerializeStructVariant {
            variant,
            fields: SerializeMap::new(depth)?,
        })
    }
}

/// Collects a sequence, tuple or tuple struct into [`Value::List`].
#[derive(Debug)]
pub(super) struct SerializeList {
    items: Vec<Value>,
    /// Depth of the items: one more than the list's own.
    depth: usize,
}

impl SerializeList {
    fn new(outer: usize, len: Option<usize>) -> Result<Self, ValueError> {
        Ok(SerializeList {
            items: Vec::with_capacity(len.map_or(0, |len| len.min(MAX_PREALLOCATION))),
            depth: nested(outer)?,
        })
    }

    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        let depth = self.depth;
        self.items.push(value.serialize(Serializer { depth })?);
        Ok(())
    }
}

impl ser::SerializeSeq for SerializeList {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTuple for SerializeList {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.items))
    }
}

impl ser::SerializeTupleStruct for SerializeList {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::List(self.items))
    }
}

/// Collects a tuple variant into `{variant: [..]}`.
#[derive(Debug)]
pub(super) struct SerializeTupleVariant {
    variant: &'static str,
    items: SerializeList,
}

impl ser::SerializeTupleVariant for SerializeTupleVariant {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        self.items.push(value)
    }

    fn end(self) -> Result<Value, ValueError> {
        let items = Value::List(self.items.items);
        Ok(Value::Map(BTreeMap::from([(
            self.variant.to_owned(),
            items,
        )])))
    }
}

/// Collects a map or struct into [`Value::Map`].
#[derive(Debug)]
pub(super) struct SerializeMap {
    entries: BTreeMap<String, Value>,
    /// The key given to `serialize_key`, waiting for its value.
    key: Option<String>,
    /// Depth of the values: one more than the map's own.
    depth: usize,
}

impl SerializeMap {
    fn new(outer: usize) -> Result<Self, ValueError> {
        Ok(SerializeMap {
            entries: BTreeMap::new(),
            key: None,
            depth: nested(outer)?,
        })
    }

    fn insert<T: Serialize + ?Sized>(&mut self, key: String, value: &T) -> Result<(), ValueError> {
        let depth = self.depth;
        self.entries
            .insert(key, value.serialize(Serializer { depth })?);
        Ok(())
    }
}

impl ser::SerializeMap for SerializeMap {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        self.key = Some(key.serialize(MapKeySerializer)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), ValueError> {
        // serde allows a panic here; an error is kinder.
        let key = self
            .key
            .take()
            .ok_or_else(|| ValueError::Serde("map value serialized before its key".to_owned()))?;
        self.insert(key, value)
    }

    fn serialize_entry<K, V>(&mut self, key: &K, value: &V) -> Result<(), ValueError>
    where
        K: Serialize + ?Sized,
        V: Serialize + ?Sized,
    {
        let key = key.serialize(MapKeySerializer)?;
        self.insert(key, value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Map(self.entries))
    }
}

impl ser::SerializeStruct for SerializeMap {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        self.insert(key.to_owned(), value)
    }

    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Map(self.entries))
    }
}

/// Collects a struct variant into `{variant: {..}}`.
#[derive(Debug)]
pub(super) struct SerializeStructVariant {
    variant: &'static str,
    fields: SerializeMap,
}

impl ser::SerializeStructVariant for SerializeStructVariant {
    type Ok = Value;
    type Error = ValueError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), ValueError> {
        self.fields.insert(key.to_owned(), value)
    }

    fn end(self) -> Result<Value, ValueError> {
        let fields = Value::Map(self.fields.entries);
        Ok(Value::Map(BTreeMap::from([(
            self.variant.to_owned(),
            fields,
        )])))
    }
}

fn key_must_be_a_string(found: &str) -> ValueError {
    ValueError::Serde(format!("map key must be a string, found {found}"))
}

/// Serializes a map key into the string it is stored under: strings as they
/// are; integers, bools and chars written out as `serde_json` writes them;
/// a unit variant as its name. Anything else is refused.
#[derive(Debug, Clone, Copy)]
struct MapKeySerializer;

macro_rules! key_to_string {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method(self, v: $ty) -> Result<String, ValueError> {
                Ok(v.to_string())
            }
        )*
    };
}

macro_rules! key_refused {
    ($($method:ident: $ty:ty => $found:literal),* $(,)?) => {
        $(
            fn $method(self, _v: $ty) -> Result<String, ValueError> {
                Err(key_must_be_a_string($found))
            }
        )*
    };
}

impl ser::Serializer for MapKeySerializer {
    type Ok = String;
    type Error = ValueError;
    type SerializeSeq = Impossible<String, ValueError>;
    type SerializeTuple = Impossible<String, ValueError>;
    type SerializeTupleStruct = Impossible<String, ValueError>;
    type SerializeTupleVariant = Impossible<String, ValueError>;
    type SerializeMap = Impossible<String, ValueError>;
    type SerializeStruct = Impossible<String, ValueError>;
    type SerializeStructVariant = Impossible<String, ValueError>;

    key_to_string!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
        serialize_char: char,
    );

    key_refused!(
        serialize_f32: f32 => "a float",
        serialize_f64: f64 => "a float",
        serialize_bytes: &[u8] => "bytes",
    );

    fn serialize_str(self, v: &str) -> Result<String, ValueError> {
        Ok(v.to_owned())
    }

    fn serialize_none(self) -> Result<String, ValueError> {
        Err(key_must_be_a_string("an option"))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, ValueError> {
        Err(key_must_be_a_string("an option"))
    }

    fn serialize_unit(self) -> Result<String, ValueError> {
        Err(key_must_be_a_string("a unit"))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, ValueError> {
        Err(key_must_be_a_string("a unit struct"))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, ValueError> {
        Ok(variant.to_owned())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, ValueError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, ValueError> {
        Err(key_must_be_a_string("a newtype variant"))
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, ValueError> {
        Err(key_must_be_a_string("a sequence"))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, ValueError> {
        Err(key_must_be_a_string("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, ValueError> {
        Err(key_must_be_a_string("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, ValueError> {
        Err(key_must_be_a_string("a tuple variant"))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, ValueError> {
        Err(key_must_be_a_string("a map"))
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, ValueError> {
        Err(key_must_be_a_string("a struct"))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, ValueError> {
        Err(key_must_be_a_string("a struct variant"))
    }
}
