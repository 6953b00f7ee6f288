//! The frame codec reads and writes the common frames itself (its fast
//! path, `ikc-proto/src/codec/fast.rs`) and leaves everything else to
//! prost. This checks that it always agrees with prost.
//!
//! Input: the bytes of one frame, without the 4-byte head. Checked: the
//! codec decodes them exactly when prost does, to the same frame (compared
//! re-encoded by prost, so a NaN compares equal to itself); and a frame
//! prost decoded is written by the codec byte for byte as prost writes it,
//! and `codec::encoded::over_limit` says it is over a limit exactly when its length
//! is (limits around its length and its first byte's value).

#![no_main]

use bytes::{BufMut, BytesMut};
use ikc_proto::{FrameCodec, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|message: &[u8]| {
    let Ok(len) = u32::try_from(message.len()) else {
        return;
    };
    let mut wire = BytesMut::with_capacity(message.len() + 4);
    wire.put_u32(len);
    wire.extend_from_slice(message);
    let ours = FrameCodec::new().decode(&mut wire);
    let prosts = pb::Frame::decode(message);
    match (&ours, &prosts) {
        (Ok(Some(ours)), Ok(prosts)) => {
            assert_eq!(
                ours.encode_to_vec(),
                prosts.encode_to_vec(),
                "decoded differently"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!("the codec and prost disagree: {ours:?} / {prosts:?}"),
    }
    if let Ok(frame) = prosts {
        let mut written = BytesMut::new();
        FrameCodec::new()
            .encode(&frame, &mut written)
            .expect("a decoded frame encodes");
        let expected = frame.encode_to_vec();
        assert_eq!(&written[4..], &expected[..], "written differently");
        assert_eq!(ikc_proto::codec::encoded::encoded_len(&frame), expected.len());
        let len = expected.len();
        let first = usize::from(message.first().copied().unwrap_or(0));
        for max in [0, first, len.saturating_sub(1), len, len + first, usize::MAX] {
            assert_eq!(
                ikc_proto::codec::encoded::over_limit(&frame, max),
                (len > max).then_some(len),
                "over_limit at {max}"
            );
        }
    }
});
