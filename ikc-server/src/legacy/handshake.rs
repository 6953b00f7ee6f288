//! The negotiation before messages, both sides: IKC0 (`SETUP`, one line
//! each way) and the old IKC dialect (`HELLO`, `IAM`, `OK`, `DONE`,
//! `FREEZER`, `WORLD`, `UP`), as WIRE.md §2 and §3 describe them.
//!
//! ```text
//! IKC0                                   old dialect
//! C> SETUP KERNEL=Probe;FREEZER=Storable;PID=1
//! S> SETUP KERNEL=Server,127.0.0.1:6030;FREEZER=Storable;PID=2
//!                                        C> HELLO
//!                                        S> IAM Server      C> OK
//!                                        S> IAM 127.0.0.1:6030   C> OK
//!                                        S> DONE
//!                                        C> IAM Probe       S> OK
//!                                        C> DONE
//!                                        C> FREEZER Storable   S> OK
//!                                        C> WORLD           S> UP
//! ```
//!
//! Only Storable is spoken: a `SETUP` offering no Storable, or a
//! `FREEZER` other than Storable, is answered `NOT`, and the peer may try
//! again (ClientLite falls back to the old dialect). Neither side bounds
//! the time here; callers wrap it in their handshake timeout.

use futures::{SinkExt, StreamExt};
use ikc_core::{PeerInfo, Specifier};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use super::LegacyError;
use super::codec::LineCodec;

/// The only serializer spoken.
pub(crate) const STORABLE: &str = "Storable";

/// Most names (`IAM` lines, `KERNEL=` values) a peer may announce.
const MAX_NAMES: usize = 64;

/// Which negotiation a peer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Dialect {
    /// IKC0: one `SETUP` line each way (the default of IKC 0.2402).
    Ikc0,
    /// The old dialect: `HELLO` ... `WORLD` / `UP`.
    Ikc,
}

/// How we announce ourselves: the kernel name first (Perl IKC sends its
/// kernel ID first, and peers address us by the first name), then aliases.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) names: Vec<String>,
    pub(crate) pid: u32,
}

/// Why a server does not admit a peer that negotiated correctly.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) reason: String,
    /// Close the connection instead of answering `NOT`.
    pub(crate) close: bool,
}

async fn send<IO>(lines: &mut Framed<IO, LineCodec>, line: &str) -> Result<(), LegacyError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    lines.send(line).await
}

async fn next<IO>(lines: &mut Framed<IO, LineCodec>) -> Result<String, LegacyError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    lines.next().await.unwrap_or(Err(LegacyError::Closed))
}

/// Whether `name` can be a kernel name here.
pub(crate) fn valid_kernel_name(name: &str) -> bool {
    name != "*" && Specifier::remote(name, "s", "e").is_ok()
}

/// The peer named by `names` (the first is its name), without the aliases
/// that cannot be kernel names.
fn peer(names: &[String], pid: u32) -> Option<PeerInfo> {
    let (kernel, aliases) = names.split_first()?;
    if !valid_kernel_name(kernel) {
        return None;
    }
    let mut kept: Vec<String> = Vec::new();
    for alias in aliases {
        if valid_kernel_name(alias) && alias != kernel && !kept.contains(alias) {
            kept.push(alias.clone());
        }
    }
    Some(PeerInfo::new(kernel.clone(), kept, pid))
}

/// What a `SETUP` line says.
struct Setup {
    names: Vec<String>,
    freezers: Vec<String>,
    pid: u32,
}

/// Parses the items after `SETUP `, as Perl IKC does: each `;` piece must
/// contain `KERNEL=`, `FREEZER=` or `PID=<digits>`.
fn parse_setup(items: &str) -> Result<Setup, String> {
    let mut setup = Setup {
        names: Vec::new(),
        freezers: Vec::new(),
        pid: 0,
    };
    for piece in items.split(';') {
        let value = |key: &str| piece.find(key).map(|at| &piece[at + key.len()..]);
        if let Some(kernel) = value("KERNEL=").filter(|v| !v.is_empty()) {
            setup.names = kernel
                .split(',')
                .filter(|n| !n.is_empty())
                .take(MAX_NAMES)
                .map(str::to_owned)
                .collect();
        } else if let Some(freezers) = value("FREEZER=").filter(|v| !v.is_empty()) {
            setup.freezers = freezers.split(',').map(str::to_owned).collect();
        } else if let Some(pid) =
            value("PID=").filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        {
            let digits: String = pid.chars().take_while(char::is_ascii_digit).collect();
            setup.pid = digits.parse().unwrap_or(0);
        } else {
            return Err(format!("unknown SETUP item {piece:?}"));
        }
    }
    if setup.names.is_empty() {
        return Err("SETUP names no KERNEL".to_owned());
    }
    Ok(setup)
}

fn setup_line(us: &Identity) -> String {
    format!(
        "SETUP KERNEL={};FREEZER={STORABLE};PID={}",
        us.names.join(","),
        us.pid
    )
}

/// `^IAM\s+([-:.\w]+)$` and `^FREEZER\s+([-:\w]+)$`: the word after
/// `keyword`, if it has only the allowed characters.
fn word<'a>(line: &'a str, keyword: &str, extra: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(keyword)?;
    let word = rest.trim_start();
    let ok = word.len() < rest.len()
        && !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || extra.contains(c));
    ok.then_some(word)
}

/// Runs the server side until the peer is admitted: `admit` decides, once
/// the peer has said who it is (after `SETUP`, or at `WORLD`).
pub(crate) async fn accept<IO, R>(
    lines: &mut Framed<IO, LineCodec>,
    us: &Identity,
    mut admit: impl FnMut(&PeerInfo) -> Result<R, Refusal>,
) -> Result<(R, PeerInfo, Dialect), LegacyError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // IKC0 until the peer says HELLO.
    loop {
        let line = next(lines).await?;
        if let Some(items) = line.strip_prefix("SETUP ") {
            let offer = parse_setup(items).and_then(|setup| {
                if !setup.freezers.is_empty() && !setup.freezers.iter().any(|f| f == STORABLE) {
                    return Err(format!(
                        "no supported freezer among {:?} (only {STORABLE})",
                        setup.freezers
                    ));
                }
                peer(&setup.names, setup.pid).ok_or_else(|| "invalid kernel name".to_owned())
            });
            let refusal = match offer {
                Ok(peer) => match admit(&peer) {
                    Ok(admitted) => {
                        send(lines, &setup_line(us)).await?;
                        return Ok((admitted, peer, Dialect::Ikc0));
                    }
                    Err(refusal) => refusal,
                },
                Err(reason) => Refusal {
                    reason,
                    close: false,
                },
            };
            tracing::info!(reason = %refusal.reason, "refusing a legacy SETUP");
            if refusal.close {
                return Err(LegacyError::Refused {
                    reason: refusal.reason,
                });
            }
            send(lines, "NOT").await?;
        } else if line == "HELLO" {
            break;
        } else if line.starts_with("HELLO IKC") {
            send(lines, "NOT").await?;
        } else {
            tracing::debug!(%line, "ignoring a line before SETUP or HELLO");
        }
    }

    // The old dialect: our names, each confirmed with OK, then DONE. Perl
    // sends its kernel ID first, then the others from the end of its list.
    let mut ours = us.names.iter().take(1).chain(us.names.iter().skip(1).rev());
    if let Some(first) = ours.next() {
        send(lines, &format!("IAM {first}")).await?;
    }
    loop {
        match next(lines).await?.as_str() {
            "OK" => match ours.next() {
                Some(name) => send(lines, &format!("IAM {name}")).await?,
                None => {
                    send(lines, "DONE").await?;
                    break;
                }
            },
            "NOT" => {}
            _ => send(lines, "NOT").await?,
        }
    }

    // The peer's names, its serializer, then WORLD.
    let mut names: Vec<String> = Vec::new();
    loop {
        let line = next(lines).await?;
        if let Some(name) = word(&line, "IAM", "-:.") {
            if names.len() < MAX_NAMES {
                names.push(name.to_owned());
                send(lines, "OK").await?;
            } else {
                send(lines, "NOT").await?;
            }
        } else if let Some(freezer) = word(&line, "FREEZER", "-:") {
            let answer = if freezer == STORABLE { "OK" } else { "NOT" };
            send(lines, answer).await?;
        } else if line == "WORLD" {
            let refusal = match peer(&names, 0) {
                Some(peer) => match admit(&peer) {
                    Ok(admitted) => {
                        send(lines, "UP").await?;
                        return Ok((admitted, peer, Dialect::Ikc));
                    }
                    Err(refusal) => refusal,
                },
                None => Refusal {
                    reason: "WORLD before a valid IAM".to_owned(),
                    close: false,
                },
            };
            tracing::info!(reason = %refusal.reason, "refusing a legacy peer");
            if refusal.close {
                return Err(LegacyError::Refused {
                    reason: refusal.reason,
                });
            }
            send(lines, "NOT").await?;
        } else if line != "DONE" && line != "NOT" {
            send(lines, "NOT").await?;
        }
    }
}

/// Runs the client side as ClientLite does: IKC0 `SETUP`, and the old
/// dialect when the server answers `NOT`. Returns the server kernel.
pub(crate) async fn connect<IO>(
    lines: &mut Framed<IO, LineCodec>,
    us: &Identity,
) -> Result<(PeerInfo, Dialect), LegacyError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let bad = |reason: String| LegacyError::Handshake { reason };
    send(lines, &setup_line(us)).await?;
    let answer = next(lines).await?;
    if let Some(items) = answer.strip_prefix("SETUP ") {
        let setup = parse_setup(items).map_err(bad)?;
        if setup.freezers != [STORABLE] {
            return Err(bad(format!(
                "server chose freezer {:?}, not {STORABLE}",
                setup.freezers
            )));
        }
        let peer = peer(&setup.names, setup.pid)
            .ok_or_else(|| bad(format!("server names itself {:?}", setup.names)))?;
        return Ok((peer, Dialect::Ikc0));
    }
    if answer != "NOT" {
        return Err(bad(format!("unexpected answer to SETUP: {answer:?}")));
    }

    send(lines, "HELLO").await?;
    let mut names: Vec<String> = Vec::new();
    loop {
        let line = next(lines).await?;
        if line == "DONE" {
            break;
        }
        let name = word(&line, "IAM", "-:.")
            .ok_or_else(|| bad(format!("invalid IAM response: {line:?}")))?;
        if names.len() < MAX_NAMES {
            names.push(name.to_owned());
        }
        send(lines, "OK").await?;
    }
    let expect = |line: String, wanted: &str, what: &str| {
        if line == wanted {
            Ok(())
        } else {
            Err(LegacyError::Refused {
                reason: format!("{what}: {line:?}"),
            })
        }
    };
    for name in &us.names {
        send(lines, &format!("IAM {name}")).await?;
        expect(next(lines).await?, "OK", "server refused our name")?;
    }
    send(lines, "DONE").await?;
    send(lines, &format!("FREEZER {STORABLE}")).await?;
    expect(next(lines).await?, "OK", "server refused Storable")?;
    send(lines, "WORLD").await?;
    expect(
        next(lines).await?,
        "UP",
        "server did not answer WORLD with UP",
    )?;
    let peer = peer(&names, 0).ok_or_else(|| bad(format!("server names itself {names:?}")))?;
    Ok((peer, Dialect::Ikc))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn server_identity() -> Identity {
        Identity {
            names: vec!["Server".to_owned(), "127.0.0.1:6030".to_owned()],
            pid: 42,
        }
    }

    async fn read_text(io: &mut DuplexStream, until: &str) -> String {
        let mut text = String::new();
        let mut buf = [0u8; 256];
        while !text.ends_with(until) {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), io.read(&mut buf))
                .await
                .expect("answer in time")
                .expect("read");
            assert!(n > 0, "closed early; got {text:?}");
            text.push_str(std::str::from_utf8(&buf[..n]).expect("ascii"));
        }
        text
    }

    #[tokio::test]
    async fn setup_is_answered_with_our_names_and_storable() {
        let (mut client, server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            let mut lines = Framed::new(server, LineCodec::new());
            accept(&mut lines, &server_identity(), |_| Ok::<_, Refusal>(())).await
        });
        client
            .write_all(
                b"SETUP KERNEL=Probe,p2;FREEZER=POE::Component::IKC::Freezer,Storable;PID=7\r\n",
            )
            .await
            .expect("write");
        let text = read_text(&mut client, "\r\n").await;
        assert_eq!(
            text,
            "SETUP KERNEL=Server,127.0.0.1:6030;FREEZER=Storable;PID=42\r\n"
        );
        let ((), peer, dialect) = task.await.expect("task").expect("admitted");
        assert_eq!(peer.kernel, "Probe");
        assert_eq!(peer.aliases, ["p2"]);
        assert_eq!(peer.pid, 7);
        assert_eq!(dialect, Dialect::Ikc0);
    }

    #[tokio::test]
    async fn setup_without_storable_is_refused_and_the_old_dialect_follows() {
        let (mut client, server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            let mut lines = Framed::new(server, LineCodec::new());
            accept(&mut lines, &server_identity(), |_| Ok::<_, Refusal>(())).await
        });
        client
            .write_all(b"SETUP KERNEL=raw;FREEZER=No::Such::Freezer;PID=1\n")
            .await
            .expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "NOT\r\n");
        client.write_all(b"HELLO IKC2\n").await.expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "NOT\r\n");
        client.write_all(b"HELLO\n").await.expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "IAM Server\r\n");
        client.write_all(b"OK\n").await.expect("write");
        assert_eq!(
            read_text(&mut client, "\r\n").await,
            "IAM 127.0.0.1:6030\r\n"
        );
        client.write_all(b"OK\n").await.expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "DONE\r\n");
        client.write_all(b"IAM raw-probe\n").await.expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "OK\r\n");
        client
            .write_all(b"DONE\nFREEZER No::Such::Freezer\n")
            .await
            .expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "NOT\r\n");
        client
            .write_all(b"FREEZER Storable\n")
            .await
            .expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "OK\r\n");
        client.write_all(b"WORLD\n").await.expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "UP\r\n");
        let ((), peer, dialect) = task.await.expect("task").expect("admitted");
        assert_eq!(peer.kernel, "raw-probe");
        assert_eq!(dialect, Dialect::Ikc);
    }

    #[tokio::test]
    async fn a_refused_peer_gets_not_and_may_try_again() {
        let (mut client, server) = tokio::io::duplex(4096);
        let task = tokio::spawn(async move {
            let mut lines = Framed::new(server, LineCodec::new());
            accept(&mut lines, &server_identity(), |peer| {
                if peer.kernel == "Taken" {
                    Err(Refusal {
                        reason: "taken".to_owned(),
                        close: false,
                    })
                } else {
                    Ok(())
                }
            })
            .await
        });
        client
            .write_all(b"SETUP KERNEL=Taken;FREEZER=Storable;PID=1\r\n")
            .await
            .expect("write");
        assert_eq!(read_text(&mut client, "\r\n").await, "NOT\r\n");
        client
            .write_all(b"SETUP KERNEL=Free;PID=1\r\n")
            .await
            .expect("write");
        assert!(
            read_text(&mut client, "\r\n")
                .await
                .starts_with("SETUP KERNEL=Server")
        );
        let ((), peer, _) = task.await.expect("task").expect("admitted");
        assert_eq!(peer.kernel, "Free");
    }

    #[tokio::test]
    async fn client_and_server_sides_agree_in_both_dialects() {
        for old in [false, true] {
            let (client, server) = tokio::io::duplex(4096);
            let server = tokio::spawn(async move {
                let mut lines = Framed::new(server, LineCodec::new());
                let mut refused_once = !old;
                accept(&mut lines, &server_identity(), move |_| {
                    // Refusing the first SETUP sends the client to the old dialect.
                    if refused_once {
                        Ok(())
                    } else {
                        refused_once = true;
                        Err(Refusal {
                            reason: "try the old dialect".to_owned(),
                            close: false,
                        })
                    }
                })
                .await
            });
            let mut lines = Framed::new(client, LineCodec::new());
            let us = Identity {
                names: vec!["Client".to_owned(), "c2".to_owned()],
                pid: 9,
            };
            let (peer, dialect) = connect(&mut lines, &us).await.expect("negotiated");
            assert_eq!(dialect, if old { Dialect::Ikc } else { Dialect::Ikc0 });
            assert_eq!(peer.kernel, "Server");
            assert_eq!(peer.aliases, ["127.0.0.1:6030"]);
            let ((), client, _) = server.await.expect("task").expect("admitted");
            assert_eq!(client.kernel, "Client");
            assert_eq!(client.aliases, ["c2"]);
        }
    }
}
