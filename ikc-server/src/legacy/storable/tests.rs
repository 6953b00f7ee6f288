//! The reader and writer on hand-made images.

use bytes::Bytes;

use super::write::float_text;
use super::*;

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

#[test]
fn captured_call_request_decodes_to_the_request_hash() {
    // Connection 1's first request, from WIRE.md §5.2 (216 bytes).
    let hex = "050b03000000050a2c706f653a2f2f766d2d36623035633163382d30303030323861302d30303030303030312f6563686f2f736179000000056576656e740403000000030a09726573706f6e7365300000000573746174650a07494b434c6974650000000773657373696f6e0a0550726f6265000000066b65726e656c00000004727376700403000000020a07494b434c6974650000000773657373696f6e0a0550726f6265000000066b65726e656c0000000466726f6d0a000000000977616e7461727261790a0568656c6c6f00000006706172616d73";
    let image = decode_hex(hex);
    let value = from_slice(&image).expect("captured image decodes");
    let expected = map(&[
        (
            "event",
            Value::from("poe://vm-6b05c1c8-000028a0-00000001/echo/say"),
        ),
        (
            "rsvp",
            map(&[
                ("state", Value::from("response0")),
                ("session", Value::from("IKCLite")),
                ("kernel", Value::from("Probe")),
            ]),
        ),
        (
            "from",
            map(&[
                ("session", Value::from("IKCLite")),
                ("kernel", Value::from("Probe")),
            ]),
        ),
        ("wantarray", Value::from("")),
        ("params", Value::from("hello")),
    ]);
    assert_eq!(value, expected);
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn numbers_are_written_as_nfreeze_writes_them() {
    let image = to_vec(&Value::List(vec![
        Value::Int(1),
        Value::Int(-5),
        Value::Int(300),
        Value::Int(2_147_483_648),
        Value::Float(1.5),
        Value::Bool(true),
        Value::Bool(false),
    ]))
    .expect("encodes");
    assert_eq!(
        image,
        [
            &[0x05, 0x0b, 0x02, 0, 0, 0, 7][..],
            &[0x08, 0x81],
            &[0x08, 0x7b],
            &[0x09, 0, 0, 1, 0x2c],
            &[0x0a, 10],
            b"2147483648",
            &[0x0a, 3],
            b"1.5",
            &[0x0a, 1, b'1'],
            &[0x0a, 0],
        ]
        .concat()
    );
}

#[test]
fn utf8_strings_are_written_with_the_utf8_opcode() {
    // WIRE.md §4.1: "café ☺" -> 17 09 63 61 66 c3 a9 20 e2 98 ba
    let image = to_vec(&Value::List(vec![Value::from("café ☺")])).expect("encodes");
    assert_eq!(
        &image[7..],
        &[
            0x17, 0x09, 0x63, 0x61, 0x66, 0xc3, 0xa9, 0x20, 0xe2, 0x98, 0xba
        ]
    );
    assert_eq!(
        from_slice(&image).expect("decodes"),
        Value::List(vec![Value::from("café ☺")])
    );
}

#[test]
fn long_strings_use_the_four_byte_length() {
    let long = "L".repeat(300);
    let image = to_vec(&Value::List(vec![Value::from(long.as_str())])).expect("encodes");
    assert_eq!(&image[7..12], &[0x01, 0, 0, 1, 0x2c]);
    assert_eq!(
        from_slice(&image).expect("decodes"),
        Value::List(vec![Value::from(long)])
    );
}

#[test]
fn non_ascii_byte_strings_become_bytes_and_go_back_unchanged() {
    let image = [0x05, 0x0b, 0x0a, 2, 0xe9, 0xff];
    let value = from_slice(&image).expect("decodes");
    assert_eq!(value, Value::Bytes(Bytes::from_static(&[0xe9, 0xff])));
    assert_eq!(to_vec(&value).expect("encodes"), image);
}

#[test]
fn hash_with_a_utf8_key_round_trips_as_a_flag_hash() {
    let value = map(&[("clé", Value::Int(1)), ("k", Value::Int(2))]);
    let image = to_vec(&value).expect("encodes");
    assert_eq!(image[2], op::FLAG_HASH);
    assert_eq!(from_slice(&image).expect("decodes"), value);
}

#[test]
fn latin1_keys_are_read_as_their_characters() {
    // { "\xe9" => undef } without the UTF-8 flag.
    let image = [0x05, 0x0b, 0x03, 0, 0, 0, 1, 0x05, 0, 0, 0, 1, 0xe9];
    assert_eq!(
        from_slice(&image).expect("decodes"),
        map(&[("é", Value::Null)])
    );
}

#[test]
fn back_references_repeat_the_object() {
    // my $x = [1]; nfreeze([$x, $x]): ARRAY 2, REF ARRAY 1 BYTE 1, OBJECT 1
    let image = [
        0x05, 0x0b, 0x02, 0, 0, 0, 2, 0x04, 0x02, 0, 0, 0, 1, 0x08, 0x81, 0x00, 0, 0, 0, 1,
    ];
    let one = Value::List(vec![Value::Int(1)]);
    assert_eq!(
        from_slice(&image).expect("decodes"),
        Value::List(vec![one.clone(), one])
    );
}

#[test]
fn a_cycle_is_an_error_not_a_hang() {
    // my $a = []; push @$a, $a; nfreeze($a): ARRAY 1, REF, OBJECT 0
    let image = [0x05, 0x0b, 0x02, 0, 0, 0, 1, 0x04, 0x00, 0, 0, 0, 0];
    assert!(matches!(
        from_slice(&image),
        Err(StorableError::BadBackReference { tag: 0, .. })
    ));
}

#[test]
fn back_references_cannot_expand_without_bound() {
    // Each level is an array holding the previous level twice.
    let mut image = vec![0x05, 0x0b];
    let levels = 30u32;
    for _ in 0..levels {
        image.extend_from_slice(&[0x02, 0, 0, 0, 2, 0x04]);
    }
    image.extend_from_slice(&[0x05]);
    // Close each level with a back-reference to its first element.
    // Tags: level i array = 2i, its ref = 2i + 1; innermost undef = 2 * levels.
    for level in (0..levels).rev() {
        image.push(0x00);
        image.extend_from_slice(&(2 * level + 1).to_be_bytes());
    }
    let result = from_slice(&image);
    assert!(
        matches!(
            result,
            Err(StorableError::TooManyValues { .. } | StorableError::TooDeep { .. })
        ),
        "{result:?}"
    );
}

#[test]
fn blessed_objects_are_a_typed_error_naming_the_class() {
    // bless({}, 'Foo')
    let image = [0x05, 0x0b, 0x11, 3, b'F', b'o', b'o', 0x03, 0, 0, 0, 0];
    let error = from_slice(&image).expect_err("blessed objects are refused");
    assert_eq!(
        error.to_string(),
        "storable blessed object of class Foo at byte 2 is not supported"
    );
}

#[test]
fn native_order_images_are_refused() {
    let error = from_slice(b"\x04\x0b\x03").expect_err("native order is refused");
    assert!(matches!(
        error,
        StorableError::NotNetworkOrder { header: 0x04 }
    ));
}

#[test]
fn lengths_beyond_the_image_fail_before_allocating() {
    // An array claiming 2^31 - 1 items in a 7-byte image.
    let image = [0x05, 0x0b, 0x02, 0x7f, 0xff, 0xff, 0xff];
    assert!(matches!(
        from_slice(&image),
        Err(StorableError::Truncated { .. })
    ));
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let mut image = vec![0x05, 0x0b];
    for _ in 0..=MAX_DEPTH {
        image.extend_from_slice(&[0x02, 0, 0, 0, 1, 0x04]);
    }
    image.push(0x05);
    assert!(matches!(
        from_slice(&image),
        Err(StorableError::TooDeep { .. })
    ));
}

#[test]
fn floats_are_written_as_perl_reads_them() {
    assert_eq!(float_text(3.0), "3");
    assert_eq!(float_text(-0.25), "-0.25");
    assert_eq!(float_text(1e300), "1e300");
    assert_eq!(float_text(f64::INFINITY), "Inf");
    assert_eq!(float_text(f64::NAN), "NaN");
}

/// Random and truncated input never panics (a small, always-run stand-in
/// for the fuzz target).
#[test]
fn random_and_truncated_images_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let sample = to_vec(&map(&[
        ("event", Value::from("poe://k/s/e")),
        ("params", Value::List(vec![Value::Int(1), Value::from("é")])),
        ("rsvp", map(&[("kernel", Value::from("k"))])),
    ]))
    .expect("encodes");
    for len in 0..sample.len() {
        let _ = from_slice(&sample[..len]);
    }
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| (next() % 40) as u8).collect();
        if next() % 2 == 0 && bytes.len() >= 2 {
            bytes[0] = 0x05;
        }
        let _ = from_slice(&bytes);
        // Mutate a valid image at one byte.
        let mut mutated = sample.clone();
        let at = (next() as usize) % mutated.len();
        mutated[at] = next() as u8;
        let _ = from_slice(&mutated);
    }
}
