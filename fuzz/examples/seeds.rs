//! Writes the checked-in seed corpora, `corpus/<target>/<name>`: a handful
//! of meaningful inputs per target (real frames and handshakes encoded by
//! the codecs, specifiers of every form), each in the target's input
//! layout. Run from the `fuzz` directory:
//!
//! ```text
//! cargo run --example seeds
//! ```

use std::fs;
use std::path::Path;

use bytes::BytesMut;
use ikc_proto::{FrameCodec, HandshakeCodec, Preface, Value, pb};
use prost::Message;
use tokio_util::codec::Encoder;

fn frames(list: &[pb::Frame]) -> Vec<u8> {
    let mut codec = FrameCodec::new();
    let mut wire = BytesMut::new();
    for frame in list {
        codec.encode(frame, &mut wire).expect("seed frames encode");
    }
    wire.to_vec()
}

fn handshake(client: bool, message: pb::Handshake) -> Vec<u8> {
    let mut codec = if client {
        HandshakeCodec::client()
    } else {
        HandshakeCodec::server()
    };
    let mut wire = BytesMut::new();
    codec
        .encode(message, &mut wire)
        .expect("seed handshakes encode");
    wire.to_vec()
}

fn hello(name: &str) -> Vec<u8> {
    handshake(
        true,
        pb::Hello {
            version: 1,
            kernel: name.to_owned(),
            pid: 42,
            ..Default::default()
        }
        .into(),
    )
}

fn request(id: u64, target: &str, arg: Value) -> pb::Frame {
    pb::Request {
        id,
        target: target.to_owned(),
        arg: Some(arg.into()),
        from: "peer/fuzz".to_owned(),
        deadline_ms: 0,
        traceparent: String::new(),
    }
    .into()
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::from(1), |inner, _| Value::List(vec![inner]))
}

fn sample_map() -> Value {
    let mut map = std::collections::BTreeMap::new();
    map.insert("name".to_owned(), Value::from("ikc"));
    map.insert("tags".to_owned(), Value::from(vec!["a", "b"]));
    map.insert("score".to_owned(), Value::from(1.5));
    map.insert("raw".to_owned(), Value::Bytes(vec![0, 1, 2].into()));
    map.insert("none".to_owned(), Value::Null);
    Value::Map(map)
}

fn every_frame_kind() -> Vec<pb::Frame> {
    vec![
        request(1, "poe://Fuzz/echo/say", Value::from("hello")),
        request(0, "echo/say", Value::from(7)),
        pb::Reply {
            id: 9,
            value: Some(Value::from(true).into()),
        }
        .into(),
        pb::Error {
            id: 3,
            kind: pb::ErrorKind::NoSession.into(),
            message: "no session".to_owned(),
            ..Default::default()
        }
        .into(),
        pb::Cancel { id: 1 }.into(),
        pb::Subscribe {
            id: 4,
            session: "echo".to_owned(),
        }
        .into(),
        pb::Unsubscribe {
            session: "echo".to_owned(),
        }
        .into(),
        pb::Ping { nonce: 7 }.into(),
        pb::Pong { nonce: 7 }.into(),
        pb::GoAway {
            reason: "bye".to_owned(),
            last_id: 1,
        }
        .into(),
    ]
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn with_header(header: &[u8], body: &[u8]) -> Vec<u8> {
    [header, body].concat()
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let all = frames(&every_frame_kind());
    let echo = frames(&[request(1, "poe://Fuzz/echo/say", Value::from("hello"))]);
    let ping = frames(&[pb::Ping { nonce: 7 }.into()]);

    // frame_fast_path: one frame's bytes, without the head.
    let t = "frame_fast_path";
    for (name, frame) in [
        (
            "echo_request",
            request(1, "poe://Fuzz/echo/say", Value::from("hello")),
        ),
        (
            "bytes_request",
            pb::Request {
                id: 9,
                target: "echo/say".to_owned(),
                arg: Some(Value::Bytes(vec![1, 2, 3].into()).into()),
                from: String::new(),
                deadline_ms: 10_000,
                traceparent: String::new(),
            }
            .into(),
        ),
        (
            "int_reply",
            pb::Reply {
                id: 3,
                value: Some(Value::from(-5).into()),
            }
            .into(),
        ),
        (
            "list_reply",
            pb::Reply {
                id: 4,
                value: Some(Value::from(vec![1, 2]).into()),
            }
            .into(),
        ),
        ("ping", pb::Ping { nonce: 7 }.into()),
    ] {
        write(&corpus, t, name, &frame.encode_to_vec());
    }

    // frame_decoder: [max_lo, max_hi, chunk_seed, new_max, stream...]
    let t = "frame_decoder";
    write(
        &corpus,
        t,
        "ping_one_read",
        &with_header(&[64, 0, 0, 0], &ping),
    );
    write(
        &corpus,
        t,
        "echo_byte_by_byte",
        &with_header(&[0, 2, 1, 0], &echo),
    );
    write(
        &corpus,
        t,
        "every_kind_chunked",
        &with_header(&[0xff, 3, 7, 0], &all),
    );
    let exact = u8::try_from(echo.len() - 4).expect("a short frame");
    write(
        &corpus,
        t,
        "frame_at_max",
        &with_header(&[exact, 0, 3, 0], &echo),
    );
    write(
        &corpus,
        t,
        "frame_over_max",
        &with_header(&[exact - 1, 0, 0, 0], &echo),
    );
    write(
        &corpus,
        t,
        "partial_frame",
        &with_header(&[0, 2, 5, 0], &echo[..echo.len() / 2]),
    );
    write(
        &corpus,
        t,
        "max_shrinks_in_flight",
        &with_header(&[0, 2, 9, 2], &all),
    );
    write(
        &corpus,
        t,
        "huge_head",
        &with_header(&[0, 2, 0, 0], &[0xff, 0xff, 0xff, 0xff, 1]),
    );

    // handshake_decoder: [mode, chunk_seed, stream...]; mode bit 0 = server
    let t = "handshake_decoder";
    let hello_then_ping = [hello("peer"), ping.clone()].concat();
    write(
        &corpus,
        t,
        "server_hello_then_frame",
        &with_header(&[1 | (64 << 1), 0], &hello_then_ping),
    );
    write(
        &corpus,
        t,
        "server_hello_chunked",
        &with_header(&[1 | (64 << 1), 3], &hello_then_ping),
    );
    write(
        &corpus,
        t,
        "server_legacy_text",
        &with_header(&[1, 0], b"SETUP Server foo\r\n"),
    );
    let mut v2 = hello("peer");
    v2[Preface::LEN - 1] = 2;
    write(&corpus, t, "server_version_2", &with_header(&[1, 0], &v2));
    write(
        &corpus,
        t,
        "server_preface_only",
        &with_header(&[1, 1], &Preface::CURRENT.to_bytes()),
    );
    let welcome = handshake(
        false,
        pb::Welcome {
            kernel: "Server".to_owned(),
            aliases: vec!["127.0.0.1:6030".to_owned()],
            pid: 1,
            limits: Some(pb::Limits {
                max_frame_len: 1024,
                max_in_flight: 16,
                keepalive_ms: 0,
            }),
            ..Default::default()
        }
        .into(),
    );
    write(
        &corpus,
        t,
        "client_welcome",
        &with_header(&[64 << 1, 0], &[welcome, ping.clone()].concat()),
    );
    let refuse = handshake(
        false,
        pb::Refuse {
            code: pb::RefuseCode::NameTaken.into(),
            reason: "name taken".to_owned(),
        }
        .into(),
    );
    write(&corpus, t, "client_refuse", &with_header(&[0, 2], &refuse));

    // value_decode: protobuf bytes of a Value (or a Frame)
    let t = "value_decode";
    let value = |v: Value| v.into_proto().encode_to_vec();
    write(&corpus, t, "string", &value(Value::from("ikc")));
    write(&corpus, t, "int", &value(Value::from(-42)));
    write(&corpus, t, "nan", &value(Value::from(f64::NAN)));
    write(&corpus, t, "map", &value(sample_map()));
    write(&corpus, t, "depth_32", &value(nested(32)));
    write(&corpus, t, "depth_33", &value(nested(33)));
    write(
        &corpus,
        t,
        "request_frame",
        &pb::Frame::from(pb::Request {
            id: 1,
            target: "echo/say".to_owned(),
            arg: Some(sample_map().into()),
            ..Default::default()
        })
        .encode_to_vec(),
    );

    // specifier_parse: text
    let t = "specifier_parse";
    for (name, text) in [
        ("full", "poe://Server/calc/add"),
        ("session_only", "poe://Server/calc"),
        ("no_scheme", "Server/calc/add"),
        ("local", "calc/add"),
        ("any_kernel", "poe://*/calc/add"),
        ("alias", "poe://127.0.0.1:6030/IKC/ping"),
        ("empty_kernel", "poe:///calc"),
        ("too_many", "a/b/c/d"),
        ("unicode", "poe://k\u{e9}rnel/s\u{e9}ssion/\u{e9}vent"),
    ] {
        write(&corpus, t, name, text.as_bytes());
    }

    // connection: [mode, chunk_seed, stream...]; mode bit 0 = Hello prepended
    let t = "connection";
    write(&corpus, t, "every_frame_kind", &with_header(&[1, 0], &all));
    write(
        &corpus,
        t,
        "full_handshake_and_call",
        &with_header(&[0, 0], &[hello("peer"), echo.clone()].concat()),
    );
    write(&corpus, t, "chunked_call", &with_header(&[1, 2], &echo));
    let calls = frames(&[
        request(1, "poe://Fuzz/IKC/ping", Value::Null),
        request(2, "poe://Fuzz/IKC/published", Value::Null),
        request(3, "poe://Fuzz/IKC/kernels", Value::Null),
        request(4, "poe://peer/nobody/here", Value::Null),
        request(5, "poe://Elsewhere/echo/say", Value::Null),
        request(6, "nobody/here", Value::Null),
        request(7, "echo/say", nested(33)),
        request(8, "echo/say", sample_map()),
        pb::Request {
            id: 9,
            target: "echo/say".to_owned(),
            deadline_ms: 1,
            ..Default::default()
        }
        .into(),
    ]);
    write(
        &corpus,
        t,
        "calls_good_and_bad",
        &with_header(&[1, 0], &calls),
    );
    // A Request whose target (field 2) is not UTF-8.
    let bad_utf8 = [0x0a, 0x06, 0x08, 0x01, 0x12, 0x02, 0xff, 0xfe];
    write(
        &corpus,
        t,
        "target_not_utf8",
        &with_header(&[1, 0], &[&[0, 0, 0, 8][..], &bad_utf8].concat()),
    );
    write(
        &corpus,
        t,
        "frame_head_over_max",
        &with_header(&[1, 0], &[0, 0x10, 0, 1, 0]),
    );
    write(
        &corpus,
        t,
        "legacy_text",
        &with_header(&[0, 0], b"SETUP Server foo\r\n"),
    );
}
