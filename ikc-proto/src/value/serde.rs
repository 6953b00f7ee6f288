//! serde bridge (in progress).
use super::{Value, ValueError};

/// Converts any serde type into a [`Value`].
///
/// # Errors
///
/// When serialization fails or nests too deeply.
pub fn to_value<T: ::serde::Serialize + ?Sized>(_value: &T) -> Result<Value, ValueError> {
    Err(ValueError::Serde("unimplemented".into()))
}

/// Converts a [`Value`] into any serde type.
///
/// # Errors
///
/// When the value does not match the type.
pub fn from_value<T: ::serde::de::DeserializeOwned>(_value: Value) -> Result<T, ValueError> {
    Err(ValueError::Serde("unimplemented".into()))
}
