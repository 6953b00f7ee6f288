//! The serde bridge: `to_value`, `from_value`, and `Value` as a serde type
//! read and written by `serde_json`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use bytes::Bytes;
use ikc_proto::value::{MAX_DEPTH, from_value, to_value};
use ikc_proto::{Value, ValueError};
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---- user types ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Dot(i32),
    Segment(i32, i32),
    Rect { width: u32, height: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meters(f64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Marker;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pair(i16, String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    number: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Customer {
    name: String,
    tags: Vec<String>,
    address: Option<Address>,
}

/// Bytes that serialize with `serialize_bytes`, as `serde_bytes` would.
#[derive(Debug, Clone, PartialEq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BlobVisitor;

        impl Visitor<'_> for BlobVisitor {
            type Value = Blob;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
        }

        deserializer.deserialize_byte_buf(BlobVisitor)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: Customer,
    shapes: Vec<Shape>,
    by_name: HashMap<String, Shape>,
    totals: BTreeMap<String, f64>,
    by_id: BTreeMap<u32, Vec<Option<i64>>>,
    flags: BTreeMap<bool, char>,
    by_shape: BTreeMap<Kind, u8>,
    point: (i32, f64, String),
    pair: Pair,
    length: Meters,
    marker: Marker,
    nothing: (),
    blob: Blob,
    raw: Vec<u8>,
    nested: Vec<Vec<Option<Address>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Kind {
    Small,
    Large,
}

fn order() -> Order {
    Order {
        id: 9_007_199_254_740_993,
        customer: Customer {
            name: "Ada".to_owned(),
            tags: vec!["vip".to_owned(), "early".to_owned()],
            address: Some(Address {
                street: "Main".to_owned(),
                number: None,
            }),
        },
        shapes: vec![
            Shape::Empty,
            Shape::Dot(-3),
            Shape::Segment(1, 2),
            Shape::Rect {
                width: 4,
                height: 5,
            },
        ],
        by_name: HashMap::from([
            ("dot".to_owned(), Shape::Dot(1)),
            ("empty".to_owned(), Shape::Empty),
        ]),
        totals: BTreeMap::from([("net".to_owned(), 9.5), ("tax".to_owned(), -0.25)]),
        by_id: BTreeMap::from([(7, vec![Some(1), None]), (4_000_000_000, vec![])]),
        flags: BTreeMap::from([(true, 'y'), (false, 'n')]),
        by_shape: BTreeMap::from([(Kind::Small, 1), (Kind::Large, 2)]),
        point: (-1, 0.5, "p".to_owned()),
        pair: Pair(-7, "seven".to_owned()),
        length: Meters(12.5),
        marker: Marker,
        nothing: (),
        blob: Blob(vec![0, 1, 254, 255]),
        raw: vec![9, 8, 7],
        nested: vec![
            vec![None],
            vec![],
            vec![Some(Address {
                street: "Side".to_owned(),
                number: Some(2),
            })],
        ],
    }
}

fn round_trip<T: Serialize + DeserializeOwned>(value: &T) -> T {
    from_value(to_value(value).expect("to_value")).expect("from_value")
}

/// The same thing through serde_json's own `Value`, then into ours.
fn via_json<T: Serialize>(value: &T) -> Value {
    let json = serde_json::to_value(value).expect("serde_json::to_value");
    serde_json::from_value(json).expect("json into Value")
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// `depth` lists, one inside the other, around the integer 0.
fn nested_lists(depth: usize) -> Value {
    (0..depth).fold(Value::Int(0), |inner, _| Value::List(vec![inner]))
}

/// A newtype struct around a list of itself: `n` of them nest `n` deep.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Nest(Vec<Nest>);

fn nest(depth: usize) -> Nest {
    (1..depth).fold(Nest(vec![]), |inner, _| Nest(vec![inner]))
}

// ---- round trips ----

#[test]
fn nested_user_struct_round_trips_through_value() {
    let order = order();
    assert_eq!(round_trip(&order), order);
}

#[test]
fn nested_user_struct_has_the_same_shape_as_through_serde_json_except_bytes() {
    let mut order = order();
    // JSON has no bytes: serde_json writes them as a list of numbers.
    order.blob = Blob(vec![]);
    let mine = to_value(&order).expect("to_value");
    let mut theirs = via_json(&order);
    if let Value::Map(fields) = &mut theirs {
        fields.insert("blob".to_owned(), Value::Bytes(Bytes::new()));
    }
    assert_eq!(mine, theirs);
}

#[test]
fn struct_becomes_a_map_of_its_field_names() {
    let address = Address {
        street: "Main".to_owned(),
        number: Some(3),
    };
    assert_eq!(
        to_value(&address).expect("to_value"),
        map([("street", Value::from("Main")), ("number", Value::Int(3))])
    );
}

#[test]
fn enum_variants_are_externally_tagged_like_serde_json() {
    let cases = [
        (Shape::Empty, Value::from("Empty")),
        (Shape::Dot(5), map([("Dot", Value::Int(5))])),
        (
            Shape::Segment(1, 2),
            map([("Segment", Value::from(vec![1, 2]))]),
        ),
        (
            Shape::Rect {
                width: 3,
                height: 4,
            },
            map([(
                "Rect",
                map([("width", Value::Int(3)), ("height", Value::Int(4))]),
            )]),
        ),
    ];
    for (shape, expected) in cases {
        assert_eq!(to_value(&shape).expect("to_value"), expected);
        assert_eq!(via_json(&shape), expected);
        assert_eq!(from_value::<Shape>(expected).expect("from_value"), shape);
    }
}

#[test]
fn unit_variant_with_a_null_payload_is_accepted() {
    let value = map([("Empty", Value::Null)]);
    assert_eq!(
        from_value::<Shape>(value).expect("from_value"),
        Shape::Empty
    );
}

#[test]
fn option_is_null_or_the_inner_value() {
    assert_eq!(to_value(&None::<i32>).expect("none"), Value::Null);
    assert_eq!(to_value(&Some(4)).expect("some"), Value::Int(4));
    assert_eq!(from_value::<Option<i32>>(Value::Null).expect("none"), None);
    assert_eq!(
        from_value::<Option<i32>>(Value::Int(4)).expect("some"),
        Some(4)
    );
}

#[test]
fn newtype_struct_is_its_inner_value() {
    assert_eq!(to_value(&Meters(1.5)).expect("to_value"), Value::Float(1.5));
    assert_eq!(
        from_value::<Meters>(Value::Float(1.5)).expect("from_value"),
        Meters(1.5)
    );
}

#[test]
fn unit_and_unit_struct_are_null() {
    assert_eq!(to_value(&()).expect("unit"), Value::Null);
    assert_eq!(to_value(&Marker).expect("unit struct"), Value::Null);
    from_value::<()>(Value::Null).expect("unit");
    assert_eq!(from_value::<Marker>(Value::Null).expect("unit"), Marker);
}

#[test]
fn tuples_and_tuple_structs_are_lists() {
    let value = to_value(&(1u8, "two", 3.5)).expect("tuple");
    assert_eq!(
        value,
        Value::List(vec![Value::Int(1), Value::from("two"), Value::Float(3.5)])
    );
    assert_eq!(
        from_value::<(u8, String, f64)>(value).expect("tuple"),
        (1, "two".to_owned(), 3.5)
    );
    assert_eq!(
        round_trip(&Pair(2, "x".to_owned())),
        Pair(2, "x".to_owned())
    );
}

#[test]
fn struct_is_also_read_from_a_list_of_its_fields_in_order() {
    let value = Value::List(vec![Value::from("Main"), Value::Null]);
    let address: Address = from_value(value).expect("from a list");
    assert_eq!(address.number, None);
}

#[test]
fn integer_bool_char_and_unit_variant_keys_become_strings_and_parse_back() {
    let value = to_value(&BTreeMap::from([(-1i64, "minus"), (20, "twenty")])).expect("ints");
    assert_eq!(
        value,
        map([("-1", Value::from("minus")), ("20", Value::from("twenty"))])
    );
    assert_eq!(
        from_value::<BTreeMap<i64, String>>(value).expect("ints back"),
        BTreeMap::from([(-1, "minus".to_owned()), (20, "twenty".to_owned())])
    );

    let value = to_value(&HashMap::from([(u64::MAX, true)])).expect("a u64 key");
    assert_eq!(value, map([("18446744073709551615", Value::Bool(true))]));
    assert_eq!(
        from_value::<HashMap<u64, bool>>(value).expect("u64 back"),
        HashMap::from([(u64::MAX, true)])
    );

    let value = to_value(&BTreeMap::from([(true, 1), (false, 0)])).expect("bools");
    assert_eq!(
        value,
        map([("false", Value::Int(0)), ("true", Value::Int(1))])
    );
    let value = to_value(&BTreeMap::from([('a', 1)])).expect("chars");
    assert_eq!(value, map([("a", Value::Int(1))]));
    let value = to_value(&BTreeMap::from([(Kind::Large, 1)])).expect("variants");
    assert_eq!(value, map([("Large", Value::Int(1))]));
    assert_eq!(
        from_value::<BTreeMap<Kind, i32>>(value).expect("variants back"),
        BTreeMap::from([(Kind::Large, 1)])
    );
}

#[test]
fn non_string_map_keys_are_refused_with_a_serde_error() {
    let error = to_value(&BTreeMap::from([((1, 2), "tuple")])).expect_err("tuple key");
    assert!(
        matches!(&error, ValueError::Serde(msg) if msg.contains("map key must be a string")),
        "{error:?}"
    );
    let error = to_value(&BTreeMap::from([(Some(1), "option")])).expect_err("option key");
    assert!(matches!(error, ValueError::Serde(_)), "{error:?}");
    let error = to_value(&FloatKeyed).expect_err("float key");
    assert!(matches!(error, ValueError::Serde(_)), "{error:?}");
}

/// A map whose only key is a float.
struct FloatKeyed;

impl Serialize for FloatKeyed {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(&1.5f64, "x")?;
        map.end()
    }
}

#[test]
fn integers_outside_i64_are_out_of_range() {
    assert_eq!(
        to_value(&u64::try_from(i64::MAX).expect("positive")).expect("fits"),
        Value::Int(i64::MAX)
    );
    for error in [
        to_value(&u64::MAX).expect_err("u64"),
        to_value(&(u128::from(u64::MAX) + 1)).expect_err("u128"),
        to_value(&(i128::from(i64::MIN) - 1)).expect_err("i128"),
    ] {
        assert!(matches!(error, ValueError::OutOfRange { .. }), "{error:?}");
    }
    assert_eq!(to_value(&-5i128).expect("small i128"), Value::Int(-5));
    assert_eq!(from_value::<i128>(Value::Int(-5)).expect("i128"), -5);
    assert_eq!(from_value::<u128>(Value::Int(5)).expect("u128"), 5);
}

#[test]
fn serialize_bytes_becomes_bytes_and_comes_back() {
    let value = to_value(&Blob(vec![1, 2, 3])).expect("to_value");
    assert_eq!(value, Value::Bytes(Bytes::from_static(&[1, 2, 3])));
    assert_eq!(
        from_value::<Blob>(value).expect("from_value"),
        Blob(vec![1, 2, 3])
    );
}

#[test]
fn vec_u8_is_a_list_of_ints_but_also_reads_bytes() {
    assert_eq!(
        to_value(&vec![1u8, 2]).expect("to_value"),
        Value::from(vec![1, 2])
    );
    let bytes = Value::Bytes(Bytes::from_static(b"hi"));
    assert_eq!(
        from_value::<Vec<u8>>(bytes).expect("from bytes"),
        b"hi".to_vec()
    );
}

#[test]
fn every_kind_of_value_round_trips_through_serde_unchanged() {
    let value = map([
        ("null", Value::Null),
        ("bool", Value::Bool(false)),
        ("int", Value::Int(i64::MIN)),
        ("float", Value::Float(-2.5)),
        ("string", Value::from("s")),
        ("bytes", Value::Bytes(Bytes::from_static(b"\0\xff"))),
        ("list", Value::List(vec![Value::Null, Value::List(vec![])])),
        ("map", map([("inner", Value::Map(BTreeMap::new()))])),
    ]);
    assert_eq!(to_value(&value).expect("to_value"), value);
    assert_eq!(
        from_value::<Value>(value.clone()).expect("from_value"),
        value
    );
}

// ---- JSON ----

#[test]
fn json_text_becomes_a_value_and_back() {
    let text =
        r#"{"a":[1,2.5,"x",null,true,{"b":[]}],"big":18446744073709551615,"neg":-5,"s":"\u00e9"}"#;
    let value: Value = serde_json::from_str(text).expect("json into Value");
    assert_eq!(
        value,
        map([
            (
                "a",
                Value::List(vec![
                    Value::Int(1),
                    Value::Float(2.5),
                    Value::from("x"),
                    Value::Null,
                    Value::Bool(true),
                    map([("b", Value::List(vec![]))]),
                ]),
            ),
            ("big", Value::Float(18_446_744_073_709_551_615.0)),
            ("neg", Value::Int(-5)),
            ("s", Value::from("é")),
        ])
    );
    let back = serde_json::to_string(&value).expect("Value into json");
    let reread: serde_json::Value = serde_json::from_str(&back).expect("valid json");
    let original: serde_json::Value = serde_json::from_str(text).expect("valid json");
    assert_eq!(reread["a"], original["a"]);
    assert_eq!(reread["neg"], original["neg"]);
    assert_eq!(reread["s"], original["s"]);
}

#[test]
fn u64_that_fits_i64_reads_from_json_as_an_int() {
    let value: Value = serde_json::from_str("9223372036854775807").expect("json");
    assert_eq!(value, Value::Int(i64::MAX));
    let value: Value = serde_json::from_str("9223372036854775808").expect("json");
    assert_eq!(value, Value::Float(9_223_372_036_854_775_808.0));
}

#[test]
fn bytes_are_written_to_json_as_an_array_of_numbers() {
    let value = Value::Bytes(Bytes::from_static(&[1, 255]));
    assert_eq!(serde_json::to_string(&value).expect("json"), "[1,255]");
}

// ---- depth limit ----

#[test]
fn to_value_accepts_exactly_max_depth_and_refuses_one_more() {
    let deepest = nested_lists(MAX_DEPTH);
    assert_eq!(deepest.depth(), MAX_DEPTH);
    assert_eq!(to_value(&deepest).expect("at the limit"), deepest);
    assert_eq!(
        to_value(&nested_lists(MAX_DEPTH + 1)),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );

    let value = to_value(&nest(MAX_DEPTH)).expect("user type at the limit");
    assert_eq!(value.depth(), MAX_DEPTH);
    assert_eq!(
        to_value(&nest(MAX_DEPTH + 1)),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn enum_variant_wrappers_count_toward_the_depth() {
    #[derive(Serialize)]
    enum Wrap {
        One(Value),
        Two(Value, Value),
        Three { inner: Value },
    }

    // `{One: x}` adds one level, `{Two: [x, y]}` and `{Three: {inner: x}}` two.
    let one = to_value(&Wrap::One(nested_lists(MAX_DEPTH - 1))).expect("at the limit");
    assert_eq!(one.depth(), MAX_DEPTH);
    assert!(to_value(&Wrap::One(nested_lists(MAX_DEPTH))).is_err());

    let two = Wrap::Two(nested_lists(MAX_DEPTH - 2), Value::Null);
    assert_eq!(to_value(&two).expect("at the limit").depth(), MAX_DEPTH);
    let two = Wrap::Two(nested_lists(MAX_DEPTH - 1), Value::Null);
    assert_eq!(to_value(&two), Err(ValueError::TooDeep { max: MAX_DEPTH }));

    let three = Wrap::Three {
        inner: nested_lists(MAX_DEPTH - 2),
    };
    assert_eq!(to_value(&three).expect("at the limit").depth(), MAX_DEPTH);
    let three = Wrap::Three {
        inner: nested_lists(MAX_DEPTH - 1),
    };
    assert_eq!(
        to_value(&three),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn from_value_accepts_exactly_max_depth_and_refuses_one_more() {
    let deepest = nested_lists(MAX_DEPTH);
    assert_eq!(
        from_value::<Value>(deepest.clone()).expect("at the limit"),
        deepest
    );
    assert_eq!(
        from_value::<Value>(nested_lists(MAX_DEPTH + 1)),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );

    let value = to_value(&nest(MAX_DEPTH)).expect("at the limit");
    assert_eq!(
        from_value::<Nest>(value).expect("at the limit"),
        nest(MAX_DEPTH)
    );
    let too_deep = Value::List(vec![to_value(&nest(MAX_DEPTH)).expect("at the limit")]);
    assert_eq!(
        from_value::<Nest>(too_deep),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn from_value_refuses_a_very_deep_value_without_overflowing_the_stack() {
    let deep = nested_lists(2_000);
    assert_eq!(
        from_value::<Value>(deep),
        Err(ValueError::TooDeep { max: MAX_DEPTH })
    );
}

#[test]
fn json_nested_exactly_max_depth_is_read_and_one_more_is_refused() {
    let json = |depth: usize| format!("{}0{}", "[".repeat(depth), "]".repeat(depth));
    let value: Value = serde_json::from_str(&json(MAX_DEPTH)).expect("at the limit");
    assert_eq!(value, nested_lists(MAX_DEPTH));

    let error = serde_json::from_str::<Value>(&json(MAX_DEPTH + 1)).expect_err("too deep");
    assert!(error.to_string().contains("deeper than 32"), "{error}");

    let objects = |depth: usize| format!("{}0{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let value: Value = serde_json::from_str(&objects(MAX_DEPTH)).expect("at the limit");
    assert_eq!(value.depth(), MAX_DEPTH);
    assert!(serde_json::from_str::<Value>(&objects(MAX_DEPTH + 1)).is_err());
}

#[test]
fn very_deep_json_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // serde_json would stop at 128 levels with its own error; the message
    // shows that the check in `Value`'s `Deserialize` stopped it first.
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let error = Value::deserialize(&mut deserializer).expect_err("too deep");
    assert!(error.to_string().contains("deeper than 32"), "{error}");
}

// ---- typed errors ----

#[test]
fn type_mismatches_are_typed_errors() {
    assert_eq!(
        from_value::<u32>(Value::from("x")),
        Err(ValueError::Type {
            expected: "int",
            found: "string"
        })
    );
    assert_eq!(
        from_value::<String>(Value::Int(1)),
        Err(ValueError::Type {
            expected: "string",
            found: "int"
        })
    );
    assert_eq!(
        from_value::<bool>(Value::Null),
        Err(ValueError::Type {
            expected: "bool",
            found: "null"
        })
    );
    assert_eq!(
        from_value::<Vec<i32>>(map([])),
        Err(ValueError::Type {
            expected: "list",
            found: "map"
        })
    );
    assert_eq!(
        from_value::<Address>(Value::Int(1)),
        Err(ValueError::Type {
            expected: "map",
            found: "int"
        })
    );
    assert_eq!(
        from_value::<i64>(Value::Float(1.0)),
        Err(ValueError::Type {
            expected: "int",
            found: "float"
        })
    );
    assert_eq!(
        from_value::<Shape>(Value::Int(1)),
        Err(ValueError::Type {
            expected: "string or map",
            found: "int"
        })
    );
}

#[test]
fn mismatch_deep_inside_a_struct_is_still_typed() {
    let value = map([
        ("name", Value::from("Ada")),
        ("tags", Value::List(vec![Value::Int(3)])),
        ("address", Value::Null),
    ]);
    assert_eq!(
        from_value::<Customer>(value),
        Err(ValueError::Type {
            expected: "string",
            found: "int"
        })
    );
}

#[test]
fn integer_that_does_not_fit_the_field_is_out_of_range() {
    assert_eq!(
        from_value::<u8>(Value::Int(300)),
        Err(ValueError::OutOfRange { target: "u8" })
    );
    assert_eq!(
        from_value::<u64>(Value::Int(-1)),
        Err(ValueError::OutOfRange { target: "u64" })
    );
    assert_eq!(
        from_value::<HashMap<u32, i32>>(map([("99999999999", Value::Int(1))])),
        Err(ValueError::OutOfRange { target: "u32" })
    );
    assert_eq!(
        from_value::<HashMap<u32, i32>>(map([("abc", Value::Int(1))])),
        Err(ValueError::Type {
            expected: "int",
            found: "string"
        })
    );
}

#[test]
fn float_fields_accept_integers() {
    assert_eq!(from_value::<f64>(Value::Int(3)).expect("int as float"), 3.0);
    assert_eq!(from_value::<f32>(Value::Float(0.5)).expect("f32"), 0.5);
}

#[test]
fn what_the_type_itself_refuses_is_a_serde_error() {
    let absent_option = from_value::<Address>(map([("street", Value::from("Main"))]));
    // `Option` fields may be absent, as in serde_json.
    assert!(absent_option.is_ok());

    let error = from_value::<Customer>(map([("name", Value::from("Ada"))])).expect_err("missing");
    assert!(
        matches!(&error, ValueError::Serde(msg) if msg.contains("missing field `tags`")),
        "{error:?}"
    );

    let error = from_value::<Shape>(Value::from("Circle")).expect_err("unknown variant");
    assert!(
        matches!(&error, ValueError::Serde(msg) if msg.contains("unknown variant")),
        "{error:?}"
    );

    let two_keys = map([("Dot", Value::Int(1)), ("Empty", Value::Null)]);
    let error = from_value::<Shape>(two_keys).expect_err("two variants");
    assert!(matches!(error, ValueError::Serde(_)), "{error:?}");

    let error = from_value::<Shape>(Value::from("Dot")).expect_err("newtype variant as a string");
    assert!(matches!(error, ValueError::Serde(_)), "{error:?}");

    let error = from_value::<(i32, i32)>(Value::from(vec![1, 2, 3])).expect_err("too long");
    assert!(matches!(error, ValueError::Serde(_)), "{error:?}");
}

#[test]
fn value_error_is_a_serde_error_for_custom_messages() {
    assert_eq!(
        <ValueError as de::Error>::custom("no"),
        ValueError::Serde("no".to_owned())
    );
    assert_eq!(
        <ValueError as serde::ser::Error>::custom("no"),
        ValueError::Serde("no".to_owned())
    );
}
