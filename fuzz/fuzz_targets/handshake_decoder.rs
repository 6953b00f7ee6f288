//! Arbitrary bytes, cut into arbitrary reads, into the handshake codec (the
//! server side checks the preface first), then, as `Framed::map_codec`
//! does, the rest of the same buffer into the frame codec the handshake
//! hands over.
//!
//! Input: `[mode, chunk_seed, stream...]`. Bit 0 of `mode` picks the side:
//! set = the server's codec (preface, then `Hello`), clear = the client's
//! (no preface, then `Welcome` or `Refuse`). The frame codec after the
//! handshake gets a maximum of `(mode >> 1) * 8` bytes. Checked: no panic; a
//! bad preface reports at most the 4 bytes it saw, and they are the start
//! of the stream; a preface with another version is the only source of
//! `UnsupportedVersion`; the buffer held while waiting stays within the
//! handshake maximum (or the frame maximum) plus the head.

#![no_main]

use bytes::BytesMut;
use ikc_fuzz::Chunks;
use ikc_proto::codec::{Builder, MAX_HANDSHAKE_LENGTH};
use ikc_proto::{CodecError, FrameCodec, HandshakeCodec, Preface};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// The 4-byte length head in front of every message.
const HEAD_LEN: usize = 4;

/// Which codec is reading the buffer.
enum Phase {
    Handshake(HandshakeCodec),
    Frames(FrameCodec),
}

fuzz_target!(|data: &[u8]| {
    let Some((&[mode, chunk_seed], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let server = mode & 1 == 1;
    let frame_max = usize::from(mode >> 1) * 8;
    let mut builder = Builder::new();
    builder.max_frame_length(frame_max);
    let mut phase = Phase::Handshake(if server {
        builder.new_server_handshake()
    } else {
        builder.new_client_handshake()
    });
    let mut buf = BytesMut::new();

    for chunk in Chunks::new(stream, chunk_seed) {
        buf.extend_from_slice(chunk);
        loop {
            match &mut phase {
                Phase::Handshake(codec) => match codec.decode(&mut buf) {
                    Ok(Some(_message)) => {
                        let Phase::Handshake(codec) =
                            std::mem::replace(&mut phase, Phase::Frames(FrameCodec::new()))
                        else {
                            unreachable!("in the handshake phase");
                        };
                        let frames = codec.into_frame_codec();
                        assert_eq!(frames.max_frame_length(), frame_max);
                        phase = Phase::Frames(frames);
                    }
                    Ok(None) => {
                        assert!(
                            buf.len() <= MAX_HANDSHAKE_LENGTH + HEAD_LEN,
                            "handshake decoder holds {} bytes",
                            buf.len()
                        );
                        break;
                    }
                    Err(error) => return check_handshake_error(&error, server, stream),
                },
                Phase::Frames(codec) => match codec.decode(&mut buf) {
                    Ok(Some(_frame)) => {}
                    Ok(None) => {
                        assert!(buf.len() <= frame_max + HEAD_LEN);
                        break;
                    }
                    Err(CodecError::FrameTooLarge { len, max }) => {
                        assert!(max == frame_max && len > max as u64);
                        return;
                    }
                    Err(CodecError::Decode(_)) => return,
                    Err(error) => panic!("unexpected frame error: {error}"),
                },
            }
        }
    }

    let result = match &mut phase {
        Phase::Handshake(codec) => codec.decode_eof(&mut buf).map(|m| m.is_some()),
        Phase::Frames(codec) => codec.decode_eof(&mut buf).map(|m| m.is_some()),
    };
    match result {
        Ok(_) | Err(CodecError::UnexpectedEof { .. } | CodecError::Decode(_)) => {}
        Err(error) if matches!(phase, Phase::Handshake(_)) => {
            check_handshake_error(&error, server, stream);
        }
        Err(error) => panic!("unexpected error at end of stream: {error}"),
    }
});

fn check_handshake_error(error: &CodecError, server: bool, stream: &[u8]) {
    match error {
        CodecError::BadPreface { found } => {
            assert!(server, "the client side reads no preface");
            assert!(found.len() <= Preface::LEN);
            assert_eq!(found[..], stream[..found.len()]);
        }
        CodecError::UnsupportedVersion { version } => {
            assert!(server, "the client side reads no preface");
            assert_ne!(*version, Preface::CURRENT_VERSION);
            assert_eq!(stream[..Preface::MAGIC.len()], Preface::MAGIC);
        }
        CodecError::FrameTooLarge { len, max } => {
            assert!(*max == MAX_HANDSHAKE_LENGTH && *len > *max as u64);
        }
        CodecError::Decode(_) | CodecError::UnexpectedEof { .. } => {}
        other => panic!("unexpected handshake error: {other}"),
    }
}
