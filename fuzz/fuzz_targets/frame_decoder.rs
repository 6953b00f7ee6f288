//! Arbitrary bytes, cut into arbitrary reads, into the frame codec with a
//! small maximum frame length.
//!
//! Input: `[max_lo, max_hi, chunk_seed, new_max, stream...]`. The maximum is
//! `u16::from_le_bytes([max_lo, max_hi]) % 1024`; when `new_max` is not 0
//! the maximum becomes `new_max * 4` after the first frame (a maximum
//! changed in flight). Checked: no panic; while the decoder waits for more
//! input it holds at most a head or less than one frame of the largest
//! maximum in force; a head over the maximum is refused before any buffer
//! is reserved; a clean end of stream leaves nothing buffered.

#![no_main]

use bytes::BytesMut;
use ikc_fuzz::Chunks;
use ikc_proto::CodecError;
use ikc_proto::codec::Builder;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

/// The 4-byte length head in front of every frame.
const HEAD_LEN: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Some((&[max_lo, max_hi, chunk_seed, new_max], stream)) = data.split_first_chunk::<4>()
    else {
        return;
    };
    let mut max = usize::from(u16::from_le_bytes([max_lo, max_hi]) % 1024);
    // A frame whose head was accepted is read in full even if the maximum
    // shrinks, so the bound is the largest maximum ever in force.
    let mut largest_max = max;
    let mut codec = Builder::new().max_frame_length(max).new_frame_codec();
    let mut buf = BytesMut::new();
    let mut frames = 0_usize;

    for chunk in Chunks::new(stream, chunk_seed) {
        buf.extend_from_slice(chunk);
        loop {
            let capacity = buf.capacity();
            match codec.decode(&mut buf) {
                Ok(Some(_frame)) => {
                    frames += 1;
                    if frames == 1 && new_max != 0 {
                        max = usize::from(new_max) * 4;
                        largest_max = largest_max.max(max);
                        codec.set_max_frame_length(max);
                        assert_eq!(codec.max_frame_length(), max);
                    }
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= largest_max + HEAD_LEN,
                        "decoder holds {} bytes waiting for more, over max {largest_max} + head",
                        buf.len()
                    );
                    break;
                }
                Err(CodecError::FrameTooLarge {
                    len,
                    max: refused_max,
                }) => {
                    assert_eq!(refused_max, max);
                    assert!(
                        len > refused_max as u64,
                        "{len} bytes is within {refused_max}"
                    );
                    assert_eq!(buf.capacity(), capacity, "reserved for a refused frame");
                    return;
                }
                Err(CodecError::Decode(_)) => return,
                Err(error) => panic!("unexpected decode error: {error}"),
            }
        }
    }

    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(_frame)) => {}
            Ok(None) => {
                assert!(buf.is_empty(), "clean end with {} bytes left", buf.len());
                return;
            }
            Err(CodecError::UnexpectedEof { buffered }) => {
                assert!(buffered > 0 && buffered <= largest_max + HEAD_LEN);
                return;
            }
            Err(CodecError::FrameTooLarge { .. } | CodecError::Decode(_)) => return,
            Err(error) => panic!("unexpected decode_eof error: {error}"),
        }
    }
});
