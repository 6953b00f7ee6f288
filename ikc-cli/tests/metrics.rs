//! `ikc serve --metrics`: the Prometheus endpoint, scraped over HTTP as
//! Prometheus does; its counters and histogram move as calls are made, it
//! refuses methods other than GET, and garbage ends only its own
//! connection.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use support::{Served, WAIT, run};

/// Sends `request` as it is and reads the whole answer (the endpoint
/// closes after it: the requests ask it to).
fn http(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn get(addr: &str, path: &str) -> String {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: ikc\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The samples of a scrape: `name{labels}` (labels sorted) to value.
fn samples(scrape: &str) -> BTreeMap<String, f64> {
    let body = scrape.split("\r\n\r\n").nth(1).unwrap_or_default();
    let mut samples = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        samples.insert(key, value.parse().expect("a number"));
    }
    samples
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

#[test]
fn the_endpoint_counts_calls_by_session_and_event() {
    let server = Served::start(&["--bind", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let line = server.wait_for_log("metrics on http://");
    let endpoint = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port")
        .to_owned();

    for _ in 0..3 {
        assert!(
            run(&["call", "--addr", &server.addr, "echo/say", "1"])
                .status
                .success()
        );
    }
    assert!(
        run(&["call", "--addr", &server.addr, "echo/upper", r#""x""#])
            .status
            .success()
    );
    assert!(
        !run(&["call", "--addr", &server.addr, "echo/upper", "1"])
            .status
            .success()
    );
    assert!(
        !run(&["call", "--addr", &server.addr, "nosuch/thing", "1"])
            .status
            .success()
    );

    let scrape = get(&endpoint, "/metrics");
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    let samples = samples(&scrape);
    let say = r#"event="say",kind="call",session="echo""#;
    assert_eq!(
        value(&samples, &format!("ikc_requests_total{{{say}}}")),
        3.0
    );
    let upper = r#"event="upper",kind="call",session="echo""#;
    assert_eq!(
        value(&samples, &format!("ikc_requests_total{{{upper}}}")),
        2.0
    );
    let bad = r#"error="BadRequest",event="upper",session="echo""#;
    assert_eq!(
        value(&samples, &format!("ikc_request_errors_total{{{bad}}}")),
        1.0
    );
    let missing = r#"error="NoSession",event="-",session="-""#;
    assert_eq!(
        value(&samples, &format!("ikc_request_errors_total{{{missing}}}")),
        1.0
    );
    let histogram = r#"event="say",session="echo""#;
    assert_eq!(
        value(
            &samples,
            &format!("ikc_request_duration_seconds_count{{{histogram}}}")
        ),
        3.0
    );
    let inf = r#"ikc_request_duration_seconds_bucket{event="say",le="+Inf",session="echo"}"#;
    assert_eq!(value(&samples, inf), 3.0);
    assert!(value(&samples, "ikc_connections_accepted_total") >= 6.0);
    assert_eq!(value(&samples, "ikc_requests_in_flight"), 0.0);
    assert!(value(&samples, "ikc_bytes_received_total") > 0.0);
    assert!(value(&samples, "ikc_bytes_sent_total") > 0.0);

    // More calls, higher counts.
    assert!(
        run(&["call", "--addr", &server.addr, "echo/say", "1"])
            .status
            .success()
    );
    let samples = self::samples(&get(&endpoint, "/metrics"));
    assert_eq!(
        value(&samples, &format!("ikc_requests_total{{{say}}}")),
        4.0
    );
}

#[test]
fn the_endpoint_refuses_other_methods_and_survives_garbage() {
    let server = Served::start(&["--bind", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let line = server.wait_for_log("metrics on http://");
    let endpoint = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port")
        .to_owned();

    let post = http(
        &endpoint,
        b"POST /metrics HTTP/1.1\r\nHost: ikc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
    assert!(get(&endpoint, "/other").starts_with("HTTP/1.1 404"));

    let garbage = http(&endpoint, b"\x00\x01\x02 not http at all\r\n\r\n");
    assert!(!garbage.starts_with("HTTP/1.1 200"), "{garbage}");
    // Neither the endpoint nor the server minded.
    assert!(get(&endpoint, "/metrics").starts_with("HTTP/1.1 200"));
    assert!(run(&["ping", "--addr", &server.addr]).status.success());
}
