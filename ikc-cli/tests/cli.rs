//! The `ikc` binary end to end: `serve` in a subprocess, and `call`, `post`,
//! `ping` and `monitor` against it, as a user would run them.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;

use support::{Served, WAIT, ikc, run, stdout};

#[test]
fn call_prints_the_answer_as_json() {
    let server = Served::start(&["--bind", "127.0.0.1:0", "--name", "Srv"]);
    let output = run(&[
        "call",
        "--addr",
        &server.addr,
        "echo/say",
        r#"{"list":[1,2.5,"x"],"n":null}"#,
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), r#"{"list":[1,2.5,"x"],"n":null}"#);

    let output = run(&[
        "call",
        "--addr",
        &server.addr,
        "poe://Srv/echo/upper",
        r#""hello""#,
    ]);
    assert_eq!(stdout(&output), r#""HELLO""#);
}

#[test]
fn failed_call_exits_non_zero_and_names_the_error_kind() {
    let server = Served::start(&["--bind", "127.0.0.1:0"]);
    let output = run(&["call", "--addr", &server.addr, "nosuch/event"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("NoSession"),
        "{output:?}"
    );

    let output = run(&["call", "--addr", &server.addr, "echo/upper", "42"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("BadRequest"),
        "{output:?}"
    );
}

#[test]
fn unreachable_server_exits_with_status_3() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = run(&["ping", "--addr", &format!("127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot connect"),
        "{output:?}"
    );
}

#[test]
fn silent_server_gives_up_after_the_connect_timeout_with_status_3() {
    // Listening, so the connect succeeds from the backlog, but never
    // accepted: nothing ever answers the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let output = run(&["ping", "--addr", &addr, "--connect-timeout", "0.3"]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr) && stderr.contains("connect timeout (300ms)"),
        "{stderr}"
    );
    drop(silent);
}

/// `ikc bench` for 0.3 s against `addr` with `options`; its output.
fn bench(addr: &str, options: &[&str]) -> Output {
    let mut args = vec![
        "bench", "--addr", addr, "--secs", "0.3", "--warmup", "0", "--json",
    ];
    args.extend_from_slice(options);
    run(&args)
}

/// Asserts that a bench run succeeded and measured answered calls.
#[track_caller]
fn assert_measured_calls(output: &Output) {
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_str(&stdout(output)).expect("json");
    assert!(
        report["measured"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
}

#[test]
fn bench_with_the_secret_file_measures_calls_and_without_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let secret = secret.to_str().unwrap();
    let server = Served::start(&["--bind", "127.0.0.1:0", "--secret-file", secret]);

    assert_measured_calls(&bench(&server.addr, &["--secret-file", secret]));

    let output = bench(&server.addr, &[]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("requires a shared secret"),
        "{output:?}"
    );
}

/// `ikc serve` speaking TLS with a self-signed certificate for 127.0.0.1,
/// written into `dir`; the server and the certificate's path (its own CA).
fn serve_tls(dir: &std::path::Path) -> (Served, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Served::start(&[
        "--bind",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ]);
    (server, cert.to_owned())
}

#[test]
fn bench_with_the_tls_ca_measures_calls_and_without_it_does_not_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = serve_tls(dir.path());
    let cert = cert.as_str();

    assert_measured_calls(&bench(&server.addr, &["--tls-ca", cert]));

    let output = bench(&server.addr, &[]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a plain client does not get in: {output:?}"
    );
}

#[test]
fn ping_reports_the_answering_kernel_and_pid() {
    let server = Served::start(&["--bind", "127.0.0.1:0", "--name", "Pinged"]);
    let output = run(&["ping", "--addr", &server.addr]);
    assert!(output.status.success(), "{output:?}");
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    assert_eq!(answer["kernel"], "Pinged");
    assert_eq!(answer["pid"], server.child.id());
}

#[test]
fn serve_on_a_unix_socket_answers_and_removes_the_socket_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let path_text = path.to_str().unwrap();
    let mut server = Served::start(&["--unix", path_text]);
    assert_eq!(server.addr, format!("unix:{path_text}"));
    let output = run(&["post", "--addr", &server.addr, "echo/say", "1"]);
    assert!(output.status.success(), "{output:?}");
    let output = run(&["call", "--addr", &server.addr, "echo/say", "[true]"]);
    assert_eq!(stdout(&output), "[true]");

    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
    assert!(!path.exists(), "socket file removed at shutdown");
}

#[test]
fn sigint_stops_the_server_with_status_0() {
    let mut server = Served::start(&["--bind", "127.0.0.1:0"]);
    server.signal(Signal::SIGINT);
    server.wait_for_log("stopped");
    assert!(server.wait_exit().success());
}

#[test]
fn bind_to_a_port_in_use_fails_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&["serve", "--bind", &addr]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("address in use") && stderr.contains(&addr),
        "{stderr}"
    );
}

#[test]
fn monitor_prints_register_and_unregister_of_other_clients() {
    let server = Served::start(&["--bind", "127.0.0.1:0"]);
    let mut monitor = ikc()
        .args(["monitor", "--addr", &server.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("monitor starts");
    let stdout = monitor.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The monitor subscribes some time after it starts: ping until one
    // whole visit (register, then unregister) of a pinging client shows.
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen: Vec<String> = Vec::new();
    let visited = |seen: &[String]| {
        let first_register = seen.iter().position(|l| l.contains("\"register\""));
        first_register.is_some_and(|i| seen[i..].iter().any(|l| l.contains("\"unregister\"")))
    };
    while !visited(&seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "monitor printed only {seen:?}"
        );
        let output = run(&["ping", "--addr", &server.addr]);
        assert!(output.status.success());
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
}

#[test]
fn secret_file_on_both_sides_lets_a_call_through_and_its_absence_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let secret = secret.to_str().unwrap();
    let server = Served::start(&["--bind", "127.0.0.1:0", "--secret-file", secret]);

    let output = run(&[
        "call",
        "--addr",
        &server.addr,
        "--secret-file",
        secret,
        "echo/say",
        "1",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), "1");

    let output = run(&["call", "--addr", &server.addr, "echo/say", "1"]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("requires a shared secret"),
        "{output:?}"
    );
}

#[test]
fn tls_certificate_on_the_server_and_its_ca_on_the_client_let_a_call_through() {
    let dir = tempfile::tempdir().unwrap();
    let (server, cert) = serve_tls(dir.path());
    let cert = cert.as_str();

    let output = run(&[
        "call",
        "--addr",
        &server.addr,
        "--tls-ca",
        cert,
        "echo/upper",
        r#""tls""#,
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout(&output), r#""TLS""#);

    let output = run(&["call", "--addr", &server.addr, "echo/say", "1"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "a plain client does not get in: {output:?}"
    );
}

#[test]
fn out_of_file_descriptors_pauses_accepting_and_the_server_recovers() {
    // A server with few descriptors, so connections exhaust them.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"ulimit -n 48 && exec "$0" serve --bind 127.0.0.1:0"#)
        .arg(env!("CARGO_BIN_EXE_ikc"))
        .env_remove("RUST_LOG");
    let server = Served::spawn(command);
    let hogs: Vec<std::net::TcpStream> = (0..80)
        .map(|_| std::net::TcpStream::connect(&server.addr).expect("the backlog takes it"))
        .collect();
    let line = server.wait_for_log("out of file descriptors");
    assert!(line.contains("pausing accept"), "{line}");

    drop(hogs);
    // Descriptors come back as the dropped connections close; the server
    // then accepts again.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let output = run(&["ping", "--addr", &server.addr]);
        if output.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {output:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigusr2_logs_the_status_of_a_single_process_server_which_serves_on() {
    let mut server = Served::start(&["--bind", "127.0.0.1:0"]);
    assert!(run(&["ping", "--addr", &server.addr]).status.success());
    server.signal(Signal::SIGUSR2);
    let status = server.wait_for_log(" status ");
    assert!(
        status.contains(&format!("listening={}", server.addr)),
        "{status}"
    );
    assert!(status.contains("accepted=1"), "{status}");
    assert!(run(&["ping", "--addr", &server.addr]).status.success());
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
}
