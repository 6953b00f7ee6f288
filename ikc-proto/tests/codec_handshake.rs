//! `HandshakeCodec`: the preface, the handshake messages, and the switch to
//! `FrameCodec` without losing bytes that arrived with the handshake.

use bytes::{BufMut, BytesMut};
use futures::{SinkExt, StreamExt};
use ikc_proto::codec::{Builder, MAX_HANDSHAKE_LENGTH};
use ikc_proto::{CodecError, FrameCodec, HandshakeCodec, Preface, pb};
use prost::Message;
use tokio_test::io::Builder as MockIo;
use tokio_util::codec::{Decoder, Encoder, Framed, FramedRead};

const HEAD_LEN: usize = 4;

fn hello() -> pb::Handshake {
    pb::Hello {
        version: 1,
        kernel: "Client".to_owned(),
        aliases: vec!["127.0.0.1:4000".to_owned()],
        pid: 4242,
        features: vec!["cancel".to_owned()],
        auth: Default::default(),
        limits: Some(pb::Limits {
            max_frame_len: 1 << 20,
            max_in_flight: 64,
            keepalive_ms: 30_000,
        }),
        key_id: String::new(),
    }
    .into()
}

fn welcome() -> pb::Handshake {
    pb::Welcome {
        kernel: "Server".to_owned(),
        pid: 1,
        ..Default::default()
    }
    .into()
}

/// What a client writes first: the preface, then the Hello.
fn client_bytes() -> BytesMut {
    let mut buf = BytesMut::new();
    HandshakeCodec::client()
        .encode(hello(), &mut buf)
        .expect("hello encodes");
    buf
}

fn frame_bytes(frame: &pb::Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::new()
        .encode(frame, &mut buf)
        .expect("frame encodes");
    buf
}

#[test]
fn client_writes_the_preface_then_a_length_delimited_hello() {
    let buf = client_bytes();
    assert_eq!(buf[..Preface::LEN], Preface::CURRENT.to_bytes());
    let len = u32::from_be_bytes(
        buf[Preface::LEN..Preface::LEN + HEAD_LEN]
            .try_into()
            .expect("4 bytes"),
    );
    assert_eq!(len as usize, hello().encoded_len());
    assert_eq!(buf.len(), Preface::LEN + HEAD_LEN + hello().encoded_len());
}

#[test]
fn client_writes_the_preface_only_once() {
    let mut codec = HandshakeCodec::client();
    let mut buf = BytesMut::new();
    codec.encode(hello(), &mut buf).expect("first");
    let first = buf.len();
    codec.encode(hello(), &mut buf).expect("second");
    assert_eq!(buf.len() - first, HEAD_LEN + hello().encoded_len());
}

#[test]
fn server_decodes_what_the_client_wrote() {
    let mut buf = client_bytes();
    let mut server = HandshakeCodec::server();
    assert_eq!(server.decode(&mut buf).expect("valid"), Some(hello()));
    assert!(buf.is_empty());
    assert_eq!(server.decode_eof(&mut buf).expect("clean end"), None);
}

#[test]
fn client_reads_the_servers_answer_without_a_preface() {
    let mut server = HandshakeCodec::server();
    let mut buf = BytesMut::new();
    server.encode(welcome(), &mut buf).expect("welcome encodes");
    assert_eq!(buf.len(), HEAD_LEN + welcome().encoded_len(), "no preface");
    let mut client = HandshakeCodec::client();
    assert_eq!(client.decode(&mut buf).expect("valid"), Some(welcome()));
}

#[test]
fn client_bytes_split_at_every_byte_decode_once_complete() {
    let bytes = client_bytes();
    for split in 1..bytes.len() {
        let mut server = HandshakeCodec::server();
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(
            server.decode(&mut buf).expect("a prefix"),
            None,
            "split {split}"
        );
        buf.extend_from_slice(&bytes[split..]);
        assert_eq!(server.decode(&mut buf).expect("whole"), Some(hello()));
        assert!(buf.is_empty());
    }
}

#[test]
fn client_bytes_fed_one_byte_at_a_time_yield_the_hello_on_the_last() {
    let bytes = client_bytes();
    let mut server = HandshakeCodec::server();
    let mut buf = BytesMut::new();
    let (last, init) = bytes.split_last().expect("non-empty");
    for byte in init {
        buf.put_u8(*byte);
        assert_eq!(server.decode(&mut buf).expect("a prefix"), None);
    }
    buf.put_u8(*last);
    assert_eq!(server.decode(&mut buf).expect("whole"), Some(hello()));
}

#[test]
fn bad_preface_is_refused_at_the_first_wrong_byte() {
    for (input, found) in [
        (&b"S"[..], &b"S"[..]),
        (b"SETUP KERNEL=A\n", b"SETU"),
        (b"GET / HTTP/1.1\r\n", b"GET "),
        (b"IX", b"IX"),
        (b"IKX", b"IKX"),
        (b"ikc\x01", b"ikc\x01"),
    ] {
        let mut buf = BytesMut::from(input);
        let error = HandshakeCodec::server()
            .decode(&mut buf)
            .expect_err("not a preface");
        assert!(
            matches!(&error, CodecError::BadPreface { found: f } if f == found),
            "{input:?}: {error:?}"
        );
    }
}

#[test]
fn prefix_of_the_preface_waits_for_more() {
    for input in [&b"I"[..], b"IK", b"IKC"] {
        let mut buf = BytesMut::from(input);
        assert_eq!(
            HandshakeCodec::server()
                .decode(&mut buf)
                .expect("so far so good"),
            None
        );
        assert_eq!(buf.len(), input.len(), "nothing consumed yet");
    }
}

#[test]
fn unknown_protocol_version_is_refused() {
    for version in [0, 2, 0xff] {
        let mut buf = BytesMut::from(&Preface::new(version).to_bytes()[..]);
        let error = HandshakeCodec::server()
            .decode(&mut buf)
            .expect_err("unsupported");
        assert!(
            matches!(error, CodecError::UnsupportedVersion { version: v } if v == version),
            "{error:?}"
        );
    }
}

#[test]
fn eof_before_any_byte_is_a_clean_end() {
    let mut buf = BytesMut::new();
    assert_eq!(
        HandshakeCodec::server()
            .decode_eof(&mut buf)
            .expect("clean"),
        None
    );
}

#[test]
fn eof_inside_the_preface_or_the_hello_is_unexpected_eof() {
    let bytes = client_bytes();
    for split in 1..bytes.len() {
        let mut server = HandshakeCodec::server();
        let mut buf = BytesMut::from(&bytes[..split]);
        assert_eq!(server.decode(&mut buf).expect("a prefix"), None);
        let error = server.decode_eof(&mut buf).expect_err("cut short");
        assert!(
            matches!(error, CodecError::UnexpectedEof { buffered } if buffered == split),
            "split {split}: {error:?}"
        );
    }
}

#[test]
fn handshake_message_over_the_limit_is_refused_from_its_head() {
    let mut buf = BytesMut::from(&Preface::CURRENT.to_bytes()[..]);
    buf.put_u32(u32::try_from(MAX_HANDSHAKE_LENGTH + 1).expect("small"));
    let capacity = buf.capacity();
    let error = HandshakeCodec::server()
        .decode(&mut buf)
        .expect_err("too large");
    assert!(
        matches!(error, CodecError::FrameTooLarge { len, max } if len == MAX_HANDSHAKE_LENGTH as u64 + 1 && max == MAX_HANDSHAKE_LENGTH),
        "{error:?}"
    );
    assert!(buf.capacity() <= capacity, "nothing reserved");
}

#[test]
fn handshake_limit_ignores_a_larger_max_frame_length() {
    let mut codec = Builder::new()
        .max_frame_length(1 << 30)
        .new_server_handshake();
    let mut buf = BytesMut::from(&Preface::CURRENT.to_bytes()[..]);
    buf.put_u32(1 << 20);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(CodecError::FrameTooLarge { .. })
    ));
}

#[test]
fn oversized_hello_is_refused_on_encode_and_leaves_no_lone_preface() {
    let huge: pb::Handshake = pb::Hello {
        kernel: "x".repeat(MAX_HANDSHAKE_LENGTH),
        ..Default::default()
    }
    .into();
    let mut client = HandshakeCodec::client();
    let mut buf = BytesMut::new();
    let error = client.encode(huge, &mut buf).expect_err("too large");
    assert!(
        matches!(error, CodecError::FrameTooLarge { .. }),
        "{error:?}"
    );
    assert!(buf.is_empty(), "nothing written: {buf:?}");

    // The preface still goes in front of the first message that is sent.
    client.encode(hello(), &mut buf).expect("fits");
    assert_eq!(buf, client_bytes());
}

#[test]
fn into_frame_codec_keeps_the_builders_max_frame_length() {
    let mut builder = Builder::new();
    builder.max_frame_length(100);
    assert_eq!(
        builder
            .new_client_handshake()
            .into_frame_codec()
            .max_frame_length(),
        100
    );
    assert_eq!(
        builder
            .new_server_handshake()
            .into_frame_codec()
            .max_frame_length(),
        100
    );
    assert_eq!(
        HandshakeCodec::server()
            .into_frame_codec()
            .max_frame_length(),
        Builder::new().get_max_frame_length()
    );
}

#[tokio::test]
async fn frame_in_the_same_read_as_the_hello_survives_the_codec_switch() {
    let ping: pb::Frame = pb::Ping { nonce: 7 }.into();
    let mut read = client_bytes();
    read.extend_from_slice(&frame_bytes(&ping));
    let io = MockIo::new().read(&read).build();

    let mut framed = Framed::new(io, HandshakeCodec::server());
    let first = framed.next().await.expect("an item").expect("hello");
    assert_eq!(first, hello());

    let mut framed = framed.map_codec(HandshakeCodec::into_frame_codec);
    let second = framed.next().await.expect("an item").expect("frame");
    assert_eq!(second, ping);
    assert!(framed.next().await.is_none(), "clean end");
}

#[tokio::test]
async fn hello_split_across_scripted_reads_is_reassembled() {
    let bytes = client_bytes();
    let io = MockIo::new()
        .read(&bytes[..2])
        .read(&bytes[2..6])
        .read(&bytes[6..])
        .build();
    let mut handshakes = FramedRead::new(io, HandshakeCodec::server());
    assert_eq!(
        handshakes.next().await.transpose().expect("hello"),
        Some(hello())
    );
    assert!(handshakes.next().await.is_none());
}

#[tokio::test]
async fn client_and_server_handshake_then_exchange_frames_over_duplex() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let builder = *Builder::new().max_frame_length(1024);
    let ping: pb::Frame = pb::Ping { nonce: 1 }.into();

    // The client pipelines a frame right behind its Hello, then closes; the
    // duplex buffer holds it all, so nothing here waits on the server.
    let mut client = Framed::new(client_io, builder.new_client_handshake());
    client.send(hello()).await.expect("hello sent");
    let mut client = client.map_codec(HandshakeCodec::into_frame_codec);
    client.send(ping.clone()).await.expect("ping sent");
    drop(client);

    let mut server = Framed::new(server_io, builder.new_server_handshake());
    assert_eq!(
        server.next().await.transpose().expect("hello"),
        Some(hello())
    );
    let mut server = server.map_codec(HandshakeCodec::into_frame_codec);
    assert_eq!(server.codec().max_frame_length(), 1024);
    assert_eq!(server.next().await.transpose().expect("ping"), Some(ping));
    assert!(server.next().await.is_none(), "client closed");
}

#[tokio::test]
async fn switched_codec_enforces_the_builders_frame_limit() {
    let big: pb::Frame = pb::Unsubscribe {
        session: "x".repeat(200),
    }
    .into();
    let mut read = client_bytes();
    read.extend_from_slice(&frame_bytes(&big));
    let io = MockIo::new().read(&read).build();

    let builder = *Builder::new().max_frame_length(100);
    let mut framed = Framed::new(io, builder.new_server_handshake());
    assert_eq!(
        framed.next().await.transpose().expect("hello"),
        Some(hello())
    );
    let mut framed = framed.map_codec(HandshakeCodec::into_frame_codec);
    let error = framed
        .next()
        .await
        .expect("an item")
        .expect_err("too large");
    assert!(
        matches!(error, CodecError::FrameTooLarge { max: 100, .. }),
        "{error:?}"
    );
}
