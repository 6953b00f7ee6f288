//! [`Request`]: what a session's service receives.

use ikc_proto::{Value, ValueError, value};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use std::sync::Arc;

use crate::{PeerInfo, Specifier};

/// One event delivered to a session: the target, the argument, and who sent
/// it.
///
/// A session is a tower `Service<Request, Response = Value>`; the event name
/// tells it what to do.
///
/// ```
/// use ikc_core::{Request, Value};
///
/// let req = Request::call("calc/add".parse()?, Value::from(vec![1, 2]));
/// assert_eq!((req.session(), req.event()), ("calc", "add"));
/// let [a, b]: [i64; 2] = req.arg_as()?;
/// assert_eq!(a + b, 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    target: Specifier,
    arg: Value,
    // The fields most requests lack, behind one thin box (one pointer, not
    // two `String`s' six words): with the specifier's small fields it
    // keeps a request within 128 bytes (see `Specifier`). Native peers
    // seldom send `from` (Perl peers do); a trace context comes only from
    // a traced caller.
    extras: Option<Box<Extras>>,
    caller: Option<Arc<PeerInfo>>,
    deadline: Option<Instant>,
    post: bool,
}

/// What a request seldom carries.
#[derive(Debug, Clone, Default)]
struct Extras {
    from: Option<String>,
    traceparent: Option<String>,
}

// Kept within 128 bytes: the compiler moves it with plain stores rather
// than a `memcpy` call each time it passes from layer to layer.
const _: () = assert!(std::mem::size_of::<Request>() <= 128);

impl Request {
    /// A call to `target`: the caller waits for the answer.
    #[must_use]
    pub fn call(target: Specifier, arg: Value) -> Self {
        Request {
            target,
            arg,
            extras: None,
            caller: None,
            deadline: None,
            post: false,
        }
    }

    /// A post to `target`: nobody waits for an answer.
    #[must_use]
    pub fn post(target: Specifier, arg: Value) -> Self {
        Request {
            post: true,
            ..Request::call(target, arg)
        }
    }

    /// Sets who sent the request (`kernel/session`, informational).
    #[must_use]
    pub fn with_from(mut self, from: impl Into<String>) -> Self {
        self.extras_mut().from = Some(from.into());
        self
    }

    /// Sets the caller's trace context, in W3C Trace Context `traceparent`
    /// form (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`). The
    /// channel sets it on a request whose peer sent one, and sends it with
    /// a request it forwards; with ikc-core's `otel` feature, the channel
    /// sends the current span's context in its place when there is one
    /// (ikc-core's `propagation` module). Nothing checks it here: a
    /// receiver that cannot parse it ignores it.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.extras_mut().traceparent = Some(traceparent.into());
        self
    }

    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// Sets the connected kernel the request came from. The channel sets it
    /// on every request a peer sends; set it yourself only to test a
    /// service.
    #[must_use]
    pub fn with_caller(mut self, caller: Arc<PeerInfo>) -> Self {
        self.caller = Some(caller);
        self
    }

    /// [`with_caller`](Self::with_caller) in place: the channel's way, with
    /// no move of the whole request.
    pub(crate) fn set_caller(&mut self, caller: Arc<PeerInfo>) {
        self.caller = Some(caller);
    }

    /// [`with_deadline`](Self::with_deadline) in place.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = Some(deadline);
    }

    /// Sets the instant after which nobody waits for the answer.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The full target specifier.
    #[must_use]
    pub fn target(&self) -> &Specifier {
        &self.target
    }

    /// The session name.
    #[must_use]
    pub fn session(&self) -> &str {
        self.target.session()
    }

    /// The event name (empty if the specifier had none).
    #[must_use]
    pub fn event(&self) -> &str {
        self.target.event().unwrap_or_default()
    }

    /// The argument.
    #[must_use]
    pub fn arg(&self) -> &Value {
        &self.arg
    }

    /// Takes the argument out, leaving null.
    pub fn take_arg(&mut self) -> Value {
        std::mem::take(&mut self.arg)
    }

    /// Consumes the request, returning the argument.
    #[must_use]
    pub fn into_arg(self) -> Value {
        self.arg
    }

    /// The argument converted to `T` through serde. A handler that returns
    /// this error with `?` answers the caller with `BadRequest`.
    ///
    /// # Errors
    ///
    /// When the argument does not have `T`'s shape.
    pub fn arg_as<T: DeserializeOwned>(&self) -> Result<T, ValueError> {
        value::from_value(self.arg.clone())
    }

    /// Who sent the request, if the sender said (`kernel/session`, as the
    /// sender claims it; see [`caller`](Self::caller) for who it is).
    #[must_use]
    pub fn from(&self) -> Option<&str> {
        self.extras.as_deref()?.from.as_deref()
    }

    /// The caller's trace context (W3C `traceparent`), if it sent one; see
    /// [`with_traceparent`](Self::with_traceparent).
    #[must_use]
    pub fn traceparent(&self) -> Option<&str> {
        self.extras.as_deref()?.traceparent.as_deref()
    }

    /// The connected kernel the request came from, as its handshake named
    /// it: filled in by the channel, not by the peer. `None` for a request
    /// made in this kernel. A request relayed by a hub comes from the hub.
    ///
    /// A session calls its caller back by this name:
    ///
    /// ```
    /// use ikc_core::{Kernel, Request, Value, service_fn};
    ///
    /// let kernel = Kernel::new("Server");
    /// let server = kernel.clone();
    /// kernel.publish("jobs", ["start"], service_fn(move |req: Request| {
    ///     let server = server.clone();
    ///     async move {
    ///         let caller = req.caller().ok_or("only remote kernels start jobs")?;
    ///         let target = format!("poe://{}/jobs/done", caller.kernel).parse()?;
    ///         server.post(&target, req.into_arg()).await?;
    ///         Ok::<_, ikc_core::BoxError>(Value::Null)
    ///     }
    /// }))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn caller(&self) -> Option<&PeerInfo> {
        self.caller.as_deref()
    }

    /// The instant after which nobody waits for the answer, if any.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether this is a post (no answer expected).
    #[must_use]
    pub fn is_post(&self) -> bool {
        self.post
    }

    pub(crate) fn retarget(&mut self, target: Specifier) {
        self.target = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_request_carries_its_sender_and_trace_context_side_by_side() {
        let req = Request::call("calc/add".parse().expect("a specifier"), Value::Null);
        assert_eq!((req.from(), req.traceparent()), (None, None));
        let req = req.with_traceparent(TRACEPARENT);
        assert_eq!((req.from(), req.traceparent()), (None, Some(TRACEPARENT)));
        let req = req.with_from("Client/caller");
        assert_eq!(
            (req.from(), req.traceparent()),
            (Some("Client/caller"), Some(TRACEPARENT))
        );
    }
}
