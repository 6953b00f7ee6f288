//! [`AccessLayer`]: the tower layer that answers `Forbidden` to the
//! requests a [`Policy`] refuses, logging the first refusal of each peer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::TryFutureExt;
use futures::future::{Either, ErrInto, Ready};
use ikc_core::{ErrorKind, IkcError, Request};
use tower::{Layer, Service};

use super::Policy;
use crate::BoxError;

/// How many peers' first refusals are remembered before the memory starts
/// over (and each peer's next refusal is logged again).
const LOGGED_PEERS: usize = 4096;

/// Applies a [`Policy`] to every request; see [the module docs](super).
#[derive(Debug, Clone)]
pub struct AccessLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    policy: Policy,
    /// Peers whose refusal was logged at `info`; later ones go to `debug`.
    logged: Mutex<HashSet<String>>,
}

impl AccessLayer {
    /// A layer that lets through what `policy` allows.
    #[must_use]
    pub fn new(policy: Policy) -> Self {
        AccessLayer {
            shared: Arc::new(Shared {
                policy,
                logged: Mutex::default(),
            }),
        }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Access<S> {
        Access {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`AccessLayer`] makes.
#[derive(Debug, Clone)]
pub struct Access<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for Access<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Either<ErrInto<S::Future, BoxError>, Ready<Result<S::Response, BoxError>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if self.shared.policy.allows(&req) {
            return Either::Left(self.inner.call(req).err_into());
        }
        Either::Right(futures::future::ready(Err(self.shared.refuse(&req).into())))
    }
}

impl Shared {
    fn refuse(&self, req: &Request) -> IkcError {
        let verb = if req.is_post() { "post to" } else { "call" };
        let (kernel, identity) = req
            .caller()
            .map(|c| (c.kernel.as_str(), c.identity.to_string()))
            .unwrap_or_default();
        let target = format!("{}/{}", req.session(), req.event());
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
            if logged.len() >= LOGGED_PEERS {
                logged.clear();
            }
            logged.insert(kernel.to_owned())
        };
        if first {
            tracing::info!(peer.kernel = kernel, peer.identity = %identity, %target, "access policy refused a request (further refusals of this peer at debug)");
        } else {
            tracing::debug!(peer.kernel = kernel, peer.identity = %identity, %target, "access policy refused a request");
        }
        IkcError::new(
            ErrorKind::Forbidden,
            format!("kernel {kernel:?} ({identity}) may not {verb} {target}"),
        )
    }
}
