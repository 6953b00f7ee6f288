//! Strategies shared by the property tests.

use ikc_proto::Value;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

/// Any [`Value`] up to 4 levels deep with at most 8 items per list or map.
/// Floats exclude NaN, so that round trips can be checked with `==`.
pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,12}".prop_map(Value::String),
        vec(any::<u8>(), 0..16).prop_map(|b| Value::Bytes(b.into())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::List),
            btree_map(".{0,8}", inner, 0..8).prop_map(Value::Map),
        ]
    })
}
