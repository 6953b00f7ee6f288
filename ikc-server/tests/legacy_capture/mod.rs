//! Reading the Perl IKC captures in `tests/fixtures/perl-ikc/`, and talking
//! to a server the way the captured clients did.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use ikc_core::Value;
use ikc_server::legacy::storable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Which way a chunk went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ClientToServer,
    ServerToClient,
}

/// One chunk as the relay read it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub conn: u64,
    pub dir: Dir,
    pub bytes: Vec<u8>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/perl-ikc")
        .join(name)
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// Every chunk of a capture file, in order.
pub fn load(name: &str) -> Vec<Chunk> {
    let text = std::fs::read_to_string(fixture(name)).expect("capture file");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("json line");
            let dir = match record["dir"].as_str()? {
                "c2s" => Dir::ClientToServer,
                "s2c" => Dir::ServerToClient,
                _ => return None,
            };
            Some(Chunk {
                conn: record["conn"].as_u64().expect("conn"),
                dir,
                bytes: hex(record["hex"].as_str().expect("hex")),
            })
        })
        .collect()
}

/// The chunks of connection `conn`.
pub fn connection(name: &str, conn: u64) -> Vec<Chunk> {
    load(name).into_iter().filter(|c| c.conn == conn).collect()
}

/// A negotiation line or a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Line(String),
    Frame(Vec<u8>),
}

/// Splits a byte stream into complete lines and frames, as ikcwire.py
/// does: a piece starting with a digit is a frame. Returns the pieces and
/// how many bytes they took.
pub fn split(stream: &[u8]) -> (Vec<Piece>, usize) {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        if stream[at].is_ascii_digit() {
            let Some(nul) = stream[at..].iter().position(|&b| b == 0) else {
                break;
            };
            let len: usize = std::str::from_utf8(&stream[at..at + nul])
                .expect("ascii")
                .parse()
                .expect("length");
            let start = at + nul + 1;
            if start + len > stream.len() {
                break;
            }
            pieces.push(Piece::Frame(stream[start..start + len].to_vec()));
            at = start + len;
        } else {
            let Some(end) = stream[at..].iter().position(|&b| b == b'\n') else {
                break;
            };
            let line = String::from_utf8_lossy(&stream[at..at + end]);
            pieces.push(Piece::Line(line.trim_end_matches('\r').to_owned()));
            at += end + 1;
        }
    }
    (pieces, at)
}

/// A piece as compared: a line's text, or a frame's decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Line(String),
    Message(Value),
}

pub fn decode(piece: &Piece) -> Decoded {
    match piece {
        Piece::Line(line) => Decoded::Line(line.clone()),
        Piece::Frame(bytes) => {
            Decoded::Message(storable::from_slice(bytes).expect("a Storable message"))
        }
    }
}

/// A client connection that reads pieces from the server.
pub struct Peer {
    pub stream: TcpStream,
    received: Vec<u8>,
    pub pieces: Vec<Piece>,
}

impl Peer {
    pub async fn connect(addr: &str) -> Peer {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Peer {
            stream,
            received: Vec::new(),
            pieces: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads until `count` pieces have arrived in all.
    pub async fn read_pieces(&mut self, count: usize) {
        let mut buf = [0u8; 8192];
        while self.pieces.len() < count {
            let (pieces, used) = split(&self.received);
            if pieces.len() >= count {
                self.pieces = pieces;
                return;
            }
            let _ = used;
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "waited for piece {count}; have {:?}",
                        split(&self.received)
                            .0
                            .iter()
                            .map(decode)
                            .collect::<Vec<_>>()
                    )
                })
                .expect("read");
            assert!(
                n > 0,
                "server closed before piece {count}; have {:?}",
                split(&self.received)
                    .0
                    .iter()
                    .map(decode)
                    .collect::<Vec<_>>()
            );
            self.received.extend_from_slice(&buf[..n]);
        }
    }

    /// Closes our side and reads everything until the server closes.
    pub async fn finish(&mut self) {
        self.stream.shutdown().await.expect("shutdown");
        let mut buf = [0u8; 8192];
        loop {
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("server closes after the client")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
        }
        let (pieces, used) = split(&self.received);
        assert_eq!(used, self.received.len(), "a partial piece at the end");
        self.pieces = pieces;
    }
}

/// Replays the client side of `chunks` against `addr`: after each of the
/// server's chunks in the capture, waits until our server has sent as many
/// pieces. Returns (ours, theirs), every piece decoded.
pub async fn replay(addr: &str, chunks: &[Chunk]) -> (Vec<Decoded>, Vec<Decoded>) {
    let mut peer = Peer::connect(addr).await;
    let mut theirs = Vec::new();
    for chunk in chunks {
        match chunk.dir {
            Dir::ClientToServer => peer.send(&chunk.bytes).await,
            Dir::ServerToClient => {
                theirs.extend_from_slice(&chunk.bytes);
                let expected = split(&theirs).0.len();
                peer.read_pieces(expected).await;
            }
        }
    }
    peer.finish().await;
    let (theirs, used) = split(&theirs);
    assert!(used > 0 || theirs.is_empty());
    (
        peer.pieces.iter().map(decode).collect(),
        theirs.iter().map(decode).collect(),
    )
}
