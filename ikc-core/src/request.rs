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
    // A thin box (one pointer, not a `String`'s three words): with the
    // specifier's small fields it keeps a request within 128 bytes (see
    // `Specifier`). Native peers seldom send `from`; Perl peers do.
    #[allow(clippy::box_collection)]
    from: Option<Box<String>>,
    caller: Option<Arc<PeerInfo>>,
    deadline: Option<Instant>,
    post: bool,
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
            from: None,
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
        self.from = Some(Box::new(from.into()));
        self
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
        self.from.as_deref().map(String::as_str)
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
