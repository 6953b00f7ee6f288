//! Where a balanced client finds its servers: any [`Discovery`], a stream
//! of [`Change`]s to the set keyed by address (tower's `Discover` of
//! addresses). ikc ships a fixed list ([`static_list`]); plug your own
//! (etcd, the Consul API) by implementing the stream.

use futures::Stream;
use futures::stream::{self, BoxStream};
pub use tower::discover::Change;

use crate::BoxError;
use crate::error::{Error, TransportErrorKind};

/// A source of servers for [`Client::balanced`](crate::Client::balanced):
/// a stream of changes to the set, each server keyed and reached by its
/// address (`host:port` or `unix:/path`). Any such stream is one.
pub trait Discovery:
    Stream<Item = Result<Change<String, String>, BoxError>> + Send + 'static
{
}

impl<T> Discovery for T where
    T: Stream<Item = Result<Change<String, String>, BoxError>> + Send + 'static
{
}

/// A fixed set of servers, from addresses as users write them
/// (`host:port`, `[v6]:port`, `unix:/path`), once each.
///
/// # Errors
///
/// [`TransportErrorKind::Config`] naming the first entry that is not an
/// address, or when there is none.
pub fn static_list<I, S>(
    addrs: I,
) -> Result<BoxStream<'static, Result<Change<String, String>, BoxError>>, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut list: Vec<String> = Vec::new();
    for addr in addrs {
        let addr = addr.as_ref().trim();
        check(addr)?;
        if !list.iter().any(|known| known == addr) {
            list.push(addr.to_owned());
        }
    }
    if list.is_empty() {
        return Err(Error::new(
            TransportErrorKind::Config,
            "no server address given",
        ));
    }
    let changes = list
        .into_iter()
        .map(|addr| Ok(Change::Insert(addr.clone(), addr)));
    Ok(Box::pin(stream::iter(changes)))
}

/// Whether `addr` is an address a client can dial.
fn check(addr: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::new(
            TransportErrorKind::Config,
            format!("bad server address {addr:?}: {why}"),
        )
    };
    if let Some(path) = addr.strip_prefix("unix:") {
        return if path.is_empty() {
            Err(bad("no socket path"))
        } else {
            Ok(())
        };
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad("expected host:port or unix:/path"));
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    port.parse::<u16>()
        .map(drop)
        .map_err(|_| bad("the port is not a number from 0 to 65535"))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_list_names_its_bad_entry() {
        let error = static_list(["127.0.0.1:1", "nowhere", "127.0.0.1:2"])
            .err()
            .unwrap();
        assert_eq!(error.kind(), TransportErrorKind::Config);
        assert!(error.to_string().contains("\"nowhere\""), "{error}");
        let error = static_list(["127.0.0.1:99999"]).err().unwrap();
        assert!(error.to_string().contains("99999"), "{error}");
        assert!(static_list(Vec::<String>::new()).is_err());
    }

    #[tokio::test]
    async fn a_list_inserts_each_address_once() {
        let changes: Vec<_> = static_list(["127.0.0.1:1", "unix:/tmp/s", "127.0.0.1:1"])
            .unwrap()
            .collect()
            .await;
        let keys: Vec<String> = changes
            .into_iter()
            .map(|change| match change.unwrap() {
                Change::Insert(key, _) => key,
                Change::Remove(key) => panic!("removed {key}"),
            })
            .collect();
        assert_eq!(keys, ["127.0.0.1:1", "unix:/tmp/s"]);
    }
}
