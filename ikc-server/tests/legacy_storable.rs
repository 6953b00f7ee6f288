//! The Storable reader and writer against every Storable frame Perl put on
//! the wire in the captures, against random values (proptest), and, when a
//! `perl` with Storable is installed, against Perl itself.

#![cfg(feature = "perl")]

mod legacy_capture;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ikc_core::Value;
use ikc_server::legacy::codec::LegacyFrameCodec;
use ikc_server::legacy::storable::{self, StorableError};
use legacy_capture::{Piece, load, split};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tokio_util::codec::{Decoder, Encoder};

/// Every Storable frame of both capture files, both directions.
fn captured_images() -> Vec<Vec<u8>> {
    let mut images = Vec::new();
    for file in ["wire.jsonl", "wire-b.jsonl"] {
        let chunks = load(file);
        let conns: std::collections::BTreeSet<u64> = chunks.iter().map(|c| c.conn).collect();
        for conn in conns {
            for dir in [
                legacy_capture::Dir::ClientToServer,
                legacy_capture::Dir::ServerToClient,
            ] {
                let stream: Vec<u8> = chunks
                    .iter()
                    .filter(|c| c.conn == conn && c.dir == dir)
                    .flat_map(|c| c.bytes.iter().copied())
                    .collect();
                for piece in split(&stream).0 {
                    match piece {
                        Piece::Frame(bytes) if bytes.first() == Some(&0x05) => images.push(bytes),
                        _ => {}
                    }
                }
            }
        }
    }
    images
}

#[test]
fn every_captured_storable_frame_round_trips_through_value() {
    let images = captured_images();
    // 54 in wire.jsonl (WIRE.md counts them), 2 in wire-b.jsonl.
    assert_eq!(images.len(), 56);
    for image in images {
        let value = storable::from_slice(&image)
            .unwrap_or_else(|e| panic!("captured image does not decode: {e}"));
        assert!(value.as_map().is_some(), "every IKC message is a hash");
        let again = storable::to_vec(&value).expect("encodes");
        assert_eq!(storable::from_slice(&again).expect("decodes"), value);
    }
}

#[test]
fn truncated_captured_frames_are_errors_not_panics() {
    for image in captured_images() {
        for len in 0..image.len() {
            assert!(storable::from_slice(&image[..len]).is_err());
        }
    }
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-1000i64..1000).prop_map(Value::Int),
        any::<f64>().prop_map(Value::Float),
        ".{0,300}".prop_map(Value::String),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| Value::Bytes(Bytes::from(b))),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    arb_scalar().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::btree_map(".{0,12}", inner, 0..8).prop_map(Value::Map),
        ]
    })
}

/// What a value becomes once Perl has it: the forms network-order
/// Storable has no opcode for are strings (see the storable module docs).
fn canonical(value: Value) -> Value {
    match value {
        Value::Bool(b) => Value::from(if b { "1" } else { "" }),
        Value::Int(i) if i32::try_from(i).is_err() => Value::String(i.to_string()),
        Value::Float(f) => Value::String(float_text(f)),
        Value::Bytes(b) if b.is_ascii() => {
            Value::String(String::from_utf8(b.to_vec()).expect("ascii"))
        }
        Value::List(items) => Value::List(items.into_iter().map(canonical).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, canonical(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        other => other,
    }
}

fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "Inf" } else { "-Inf" }.to_owned()
    } else if f.fract() == 0.0 && f.abs() < 1e15 {
        #[allow(clippy::cast_possible_truncation)] // |f| < 1e15
        let whole = f as i64;
        whole.to_string()
    } else if (1e-5..1e21).contains(&f.abs()) {
        f.to_string()
    } else {
        format!("{f:e}")
    }
}

proptest! {
    #[test]
    fn values_round_trip_to_what_perl_would_hold(value in arb_value()) {
        let image = storable::to_vec(&value).expect("encodes");
        let expected = canonical(value);
        let decoded = storable::from_slice(&image).expect("decodes");
        // Floats: compare what Perl would read (their text), already done
        // by canonical; everything else exactly.
        prop_assert_eq!(&decoded, &expected);
        // What Perl holds goes back and forth unchanged.
        let again = storable::to_vec(&decoded).expect("encodes");
        prop_assert_eq!(storable::from_slice(&again).expect("decodes"), decoded);
    }

    #[test]
    fn random_bytes_never_panic_the_reader(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = storable::from_slice(&bytes);
        let mut image = vec![0x05, 0x0b];
        image.extend_from_slice(&bytes);
        let _ = storable::from_slice(&image);
    }

    #[test]
    fn frames_cut_at_any_points_decode_to_the_same_payloads(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut codec = LegacyFrameCodec::new(1024);
        let mut wire = BytesMut::new();
        for payload in &payloads {
            codec.encode(Bytes::from(payload.clone()), &mut wire).expect("fits");
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();
        let mut decoder = LegacyFrameCodec::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut start = 0;
        for point in points {
            buf.extend_from_slice(&wire[start..point]);
            start = point;
            while let Some(frame) = decoder.decode(&mut buf).expect("valid") {
                got.push(frame.to_vec());
            }
        }
        prop_assert_eq!(got, payloads);
    }
}

#[test]
fn unsupported_perl_types_are_typed_errors() {
    // nfreeze([sub {}]) with $Storable::Deparse: SX_CODE.
    let code = [0x05, 0x0b, 0x02, 0, 0, 0, 1, 0x1a, 0x0a, 0x00];
    assert!(matches!(
        storable::from_slice(&code),
        Err(StorableError::Unsupported { .. })
    ));
}

/// Runs `perl` (if it has Storable) to thaw each image and nfreeze it again.
fn perl_refreeze(images: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    let ok = Command::new("perl")
        .args(["-MStorable", "-e1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("perl with Storable is not installed; skipping the Perl cross-check");
        return None;
    }
    let script = r#"
        use strict; use Storable qw(thaw nfreeze);
        binmode STDIN; binmode STDOUT; local $/; my $in = <STDIN>;
        while ($in =~ /\G(\d+)\0/gc) {
            my $image = substr($in, pos($in), $1); pos($in) += $1;
            my $out = nfreeze(thaw($image));
            print length($out), "\0", $out;
        }
    "#;
    let mut child = Command::new("perl")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl runs");
    let mut input = Vec::new();
    for image in images {
        input.extend_from_slice(format!("{}\0", image.len()).as_bytes());
        input.extend_from_slice(image);
    }
    let mut stdin = child.stdin.take().expect("stdin");
    // Write and read at once: perl's output would fill the pipe otherwise.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("perl finishes in time")
        .expect("perl output");
    writer.join().expect("writer").expect("input written");
    assert!(output.status.success(), "perl failed");
    let (pieces, _) = split(&output.stdout);
    Some(
        pieces
            .into_iter()
            .map(|p| match p {
                Piece::Frame(bytes) => bytes,
                Piece::Line(line) => panic!("unexpected perl output {line:?}"),
            })
            .collect(),
    )
}

#[test]
fn perl_reads_what_we_write_and_we_read_what_perl_writes() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let values: Vec<Value> = (0..200)
        .map(|_| {
            arb_value()
                .new_tree(&mut runner)
                .expect("a value")
                .current()
        })
        .chain(
            captured_images()
                .iter()
                .map(|i| storable::from_slice(i).expect("decodes")),
        )
        .collect();
    let images: Vec<Vec<u8>> = values
        .iter()
        .map(|v| storable::to_vec(v).expect("encodes"))
        .collect();
    let Some(refrozen) = perl_refreeze(&images) else {
        return;
    };
    assert_eq!(refrozen.len(), values.len(), "perl answered every image");
    for (value, image) in values.into_iter().zip(refrozen) {
        let from_perl = storable::from_slice(&image).expect("perl's image decodes");
        assert_eq!(from_perl, canonical(value));
    }
}
