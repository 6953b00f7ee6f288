//! Arbitrary bytes as a protobuf `Value` and as a `Frame` (prost decode),
//! then `Value::from_proto` with its depth limit, then through serde.
//!
//! Checked: no panic (and no stack overflow on deep input); `from_proto`
//! fails only with `TooDeep`, and what it accepts nests at most `MAX_DEPTH`
//! levels; an accepted value survives encode → decode → `from_proto`
//! bit for bit (NaN included, so the comparison is on encoded bytes); it
//! reads back as a `Value` through serde (`from_value`, `to_value`)
//! unchanged; reading it into a nested user struct may fail but never
//! panics.

#![no_main]

use std::collections::BTreeMap;

use ikc_proto::value::{MAX_DEPTH, from_value, to_value};
use ikc_proto::{Value, ValueError, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use serde::Deserialize;

/// A user type with the shapes serde has: a struct, an optional box of
/// itself, a sequence, a map with integer keys, an enum of every variant
/// kind, and bytes.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // only deserialized
struct Nested {
    name: String,
    tags: Vec<String>,
    child: Option<Box<Nested>>,
    scores: BTreeMap<u32, Vec<Option<f64>>>,
    shape: Shape,
    raw: Vec<u8>,
    pair: (i8, bool),
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)] // only deserialized
enum Shape {
    Point,
    Circle(f64),
    Line(i64, i64),
    Box { width: u16, height: u16 },
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = pb::Value::decode(data) {
        check(Some(value));
    }
    if let Ok(frame) = pb::Frame::decode(data) {
        match frame.kind {
            Some(pb::frame::Kind::Request(request)) => check(request.arg),
            Some(pb::frame::Kind::Reply(reply)) => check(reply.value),
            _ => {}
        }
    }
});

fn encoded(value: &Value) -> Vec<u8> {
    value.clone().into_proto().encode_to_vec()
}

fn check(wire: Option<pb::Value>) {
    let value = match Value::from_proto(wire) {
        Ok(value) => value,
        Err(ValueError::TooDeep { max }) => {
            assert_eq!(max, MAX_DEPTH);
            return;
        }
        Err(error) => panic!("from_proto failed with something other than depth: {error}"),
    };
    assert!(
        value.depth() <= MAX_DEPTH,
        "accepted depth {}",
        value.depth()
    );

    let bytes = encoded(&value);
    let wire = pb::Value::decode(&bytes[..]).expect("our own encoding decodes");
    let back = Value::from_proto(Some(wire)).expect("our own encoding is within the limit");
    assert_eq!(encoded(&back), bytes, "wire round trip changed the value");

    let through: Value = from_value(value.clone()).expect("an accepted value reads as a Value");
    assert_eq!(
        encoded(&through),
        bytes,
        "from_value::<Value> changed the value"
    );
    let serialized = to_value(&value).expect("an accepted value serializes");
    assert_eq!(encoded(&serialized), bytes, "to_value changed the value");

    if let Err(error) = from_value::<Nested>(value) {
        let _ = error.to_string();
    }
}
