//! `FrameCodec`: encoding a `Request` frame into a buffer and decoding it
//! back, at 64 B, 4 KiB and 64 KiB payloads.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ikc::Value;
use ikc::proto::{FrameCodec, pb};
use tokio_util::codec::{Decoder, Encoder};

mod support;

const PAYLOADS: [usize; 3] = [64, 4 * 1024, 64 * 1024];

fn request(payload: usize) -> pb::Frame {
    pb::Request {
        id: 1,
        target: "poe://Server/echo/say".to_owned(),
        arg: Some(Value::Bytes(support::payload(payload)).into_proto()),
        from: String::new(),
        deadline_ms: 10_000,
        traceparent: String::new(),
    }
    .into()
}

fn encode_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec/request_encode_decode");
    for payload in PAYLOADS {
        let frame = request(payload);
        let mut codec = FrameCodec::new();
        let mut buffer = BytesMut::with_capacity(payload + 128);
        group.throughput(Throughput::Bytes(payload as u64));
        group.bench_with_input(BenchmarkId::from_parameter(payload), &frame, |b, frame| {
            b.iter(|| {
                codec.encode(frame, &mut buffer).expect("encode");
                let decoded = codec.decode(&mut buffer).expect("decode");
                std::hint::black_box(decoded.expect("a whole frame"))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Two cores: short runs with few samples keep `cargo bench` quick.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = encode_decode
}
criterion_main!(benches);
