//! The README's "Talking to Perl IKC" script against a real `ikc serve`.
//!
//! No Perl IKC is installed here, so the test sends exactly the bytes that
//! script makes ClientLite send: they are in the capture of a ClientLite
//! session (`ikc-server/tests/fixtures/perl-ikc/wire.jsonl`, connection 1),
//! whose first request is `call('echo/say', 'hello')` and whose only post is
//! `post('echo/say', 'fire-and-forget')`, made with `name => 'Probe'`. Two
//! things in those bytes came from the Perl server the capture was made
//! with and would differ against `ikc serve`, and neither changes the
//! answer: the `PID=` of the `SETUP` line (informational), and the kernel
//! part of the request's target (the Perl server's kernel ID), which the
//! receiver ignores, in Perl and in ikc. The test also checks that the
//! README still shows that script.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ikc::core::Value;
use ikc::server::legacy::storable;

const WAIT: Duration = Duration::from_secs(20);

/// The script in the README, line for line.
const SCRIPT: &str = r"use POE::Component::IKC::ClientLite;

my $ikc = POE::Component::IKC::ClientLite::create_ikc_client(
    ip => '127.0.0.1', port => 6030, name => 'Probe',
) or die POE::Component::IKC::ClientLite::error();

my $answer = $ikc->call('echo/say', 'hello') or die $ikc->error;   # 'hello'
$ikc->post('echo/say', 'fire-and-forget') or die $ikc->error;
";

/// The repository root, which holds the README.
fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_readme_shows_the_script_this_test_replays() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("## Talking to Perl IKC")
        .nth(1)
        .expect("README has the Talking to Perl IKC section");
    let script = section
        .split("```perl\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a perl block");
    assert_eq!(script, SCRIPT);
}

/// The client bytes of the capture's connection 1, chunk by chunk.
fn clientlite_chunks() -> Vec<Vec<u8>> {
    let path = root().join("ikc-server/tests/fixtures/perl-ikc/wire.jsonl");
    let text = std::fs::read_to_string(path).expect("capture");
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
        .filter(|r| r["conn"] == 1 && r["dir"] == "c2s")
        .map(|r| {
            let hex = r["hex"].as_str().expect("hex").to_owned();
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
                .collect()
        })
        .collect()
}

fn image(chunk: &[u8]) -> Value {
    let nul = chunk.iter().position(|&b| b == 0).expect("frame head");
    storable::from_slice(&chunk[nul + 1..]).expect("Storable")
}

fn field<'a>(message: &'a Value, key: &str) -> &'a Value {
    message
        .as_map()
        .and_then(|m| m.get(key))
        .unwrap_or_else(|| panic!("no {key} in {message:?}"))
}

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `ikc serve` on a free port with `args`; returns it and its address.
fn serve(args: &[&str]) -> (Served, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ikc"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ikc serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let served = Served(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("ikc serve logs its address");
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().expect("address").to_owned();
            return (served, addr);
        }
    }
}

/// Reads until `buf` holds a complete `\r\n` line or `<len>\0<payload>`.
fn read_piece(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        let nul = buf.iter().position(|&b| b == 0);
        match nul {
            Some(nul) if buf.first().is_some_and(u8::is_ascii_digit) => {
                let len: usize = std::str::from_utf8(&buf[..nul])
                    .expect("ascii")
                    .parse()
                    .expect("length");
                if buf.len() > nul + len {
                    return buf.drain(..=nul + len).collect();
                }
            }
            _ => {
                if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                    return buf.drain(..end + 2).collect();
                }
            }
        }
        let n = stream.read(&mut chunk).expect("read in time");
        assert!(n > 0, "server closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn the_readme_clientlite_script_gets_its_answers_from_ikc_serve() {
    let (_served, addr) = serve(&[]);
    let chunks = clientlite_chunks();
    let setup = &chunks[0];
    let call = &chunks[1];
    let post = chunks
        .iter()
        .find(|c| {
            c.first().is_some_and(u8::is_ascii_digit)
                && image(c).as_map().is_some_and(|m| {
                    !m.contains_key("rsvp")
                        && m.get("params") == Some(&Value::from("fire-and-forget"))
                })
        })
        .expect("the capture has the post");
    assert_eq!(setup, b"SETUP KERNEL=Probe;FREEZER=Storable;PID=10487\r\n");
    assert_eq!(field(&image(call), "params"), &Value::from("hello"));
    assert_eq!(
        field(&image(post), "params"),
        &Value::from("fire-and-forget")
    );

    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = Vec::new();

    stream.write_all(setup).expect("write");
    let answer = String::from_utf8(read_piece(&mut stream, &mut buf)).expect("ascii");
    // ClientLite needs SETUP back with the Storable freezer.
    assert!(
        answer.starts_with("SETUP KERNEL=ikc,127.0.0.1:"),
        "{answer}"
    );
    assert!(answer.contains(";FREEZER=Storable;PID="), "{answer}");

    stream.write_all(call).expect("write");
    let reply = read_piece(&mut stream, &mut buf);
    let reply = image(&reply);
    // What ClientLite waits for: its rsvp as the event, the answer in params.
    assert_eq!(field(&reply, "event"), field(&image(call), "rsvp"));
    assert_eq!(field(&reply, "params"), &Value::from("hello"));
    assert_eq!(
        field(&reply, "from"),
        &Value::Map(
            [
                ("kernel", "ikc"),
                ("session", "echo"),
                ("state", "IKC:proxy")
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect()
        )
    );

    // A post is not answered: the connection closes with nothing more.
    stream.write_all(post).expect("write");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to the close");
    assert!(buf.is_empty() && rest.is_empty(), "unexpected {rest:?}");
}

#[test]
fn ikc_serve_with_legacy_off_does_not_answer_clientlite() {
    let (_served, addr) = serve(&["--legacy", "off"]);
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(&clientlite_chunks()[0])
        .expect("write the SETUP line");
    // Not a native preface: the server closes without a word.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("closed in time");
    assert!(answer.is_empty(), "{answer:?}");
}
