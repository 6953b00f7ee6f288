//! `ikc serve --metrics`: the Prometheus endpoint, scraped over HTTP as
//! Prometheus does; its counters and histogram move as calls are made, it
//! refuses methods other than GET, and garbage ends only its own
//! connection.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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

/// The `host:port` of the server's metrics endpoint, from its log.
fn endpoint(server: &Served) -> String {
    let line = server.wait_for_log("metrics on http://");
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port")
        .to_owned()
}

/// Scrapes `endpoint` until `done` holds for the samples, within [`WAIT`]:
/// what a worker records reaches the endpoint within a second or so.
fn scrape_until(
    endpoint: &str,
    what: &str,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let samples = samples(&get(endpoint, "/metrics"));
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "never {what}: {samples:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sum of the samples of `name` whose labels include `labels`, and
/// the workers they came from.
fn by_worker(samples: &BTreeMap<String, f64>, name: &str, labels: &str) -> (f64, BTreeSet<String>) {
    let mut sum = 0.0;
    let mut workers = BTreeSet::new();
    for (key, value) in samples {
        let Some(rest) = key.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        if !rest.contains(labels) {
            continue;
        }
        sum += value;
        let worker = rest
            .split(['{', ',', '}'])
            .find(|l| l.starts_with("worker="));
        workers.insert(worker.unwrap_or("none").to_owned());
    }
    (sum, workers)
}

#[test]
fn the_endpoint_counts_calls_by_session_and_event() {
    let server = Served::start(&["--bind", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
    let endpoint = endpoint(&server);

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
    let endpoint = endpoint(&server);

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

#[test]
fn a_preforked_server_has_one_endpoint_for_the_supervisor_and_every_worker() {
    let mut server = Served::start(&[
        "--bind",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--babysit",
        "1",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let endpoint = endpoint(&server);
    // The supervisor's facts, written after each babysit round.
    scrape_until(&endpoint, "two running workers", |s| {
        s.get(r#"ikc_workers{state="running"}"#) == Some(&2.0)
    });

    for _ in 0..4 {
        assert!(
            run(&["call", "--addr", &server.addr, "echo/say", "1"])
                .status
                .success()
        );
    }
    let say = r#"event="say",kind="call",session="echo""#;
    let samples = scrape_until(&endpoint, "the four calls counted", |s| {
        by_worker(s, "ikc_requests_total", say).0 == 4.0
    });
    // Every worker's samples carry its number; none is unlabelled.
    let (_, workers) = by_worker(&samples, "ikc_requests_total", say);
    assert!(
        workers
            .iter()
            .all(|w| w == r#"worker="1""# || w == r#"worker="2""#),
        "{workers:?}"
    );
    assert!(value(&samples, "ikc_worker_starts_total") >= 2.0);
    let cpu = by_worker(&samples, "ikc_worker_cpu_seconds", "").1;
    assert_eq!(
        cpu,
        BTreeSet::from([r#"worker="1""#.to_owned(), r#"worker="2""#.to_owned()])
    );

    // A worker killed: counted as died, and replaced.
    let ping = run(&["ping", "--addr", &server.addr]);
    let answer: serde_json::Value = serde_json::from_slice(&ping.stdout).expect("JSON");
    let pid = i32::try_from(answer["pid"].as_i64().expect("a pid")).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("the worker is there");
    let samples = scrape_until(&endpoint, "the death counted", |s| {
        s.get(r#"ikc_worker_exits_total{reason="died"}"#) == Some(&1.0)
            && s.get(r#"ikc_workers{state="running"}"#) == Some(&2.0)
    });
    assert!(value(&samples, "ikc_worker_starts_total") >= 3.0);

    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
}
