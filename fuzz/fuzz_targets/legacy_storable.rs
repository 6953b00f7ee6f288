//! Arbitrary bytes through the legacy (Perl IKC) readers: as a Storable
//! image, as a stream of `<length>\0<payload>` frames, and as negotiation
//! lines.
//!
//! Checked: no panic and no stack overflow; every accepted image nests at
//! most `MAX_DEPTH` levels and writes back; after one trip (booleans become
//! Perl's `'1'`/`''`), it reads back unchanged; the frame codec never hands
//! out a frame longer than its maximum.

#![no_main]

use bytes::BytesMut;
use ikc_proto::value::MAX_DEPTH;
use ikc_server::legacy::codec::{LegacyFrameCodec, LineCodec};
use ikc_server::legacy::storable;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = storable::from_slice(data) {
        assert!(value.depth() <= MAX_DEPTH);
        let image = storable::to_vec(&value).expect("a read value writes back");
        let once = storable::from_slice(&image).expect("reads back");
        let again = storable::to_vec(&once).expect("writes back");
        assert_eq!(storable::from_slice(&again).expect("reads back"), once);
    }

    let mut frames = LegacyFrameCodec::new(MAX_FRAME);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = frames.decode(&mut buf) {
        assert!(frame.len() <= MAX_FRAME);
        let _ = storable::from_slice(&frame);
    }
    let _ = frames.decode_eof(&mut buf);

    let mut lines = LineCodec::new();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = lines.decode(&mut buf) {}
    let _ = lines.decode_eof(&mut buf);
});
