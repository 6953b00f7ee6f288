//! The serde bridge: any `Serialize` type into a [`Value`], and a [`Value`]
//! into any `Deserialize` type.
//!
//! [`to_value`] and [`from_value`] work like `serde_json::to_value` and
//! `serde_json::from_value`, with the same data model; [`to_value`] has the
//! table.
//!
//! [`Value`] itself implements `Serialize` and `Deserialize`, so any serde
//! format reads and writes it: with `serde_json`, JSON text becomes a
//! `Value` and back. Both directions refuse lists and maps nested deeper
//! than [`MAX_DEPTH`](super::MAX_DEPTH).

mod de;
mod ser;

use std::fmt::Display;

use ::serde::Serialize;
use ::serde::de::DeserializeOwned;

use super::{Value, ValueError};

/// Converts any serde type into a [`Value`], the way
/// `serde_json::to_value` does.
///
/// | Rust (serde) | [`Value`] |
/// | --- | --- |
/// | `()`, `None`, unit struct | `Null` |
/// | integers | `Int` |
/// | `f32`, `f64` | `Float` |
/// | `char`, `str` | `String` |
/// | bytes (`serialize_bytes`) | `Bytes` |
/// | sequence, tuple, tuple struct | `List` |
/// | map, struct | `Map` |
/// | unit variant | `String("Variant")` |
/// | newtype, tuple and struct variants | `Map { "Variant": value, [..] or {..} }` |
/// | `Some(x)`, newtype struct | `x` |
///
/// Map keys must be strings; integer, bool and char keys are written out as
/// `serde_json` writes them, and a unit variant key becomes its name. A
/// `Vec<u8>` is a sequence to serde, so it becomes a list of integers; only
/// types that call `serialize_bytes` (`serde_bytes`, or [`Value::Bytes`]
/// itself) become [`Value::Bytes`].
///
/// # Examples
///
/// A struct with a list of enums and an option, there and back:
///
/// ```
/// use ikc_proto::Value;
/// use ikc_proto::value::{from_value, to_value};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum Shape {
///     Point,
///     Circle { radius: f64 },
/// }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Drawing {
///     name: String,
///     shapes: Vec<Shape>,
///     owner: Option<String>,
/// }
///
/// let drawing = Drawing {
///     name: "sketch".to_owned(),
///     shapes: vec![Shape::Point, Shape::Circle { radius: 1.5 }],
///     owner: None,
/// };
/// let value = to_value(&drawing)?;
/// let fields = value.as_map().expect("a struct is a map");
/// assert_eq!(fields["name"], Value::from("sketch"));
/// assert_eq!(fields["owner"], Value::Null);
/// assert_eq!(from_value::<Drawing>(value)?, drawing);
/// # Ok::<(), ikc_proto::ValueError>(())
/// ```
///
/// Integer keys become strings:
///
/// ```
/// use std::collections::BTreeMap;
/// use ikc_proto::Value;
/// use ikc_proto::value::to_value;
///
/// let scores = BTreeMap::from([(1, "gold"), (2, "silver")]);
/// let value = to_value(&scores)?;
/// assert_eq!(value.as_map().and_then(|m| m.get("1")), Some(&Value::from("gold")));
/// # Ok::<(), ikc_proto::ValueError>(())
/// ```
///
/// # Errors
///
/// - [`ValueError::OutOfRange`] for a `u64`, `u128` or `i128` outside `i64`.
/// - [`ValueError::TooDeep`] when lists and maps nest deeper than
///   [`MAX_DEPTH`](super::MAX_DEPTH).
/// - [`ValueError::Serde`] for a map key that is not a string, integer,
///   bool, char or unit variant, or when `T`'s `Serialize` fails.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ser::Serializer::new())
}

/// Converts a [`Value`] into any serde type, the way
/// `serde_json::from_value` does.
///
/// The mapping is [`to_value`]'s, read backwards. Map keys are parsed back
/// into integers or bools when `T` asks for them; an enum is read from a
/// string (unit variant) or a map with one key; a struct from a map or from
/// a list of its fields in order; a sequence such as `Vec<u8>` from a list or
/// from [`Value::Bytes`]; a float from a float or an integer.
///
/// # Examples
///
/// ```
/// use std::collections::HashMap;
/// use ikc_proto::Value;
/// use ikc_proto::value::from_value;
///
/// let value = Value::from(HashMap::from([("7", vec![1, 2])]));
/// let decoded: HashMap<u32, Vec<u8>> = from_value(value)?;
/// assert_eq!(decoded[&7], [1, 2]);
/// # Ok::<(), ikc_proto::ValueError>(())
/// ```
///
/// # Errors
///
/// - [`ValueError::Type`] when the value has another type than `T` asks for
///   at some position (a string where an integer is expected, say).
/// - [`ValueError::OutOfRange`] for an integer that does not fit the field.
/// - [`ValueError::TooDeep`] when lists and maps nest deeper than
///   [`MAX_DEPTH`](super::MAX_DEPTH).
/// - [`ValueError::Serde`] for everything `T`'s `Deserialize` reports
///   itself: a missing field, an unknown variant, a wrong length.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    T::deserialize(de::Deserializer::new(value))
}

impl ::serde::ser::Error for ValueError {
    fn custom<T: Display>(msg: T) -> Self {
        ValueError::Serde(msg.to_string())
    }
}

impl ::serde::de::Error for ValueError {
    fn custom<T: Display>(msg: T) -> Self {
        ValueError::Serde(msg.to_string())
    }
}
