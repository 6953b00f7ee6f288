//! `Value` conversions: `From`/`TryFrom` with Rust types, and the wire type
//! (`pb::Value`) with its depth limit.

mod support;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use ikc_proto::value::{MAX_DEPTH, from_value, to_value};
use ikc_proto::{Value, ValueError, pb};
use proptest::prelude::*;
use prost::Message;

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// `depth` wire lists, one inside the other, around the integer 0.
fn nested_proto_lists(depth: usize) -> pb::Value {
    (0..depth).fold(Value::Int(0).into_proto(), |inner, _| pb::Value {
        kind: Some(pb::value::Kind::List(pb::List { items: vec![inner] })),
    })
}

/// `depth` wire maps, one inside the other, each with the key `k`.
fn nested_proto_maps(depth: usize) -> pb::Value {
    (0..depth).fold(pb::Value::default(), |inner, _| pb::Value {
        kind: Some(pb::value::Kind::Map(pb::Map {
            entries: BTreeMap::from([("k".to_owned(), inner)]),
        })),
    })
}

// ---- Rust types into Value ----

#[test]
fn scalars_convert_into_the_matching_variant() {
    assert_eq!(Value::from(true), Value::Bool(true));
    assert_eq!(Value::from(-8i8), Value::Int(-8));
    assert_eq!(Value::from(-16i16), Value::Int(-16));
    assert_eq!(Value::from(-32i32), Value::Int(-32));
    assert_eq!(Value::from(i64::MIN), Value::Int(i64::MIN));
    assert_eq!(Value::from(u16::MAX), Value::Int(65_535));
    assert_eq!(Value::from(u32::MAX), Value::Int(4_294_967_295));
    assert_eq!(Value::from(0.5f32), Value::Float(0.5));
    assert_eq!(Value::from(2.5f64), Value::Float(2.5));
    assert_eq!(Value::from(()), Value::Null);
}

#[test]
fn strings_of_every_kind_convert_into_string() {
    let owned = "s".to_owned();
    for value in [
        Value::from("s"),
        Value::from(owned.clone()),
        Value::from(&owned),
        Value::from(Box::<str>::from("s")),
        Value::from(Cow::Borrowed("s")),
    ] {
        assert_eq!(value, Value::String("s".to_owned()));
    }
}

#[test]
fn byte_buffers_convert_into_bytes_not_lists() {
    let expected = Value::Bytes(Bytes::from_static(b"ab"));
    assert_eq!(Value::from(Bytes::from_static(b"ab")), expected);
    assert_eq!(Value::from(b"ab".to_vec()), expected);
    assert_eq!(Value::from(&b"ab"[..]), expected);
}

#[test]
fn option_converts_into_null_or_the_inner_value() {
    assert_eq!(Value::from(Some(3)), Value::Int(3));
    assert_eq!(Value::from(None::<i32>), Value::Null);
    assert_eq!(Value::from(Some("x")), Value::from("x"));
}

#[test]
fn vectors_iterators_and_maps_convert_into_lists_and_maps() {
    assert_eq!(
        Value::from(vec![1, 2]),
        Value::List(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(
        (1..=2).collect::<Value>(),
        Value::List(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(
        Value::from(BTreeMap::from([("a", 1)])),
        map([("a", Value::Int(1))])
    );
    assert_eq!(
        Value::from(HashMap::from([("b".to_owned(), vec![true])])),
        map([("b", Value::List(vec![Value::Bool(true)]))])
    );
}

#[test]
fn unsigned_64_bit_integers_convert_only_within_i64() {
    assert_eq!(Value::try_from(5u64), Ok(Value::Int(5)));
    assert_eq!(Value::try_from(7usize), Ok(Value::Int(7)));
    assert_eq!(
        Value::try_from(u64::MAX),
        Err(ValueError::OutOfRange {
            target: "ikc int (i64)"
        })
    );
}

// ---- Value into Rust types ----

#[test]
fn scalars_convert_back_from_the_matching_variant() {
    assert_eq!(bool::try_from(Value::Bool(true)), Ok(true));
    assert_eq!(i8::try_from(Value::Int(-8)), Ok(-8));
    assert_eq!(u16::try_from(Value::Int(9)), Ok(9));
    assert_eq!(
        u64::try_from(Value::Int(i64::MAX)),
        Ok(i64::MAX.unsigned_abs())
    );
    assert_eq!(usize::try_from(Value::Int(3)), Ok(3));
    assert_eq!(f64::try_from(Value::Float(1.5)), Ok(1.5));
    assert_eq!(f64::try_from(Value::Int(2)), Ok(2.0));
    assert_eq!(String::try_from(Value::from("s")), Ok("s".to_owned()));
    assert_eq!(
        Bytes::try_from(Value::from(b"b".to_vec())),
        Ok(Bytes::from_static(b"b"))
    );
    assert_eq!(
        Vec::<u8>::try_from(Value::from(b"b".to_vec())),
        Ok(b"b".to_vec())
    );
    assert_eq!(<()>::try_from(Value::Null), Ok(()));
}

#[test]
fn integers_that_do_not_fit_are_out_of_range() {
    assert_eq!(
        i8::try_from(Value::Int(200)),
        Err(ValueError::OutOfRange { target: "i8" })
    );
    assert_eq!(
        u64::try_from(Value::Int(-1)),
        Err(ValueError::OutOfRange { target: "u64" })
    );
    assert_eq!(
        u32::try_from(Value::Int(1 << 40)),
        Err(ValueError::OutOfRange { target: "u32" })
    );
}

#[test]
fn wrong_variants_are_type_errors_naming_both_types() {
    assert_eq!(
        bool::try_from(Value::Int(1)),
        Err(ValueError::Type {
            expected: "bool",
            found: "int"
        })
    );
    assert_eq!(
        i64::try_from(Value::Float(1.0)),
        Err(ValueError::Type {
            expected: "int",
            found: "float"
        })
    );
    assert_eq!(
        String::try_from(Value::Bytes(Bytes::new())),
        Err(ValueError::Type {
            expected: "string",
            found: "bytes"
        })
    );
    assert_eq!(
        <()>::try_from(Value::Bool(false)),
        Err(ValueError::Type {
            expected: "null",
            found: "bool"
        })
    );
    assert_eq!(
        Vec::<i64>::try_from(map([])),
        Err(ValueError::Type {
            expected: "list",
            found: "map"
        })
    );
    assert_eq!(
        BTreeMap::<String, i64>::try_from(Value::List(vec![])),
        Err(ValueError::Type {
            expected: "map",
            found: "list"
        })
    );
}

#[test]
fn option_vec_and_maps_convert_back_element_by_element() {
    assert_eq!(Option::<i32>::try_from(Value::Null), Ok(None));
    assert_eq!(Option::<i32>::try_from(Value::Int(4)), Ok(Some(4)));
    assert_eq!(
        Vec::<Option<String>>::try_from(Value::List(vec![Value::Null, Value::from("x")])),
        Ok(vec![None, Some("x".to_owned())])
    );
    assert_eq!(
        BTreeMap::<String, i64>::try_from(map([("a", Value::Int(1))])),
        Ok(BTreeMap::from([("a".to_owned(), 1)]))
    );
    assert_eq!(
        HashMap::<String, bool>::try_from(map([("t", Value::Bool(true))])),
        Ok(HashMap::from([("t".to_owned(), true)]))
    );
    // One bad element fails the whole conversion, with its own error.
    assert_eq!(
        Vec::<u8>::try_from(Value::List(vec![Value::Int(1)])),
        Err(ValueError::Type {
            expected: "bytes",
            found: "list"
        })
    );
    assert_eq!(
        Vec::<i8>::try_from(Value::from(vec![1, 1000])),
        Err(ValueError::OutOfRange { target: "i8" })
    );
}

#[test]
fn accessors_answer_only_for_their_own_variant() {
    let value = Value::Int(3);
    assert_eq!(value.as_i64(), Some(3));
    assert_eq!(value.as_f64(), Some(3.0));
    assert_eq!(value.as_bool(), None);
    assert_eq!(value.as_str(), None);
    assert_eq!(value.type_name(), "int");
    assert!(Value::default().is_null());
}

// ---- the wire type ----

#[test]
fn absent_wire_value_is_null() {
    assert_eq!(Value::from_proto(None), Ok(Value::Null));
    assert_eq!(
        Value::from_proto(Some(pb::Value::default())),
        Ok(Value::Null)
    );
}

#[test]
fn from_proto_accepts_exactly_max_depth_and_refuses_one_more() {
    let value = Value::from_proto(Some(nested_proto_lists(MAX_DEPTH))).expect("at the limit");
    assert_eq!(value.depth(), MAX_DEPTH);
    assert_eq!(
        Value::from_proto(Some(nested_proto_lists(MAX_DEPTH + 1))),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );

    let value = Value::try_from(nested_proto_maps(MAX_DEPTH)).expect("at the limit");
    assert_eq!(value.depth(), MAX_DEPTH);
    assert_eq!(
        Value::try_from(nested_proto_maps(MAX_DEPTH + 1)),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn too_deep_value_decoded_from_wire_bytes_is_refused() {
    let wire = nested_proto_lists(MAX_DEPTH + 1).encode_to_vec();
    let decoded = pb::Value::decode(wire.as_slice()).expect("prost allows this depth");
    assert_eq!(
        Value::from_proto(Some(decoded)),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );
}

proptest! {
    #[test]
    fn any_value_survives_the_wire_type(value in support::arb_value()) {
        let back = Value::from_proto(Some(value.clone().into_proto()));
        prop_assert_eq!(back, Ok(value));
    }

    #[test]
    fn any_value_survives_protobuf_bytes(value in support::arb_value()) {
        let wire = pb::Value::from(value.clone()).encode_to_vec();
        let decoded = pb::Value::decode(wire.as_slice()).expect("valid protobuf");
        prop_assert_eq!(Value::try_from(decoded), Ok(value));
    }

    #[test]
    fn any_value_survives_to_value_and_from_value(value in support::arb_value()) {
        prop_assert_eq!(to_value(&value), Ok(value.clone()));
        prop_assert_eq!(from_value::<Value>(value.clone()), Ok(value));
    }
}
