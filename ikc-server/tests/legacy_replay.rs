//! Replays the client side of real Perl IKC traffic (the captures in
//! `tests/fixtures/perl-ikc/`) against an ikc server, and checks that every
//! answer decodes to what the Perl server answered.
//!
//! The ikc server mimics the Perl probe server: a kernel named like the
//! Perl server's kernel ID (`vm-6b05c1c8-000028a0-00000001`, alias
//! `Server`) publishing `echo` with `say` (answers its argument) and `add`
//! (sums a list), and `ghost` with `boo`, whose session fails (in Perl it
//! was published and then gone). With the Perl kernel ID as our name, the
//! captured client bytes, which address that ID, replay unchanged.
//!
//! How answers are compared: lines as text and frames as decoded Storable
//! values, never bytes (Perl randomises hash key order). What differs by
//! nature is normalized on both sides first: the server's port in
//! `ip:port` (`127.0.0.1:PORT`) and its `PID=`; and the text of a
//! `resolve` error before its `.  Request ...` part, which names Perl's
//! source file on one side and ikc's handler error on the other. Kernel
//! names, client names, error texts of target checks and every value are
//! compared as they are.

#![cfg(feature = "perl")]

mod legacy_capture;

use std::collections::BTreeMap;

use ikc_core::{BoxError, IkcError, Kernel, Request, Value};
use ikc_server::{Server, ServerHandle};
use legacy_capture::{Chunk, Decoded, Dir, Peer, WAIT, connection, decode, replay};
use tower::service_fn;

const PERL_KERNEL_A: &str = "vm-6b05c1c8-000028a0-00000001";
const PERL_KERNEL_B: &str = "vm-6b05c1c8-000028a1-00000001";

fn add(arg: &Value) -> Result<Value, BoxError> {
    let items = arg.as_list().ok_or("add needs a list")?;
    let mut sum = 0i64;
    for item in items {
        sum += match item {
            Value::Int(n) => *n,
            // Perl sends numbers it has used as strings as strings.
            Value::String(text) => text.parse::<i64>()?,
            other => return Err(format!("cannot add a {}", other.type_name()).into()),
        };
    }
    Ok(Value::Int(sum))
}

/// A server publishing what the Perl probe server published.
async fn probe_server(name: &str) -> ServerHandle {
    let kernel = Kernel::new(name);
    kernel
        .publish(
            "echo",
            ["say", "add"],
            service_fn(|req: Request| async move {
                match req.event() {
                    "add" => add(req.arg()),
                    _ => Ok(req.into_arg()),
                }
            }),
        )
        .expect("valid names");
    kernel
        .publish(
            "ghost",
            ["boo"],
            service_fn(|_: Request| async move {
                Err::<Value, _>(IkcError::new(
                    ikc_core::ErrorKind::Handler,
                    "Unknown session 'ghost'",
                ))
            }),
        )
        .expect("valid names");
    Server::builder()
        .kernel(kernel)
        .alias("Server")
        .bind("127.0.0.1:0".parse().expect("address"))
        .serve()
        .await
        .expect("server starts")
}

fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..at + "127.0.0.1:".len()]);
        rest = rest[at + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push_str("PORT");
    }
    out.push_str(rest);
    match out.find("PID=") {
        Some(at) => {
            let tail = out[at + 4..].trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{}PID=N{tail}", &out[..at])
        }
        None => out,
    }
}

fn normalize_value(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(normalize_text(&text)),
        Value::List(items) => Value::List(items.into_iter().map(normalize_value).collect()),
        Value::Map(entries) => {
            let mut entries: BTreeMap<String, Value> = entries
                .into_iter()
                .map(|(k, v)| (k, normalize_value(v)))
                .collect();
            normalize_resolve_error(&mut entries);
            Value::Map(entries)
        }
        other => other,
    }
}

/// `params => [text, kernel, 'resolve']`: keep only `.  Request ...` of the
/// text.
fn normalize_resolve_error(message: &mut BTreeMap<String, Value>) {
    let Some(Value::List(params)) = message.get_mut("params") else {
        return;
    };
    if params.len() != 3 || params[2] != Value::from("resolve") {
        return;
    }
    let Value::String(text) = &params[0] else {
        return;
    };
    if let Some(at) = text.find(".  Request ") {
        params[0] = Value::String(format!("<resolve error>{}", &text[at..]));
    }
}

fn normalize(pieces: Vec<Decoded>) -> Vec<Decoded> {
    pieces
        .into_iter()
        .map(|piece| match piece {
            Decoded::Line(line) => Decoded::Line(normalize_text(&line)),
            Decoded::Message(value) => Decoded::Message(normalize_value(value)),
        })
        .collect()
}

async fn replays_like_perl(server_name: &str, chunks: &[Chunk]) {
    let server = probe_server(server_name).await;
    let addr = server.local_addr().to_string();
    let (ours, theirs) = tokio::time::timeout(WAIT * 3, replay(&addr, chunks))
        .await
        .expect("replay in time");
    let (ours, theirs) = (normalize(ours), normalize(theirs));
    for (i, (our, their)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(our, their, "answer {i} differs");
    }
    assert_eq!(
        ours.len(),
        theirs.len(),
        "ours: {ours:#?}\ntheirs: {theirs:#?}"
    );
    server.shutdown();
    tokio::time::timeout(WAIT, server.stopped())
        .await
        .expect("server stops");
}

#[tokio::test]
async fn clientlite_calls_posts_and_post_responds_get_the_perl_servers_answers() {
    // Connection 1: call, call in list context, post_respond, post, and
    // values of every kind (hash with undef, long string, UTF-8, numbers).
    replays_like_perl(PERL_KERNEL_A, &connection("wire.jsonl", 1)).await;
}

#[tokio::test]
async fn clientlite_errors_come_back_as_perl_remote_errors() {
    // Connection 2: unpublished state, unknown session, a failing session,
    // post_respond and post to an unpublished state, another kernel's name.
    replays_like_perl(PERL_KERNEL_A, &connection("wire.jsonl", 2)).await;
}

#[tokio::test]
async fn clientlite_old_dialect_session_and_ping_replay_like_perl() {
    // Connection 4: HELLO ... WORLD / UP, call, post_respond, ping.
    replays_like_perl(PERL_KERNEL_A, &connection("wire.jsonl", 4)).await;
}

#[tokio::test]
async fn raw_negotiation_refusals_and_bad_targets_replay_like_perl() {
    // Connection 6: an unknown freezer and HELLO IKC2 refused, the old
    // dialect, an unreadable target, a target given as a hash.
    replays_like_perl(PERL_KERNEL_A, &connection("wire.jsonl", 6)).await;
}

#[tokio::test]
async fn poe_client_subscription_proxy_posts_and_errors_replay_like_perl() {
    // Connection 7: the POE IKC::Client (IKC0): IKC/do_you_have, a call,
    // posts, a post through IKC:proxy, an error for a post.
    replays_like_perl(PERL_KERNEL_A, &connection("wire.jsonl", 7)).await;
}

#[tokio::test]
async fn poe_client_old_dialect_replays_like_perl() {
    replays_like_perl(PERL_KERNEL_A, &connection("wire.jsonl", 8)).await;
}

#[tokio::test]
async fn clientlite_falling_back_to_the_old_dialect_replays_like_perl() {
    // wire-b.jsonl: that server was configured for the old dialect only and
    // refused the IKC0 SETUP; ikc accepts SETUP, so the replay starts at
    // the client's fallback HELLO, on a fresh connection.
    let chunks = connection("wire-b.jsonl", 1);
    let first_answer = chunks
        .iter()
        .position(|c| c.dir == Dir::ServerToClient)
        .expect("the server answered");
    assert_eq!(chunks[first_answer].bytes, b"NOT\r\n");
    replays_like_perl(PERL_KERNEL_B, &chunks[first_answer + 1..]).await;
}

/// The client lines of a capture up to (not including) its first frame.
fn negotiation(chunks: &[Chunk]) -> Vec<&Chunk> {
    chunks
        .iter()
        .take_while(|c| !c.bytes.first().is_some_and(u8::is_ascii_digit))
        .collect()
}

#[tokio::test]
async fn the_data_dumper_freezer_is_refused_with_not() {
    // Connections 3 and 5 used POE::Component::IKC::Freezer, which thaws
    // with `eval`; ikc speaks only Storable and answers NOT where Perl
    // agreed, so ClientLite stops there.
    let server = probe_server(PERL_KERNEL_A).await;
    let addr = server.local_addr().to_string();

    let ikc0 = connection("wire.jsonl", 3);
    let mut peer = Peer::connect(&addr).await;
    peer.send(&ikc0[0].bytes).await;
    peer.read_pieces(1).await;
    assert_eq!(decode(&peer.pieces[0]), Decoded::Line("NOT".to_owned()));

    let old = connection("wire.jsonl", 5);
    let mut peer = Peer::connect(&addr).await;
    let mut answers = 0;
    for chunk in negotiation(&old) {
        match chunk.dir {
            Dir::ClientToServer => peer.send(&chunk.bytes).await,
            Dir::ServerToClient => {
                answers += 1;
                peer.read_pieces(answers).await;
            }
        }
        if chunk.bytes.starts_with(b"FREEZER") {
            answers += 1;
            peer.read_pieces(answers).await;
            break;
        }
    }
    assert_eq!(
        peer.pieces.last().map(decode),
        Some(Decoded::Line("NOT".to_owned()))
    );
    server.shutdown();
}
