//! [`Client`] as a tower [`Service`], so tower middleware (retry, timeout,
//! balancing) composes on the caller's side.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use ikc_core::{IkcError, KernelTarget, Request, Value};
use tower::Service;

use super::Client;

/// Sends each request as [`Client::call`] and [`Client::post`] do: to the
/// server (which takes `session/event` as its own session and routes
/// `poe://kernel/...` to the kernel named), or to the client's own kernel
/// when the target names it. A post answers `Value::Null` once sent.
/// Ready unless the connection has ended for good (a client that
/// reconnects is ready again once it has).
impl Service<Request> for Client {
    type Response = Value;
    type Error = IkcError;
    type Future = BoxFuture<'static, Result<Value, IkcError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), IkcError>> {
        let mut handle = self.handle();
        Service::<Request>::poll_ready(&mut handle, cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let local = match req.target().kernel() {
            KernelTarget::Named(kernel) => self.kernel().is_named(kernel),
            KernelTarget::Local | KernelTarget::Any => false,
        };
        if local {
            let kernel = self.kernel().clone();
            return Box::pin(async move {
                let target = req.target().clone();
                if req.is_post() {
                    kernel
                        .post(&target, req.into_arg())
                        .await
                        .map(|()| Value::Null)
                } else {
                    kernel.call(&target, req.into_arg()).await
                }
            });
        }
        let mut handle = self.handle();
        Service::call(&mut handle, req)
    }
}
