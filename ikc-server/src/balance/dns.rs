//! [`Dns`]: the servers of a balanced client found by DNS, what Kubernetes
//! headless services and Consul's DNS interface give: every A/AAAA address
//! of a host name at one port, or every target of an SRV name at its own
//! port. The name is resolved again when its records expire (their TTL) or
//! after [`Dns::interval`], whichever comes first, and the set follows:
//! new addresses join, vanished ones leave (their connections drain).
//!
//! A failed resolution (a timeout, an unreachable resolver) keeps the set
//! as it is and is tried again after the interval; a name with no records
//! empties it. Resolution is hickory-resolver's: the system's configuration
//! ([`Dns::system_resolver`]) or any resolver you build.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::stream::{self, BoxStream, StreamExt};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::time::Instant;

use super::discover::Change;
use crate::BoxError;
use crate::error::{Error, TransportErrorKind};

/// Default for [`Dns::interval`]: 30 seconds.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(30);

/// The shortest wait between two resolutions, whatever the TTL says.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// What is looked up.
#[derive(Debug, Clone)]
enum Name {
    /// A/AAAA records, every address at `port`.
    Host { host: String, port: u16 },
    /// SRV records: each target's addresses at the record's port.
    Srv(String),
}

/// Servers found by DNS; see the [module docs](self). A
/// [`Discovery`](super::discover::Discovery) for
/// [`Client::balanced`](crate::Client::balanced).
pub struct Dns {
    resolver: Option<TokioResolver>,
    name: Name,
    interval: Duration,
    changes: Option<BoxStream<'static, Result<Change<String, String>, BoxError>>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// Every A/AAAA address of `host`, at `port`.
    #[must_use]
    pub fn host(resolver: TokioResolver, host: impl Into<String>, port: u16) -> Self {
        Dns::new(
            resolver,
            Name::Host {
                host: host.into(),
                port,
            },
        )
    }

    /// Every target of `name`'s SRV records (`_ikc._tcp.example.com`), at
    /// the port its record gives.
    #[must_use]
    pub fn srv(resolver: TokioResolver, name: impl Into<String>) -> Self {
        Dns::new(resolver, Name::Srv(name.into()))
    }

    fn new(resolver: TokioResolver, name: Name) -> Self {
        Dns {
            resolver: Some(resolver),
            name,
            interval: DEFAULT_DNS_INTERVAL,
            changes: None,
        }
    }

    /// The longest wait between two resolutions; records that expire
    /// sooner are looked up when they do. Default:
    /// [`DEFAULT_DNS_INTERVAL`] (30 s).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(MIN_INTERVAL);
        self
    }

    /// The resolver the system is configured with (`/etc/resolv.conf`).
    ///
    /// # Errors
    ///
    /// [`TransportErrorKind::Config`] when the system's configuration
    /// cannot be read.
    pub fn system_resolver() -> Result<TokioResolver, Error> {
        TokioResolver::builder_tokio()
            .and_then(hickory_resolver::ResolverBuilder::build)
            .map_err(|e| {
                Error::new(
                    TransportErrorKind::Config,
                    "cannot read the system's DNS configuration",
                )
                .with_source(e)
            })
    }
}

/// The set the name resolves to now, and until when it holds.
async fn resolve(
    resolver: &TokioResolver,
    name: &Name,
) -> Result<(BTreeSet<String>, Instant), BoxError> {
    let now = std::time::Instant::now();
    let until = |valid: std::time::Instant| Instant::now() + valid.saturating_duration_since(now);
    match name {
        Name::Host { host, port } => match resolver.lookup_ip(host.as_str()).await {
            Ok(lookup) => {
                let set = lookup.iter().map(|ip| address(ip, *port)).collect();
                Ok((set, until(lookup.valid_until())))
            }
            Err(error) if error.is_no_records_found() => Ok((BTreeSet::new(), Instant::now())),
            Err(error) => Err(error.into()),
        },
        Name::Srv(name) => {
            let lookup = match resolver.lookup(name.as_str(), RecordType::SRV).await {
                Ok(lookup) => lookup,
                Err(error) if error.is_no_records_found() => {
                    return Ok((BTreeSet::new(), Instant::now()));
                }
                Err(error) => return Err(error.into()),
            };
            let mut valid = lookup.valid_until();
            let mut set = BTreeSet::new();
            for record in lookup.answers() {
                let RData::SRV(srv) = &record.data else {
                    continue;
                };
                match resolver.lookup_ip(srv.target.clone()).await {
                    Ok(ips) => {
                        valid = valid.min(ips.valid_until());
                        set.extend(ips.iter().map(|ip| address(ip, srv.port)));
                    }
                    Err(error) if error.is_no_records_found() => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Ok((set, until(valid)))
        }
    }
}

fn address(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Resolving, diffing and waiting, round after round.
struct Rounds {
    resolver: TokioResolver,
    name: Name,
    interval: Duration,
    current: BTreeSet<String>,
    /// When to resolve again; `None` on the first round.
    next: Option<Instant>,
}

impl Rounds {
    /// The changes of the next round that changes anything.
    async fn next_changes(mut self) -> (Vec<Change<String, String>>, Self) {
        loop {
            if let Some(at) = self.next {
                tokio::time::sleep_until(at).await;
            }
            let (set, valid_until) = match resolve(&self.resolver, &self.name).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(name = ?self.name, %error, "DNS resolution failed; keeping the servers known");
                    self.next = Some(Instant::now() + self.interval);
                    continue;
                }
            };
            let at = valid_until.min(Instant::now() + self.interval);
            self.next = Some(at.max(Instant::now() + MIN_INTERVAL));
            let mut changes: Vec<Change<String, String>> = self
                .current
                .difference(&set)
                .map(|gone| Change::Remove(gone.clone()))
                .collect();
            changes.extend(
                set.difference(&self.current)
                    .map(|new| Change::Insert(new.clone(), new.clone())),
            );
            self.current = set;
            if !changes.is_empty() {
                return (changes, self);
            }
        }
    }
}

impl Stream for Dns {
    type Item = Result<Change<String, String>, BoxError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.changes.is_none() {
            let Some(resolver) = self.resolver.take() else {
                return Poll::Ready(None);
            };
            let rounds = Rounds {
                resolver,
                name: self.name.clone(),
                interval: self.interval,
                current: BTreeSet::new(),
                next: None,
            };
            let changes = stream::unfold(rounds, |rounds| async move {
                let (changes, rounds) = rounds.next_changes().await;
                Some((stream::iter(changes.into_iter().map(Ok)), rounds))
            })
            .flatten();
            self.changes = Some(Box::pin(changes));
        }
        self.changes
            .as_mut()
            .map_or(Poll::Ready(None), |changes| changes.poll_next_unpin(cx))
    }
}
