//! `--otlp ENDPOINT` (the `otel` feature): `ikc call` and the `ikc serve`
//! that ran the call export their spans as one trace, the server's
//! request span the child of the call's; a balanced call (`--addr a,b`)
//! and a pre-forked server (`--workers`, each worker exporting its own)
//! included.
//!
//! The collector is this test's: an HTTP listener on loopback that
//! decodes each OTLP/HTTP export and hands its spans to the test on a
//! channel, so the test waits for them instead of polling.
#![cfg(feature = "otel")]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Instant;

use nix::sys::signal::Signal;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;

use support::{Served, WAIT, run, stdout};

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
}

/// An OTLP/HTTP collector on 127.0.0.1, port 0.
struct Collector {
    url: String,
    spans: mpsc::Receiver<Exported>,
    received: Vec<Exported>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let (tx, spans) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let tx = tx.clone();
                std::thread::spawn(move || collect(stream, &tx));
            }
        });
        Collector {
            url,
            spans,
            received: Vec::new(),
        }
    }

    /// The spans received once `enough` holds of them, within [`WAIT`].
    fn until(&mut self, what: &str, enough: impl Fn(&[Exported]) -> bool) -> &[Exported] {
        let deadline = Instant::now() + WAIT;
        while !enough(&self.received) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.spans.recv_timeout(left) {
                Ok(span) => self.received.push(span),
                Err(error) => panic!("no {what} ({error}); received {:#?}", self.received),
            }
        }
        &self.received
    }
}

/// Reads OTLP/HTTP exports from one connection (kept alive) and answers
/// each with 200.
fn collect(stream: TcpStream, spans: &mpsc::Sender<Exported>) {
    let mut reader = BufReader::new(stream.try_clone().expect("a second handle"));
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        assert!(line.starts_with("POST /v1/traces "), "{line:?}");
        let mut length = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("a header");
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().expect("a length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("the body");
        let export = ExportTraceServiceRequest::decode(&body[..]).expect("an OTLP export");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = spans.send(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id,
                });
            }
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

/// The call's span and the server request span that is its child.
fn call_and_its_request(spans: &[Exported]) -> Option<(&Exported, &Exported)> {
    let call = spans
        .iter()
        .find(|s| s.service == "ikc" && s.name == "ikc.call")?;
    let request = spans
        .iter()
        .find(|s| s.name == "ikc.request" && s.parent_span_id == call.span_id)?;
    Some((call, request))
}

fn serve(name: &str, collector: &Collector, more: &[&str]) -> Served {
    let mut args = vec![
        "--bind",
        "127.0.0.1:0",
        "--name",
        name,
        "--otlp",
        &collector.url,
    ];
    args.extend_from_slice(more);
    Served::start(&args)
}

/// Stops `server` as an operator does; it sends its spans as it stops.
fn stop(mut server: Served) {
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
}

#[test]
fn a_balanced_call_and_the_server_that_ran_it_are_one_trace() {
    let mut collector = Collector::start();
    let (a, b) = (serve("A", &collector, &[]), serve("B", &collector, &[]));
    let list = format!("{},{}", a.addr, b.addr);

    let output = run(&[
        "call",
        "--otlp",
        &collector.url,
        "--addr",
        &list,
        "echo/say",
        r#""hi""#,
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), r#""hi""#);
    stop(a);
    stop(b);

    let spans = collector.until("call span with its server's child", |spans| {
        call_and_its_request(spans).is_some()
    });
    let (call, request) = call_and_its_request(spans).expect("found");
    assert!(
        call.parent_span_id.is_empty(),
        "the call is the trace's root: {call:?}"
    );
    assert_eq!(request.trace_id, call.trace_id);
    assert!(
        ["A", "B"].contains(&request.service.as_str()),
        "the server that ran it names its service: {request:?}"
    );
}

#[test]
fn each_preforked_worker_exports_its_own_spans() {
    let mut collector = Collector::start();
    let server = serve("P", &collector, &["--workers", "2"]);

    let output = run(&[
        "call",
        "--otlp",
        &collector.url,
        "--addr",
        &server.addr,
        "echo/say",
        "1",
    ]);
    assert!(output.status.success(), "{output:?}");
    stop(server);

    let spans = collector.until("call span with its worker's child", |spans| {
        call_and_its_request(spans).is_some()
    });
    let (call, request) = call_and_its_request(spans).expect("found");
    assert_eq!(request.trace_id, call.trace_id);
    assert_eq!(request.service, "P");
}
