//! [`IkcError`]: the typed answer to a call that did not succeed.

use std::fmt;
use std::time::Duration;

use ikc_proto::{ValueError, pb};

/// A boxed error, as tower middleware returns them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a call failed, as it travels on the wire (`ikc.v1.ErrorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The target kernel is not this one and not connected.
    NoKernel,
    /// The target session is not published.
    NoSession,
    /// The event is not among the session's published events.
    NoEvent,
    /// The session's service failed.
    Handler,
    /// The call's deadline passed before the answer arrived.
    Timeout,
    /// The peer runs as many requests as it allows; retry later.
    Overloaded,
    /// The peer is shutting down and takes no new requests.
    ShuttingDown,
    /// The request was malformed: a bad specifier or a bad argument.
    BadRequest,
    /// The connection ended before the answer arrived.
    Disconnected,
    /// The peer broke the protocol (oversized or undecodable frame).
    Protocol,
    /// An error kind this build does not know (from a newer peer).
    Unknown,
    /// The server's access policy does not let this caller call or post
    /// to the target (wire kind 11, appended after `Protocol`).
    Forbidden,
}

impl ErrorKind {
    /// The kind's name, as the CLI prints it (`NoSession`, `Timeout`...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoKernel => "NoKernel",
            ErrorKind::NoSession => "NoSession",
            ErrorKind::NoEvent => "NoEvent",
            ErrorKind::Handler => "Handler",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Overloaded => "Overloaded",
            ErrorKind::ShuttingDown => "ShuttingDown",
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::Disconnected => "Disconnected",
            ErrorKind::Protocol => "Protocol",
            ErrorKind::Unknown => "Unknown",
            ErrorKind::Forbidden => "Forbidden",
        }
    }
}

impl ErrorKind {
    /// The kind `error` answers the caller with, as
    /// [`IkcError::from_box`] would make it, without taking it (for
    /// middleware that counts errors and passes them on).
    #[must_use]
    pub fn of(error: &BoxError) -> ErrorKind {
        if let Some(error) = error.downcast_ref::<IkcError>() {
            error.kind()
        } else if error.is::<ValueError>() {
            ErrorKind::BadRequest
        } else if error.is::<tower::timeout::error::Elapsed>() {
            ErrorKind::Timeout
        } else if error.is::<tower::load_shed::error::Overloaded>() {
            ErrorKind::Overloaded
        } else {
            ErrorKind::Handler
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<pb::ErrorKind> for ErrorKind {
    fn from(kind: pb::ErrorKind) -> Self {
        match kind {
            pb::ErrorKind::NoKernel => ErrorKind::NoKernel,
            pb::ErrorKind::NoSession => ErrorKind::NoSession,
            pb::ErrorKind::NoEvent => ErrorKind::NoEvent,
            pb::ErrorKind::Handler => ErrorKind::Handler,
            pb::ErrorKind::Timeout => ErrorKind::Timeout,
            pb::ErrorKind::Overloaded => ErrorKind::Overloaded,
            pb::ErrorKind::ShuttingDown => ErrorKind::ShuttingDown,
            pb::ErrorKind::BadRequest => ErrorKind::BadRequest,
            pb::ErrorKind::Disconnected => ErrorKind::Disconnected,
            pb::ErrorKind::Protocol => ErrorKind::Protocol,
            pb::ErrorKind::Forbidden => ErrorKind::Forbidden,
            pb::ErrorKind::Unspecified => ErrorKind::Unknown,
        }
    }
}

impl From<ErrorKind> for pb::ErrorKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NoKernel => pb::ErrorKind::NoKernel,
            ErrorKind::NoSession => pb::ErrorKind::NoSession,
            ErrorKind::NoEvent => pb::ErrorKind::NoEvent,
            ErrorKind::Handler => pb::ErrorKind::Handler,
            ErrorKind::Timeout => pb::ErrorKind::Timeout,
            ErrorKind::Overloaded => pb::ErrorKind::Overloaded,
            ErrorKind::ShuttingDown => pb::ErrorKind::ShuttingDown,
            ErrorKind::BadRequest => pb::ErrorKind::BadRequest,
            ErrorKind::Disconnected => pb::ErrorKind::Disconnected,
            ErrorKind::Protocol => pb::ErrorKind::Protocol,
            ErrorKind::Forbidden => pb::ErrorKind::Forbidden,
            ErrorKind::Unknown => pb::ErrorKind::Unspecified,
        }
    }
}

/// The typed error every failed call ends with, on both ends of a
/// connection: a kind, a message, and hints (in the manner of tonic's
/// `Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkcError {
    kind: ErrorKind,
    message: String,
    may_have_run: bool,
    retry_after: Option<Duration>,
}

impl IkcError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        IkcError {
            kind,
            message: message.into(),
            may_have_run: false,
            retry_after: None,
        }
    }

    /// The error's kind.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The error's message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For [`ErrorKind::Disconnected`] and [`ErrorKind::Timeout`]: whether
    /// the request may have run on the peer before the answer was lost.
    #[must_use]
    pub const fn may_have_run(&self) -> bool {
        self.may_have_run
    }

    /// For [`ErrorKind::Overloaded`]: how long the peer suggests waiting
    /// before a retry.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Sets [`may_have_run`](Self::may_have_run).
    #[must_use]
    pub fn with_may_have_run(mut self, may_have_run: bool) -> Self {
        self.may_have_run = may_have_run;
        self
    }

    /// Sets [`retry_after`](Self::retry_after).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    pub(crate) fn no_kernel(kernel: &str) -> Self {
        Self::new(
            ErrorKind::NoKernel,
            format!("no kernel named {kernel:?} is connected"),
        )
    }

    pub(crate) fn no_session(session: &str) -> Self {
        Self::new(
            ErrorKind::NoSession,
            format!("no session named {session:?} is published"),
        )
    }

    pub(crate) fn no_event(session: &str, event: &str) -> Self {
        Self::new(
            ErrorKind::NoEvent,
            format!("session {session:?} does not publish event {event:?}"),
        )
    }

    pub(crate) fn disconnected(may_have_run: bool) -> Self {
        Self::new(
            ErrorKind::Disconnected,
            "connection closed before the answer arrived",
        )
        .with_may_have_run(may_have_run)
    }

    /// Turns any error a service or middleware returned into the reply the
    /// caller gets: the one place where boxed errors become typed ones.
    ///
    /// An `IkcError` stays as it is; tower's `Elapsed` becomes
    /// [`ErrorKind::Timeout`], tower's `Overloaded` becomes
    /// [`ErrorKind::Overloaded`], a [`ValueError`] (a handler could not use
    /// its argument) becomes [`ErrorKind::BadRequest`], and anything else is
    /// [`ErrorKind::Handler`] with the whole source chain as message.
    #[must_use]
    pub fn from_box(error: BoxError) -> Self {
        let error = match error.downcast::<IkcError>() {
            Ok(ikc) => return *ikc,
            Err(other) => other,
        };
        let error = match error.downcast::<ValueError>() {
            Ok(value) => return Self::new(ErrorKind::BadRequest, format!("bad argument: {value}")),
            Err(other) => other,
        };
        if error.is::<tower::timeout::error::Elapsed>() {
            return Self::new(ErrorKind::Timeout, "request timed out").with_may_have_run(true);
        }
        if error.is::<tower::load_shed::error::Overloaded>() {
            return Self::new(ErrorKind::Overloaded, "service overloaded");
        }
        Self::new(ErrorKind::Handler, error_chain(&*error))
    }

    /// The wire form of this error, answering call `id`.
    #[must_use]
    pub fn to_proto(&self, id: u64) -> pb::Error {
        pb::Error {
            id,
            kind: pb::ErrorKind::from(self.kind).into(),
            message: self.message.clone(),
            may_have_run: self.may_have_run,
            retry_after_ms: self
                .retry_after
                .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        }
    }

    /// Reads an error from the wire.
    #[must_use]
    pub fn from_proto(error: pb::Error) -> Self {
        let kind = pb::ErrorKind::try_from(error.kind).map_or(ErrorKind::Unknown, ErrorKind::from);
        IkcError {
            kind,
            message: error.message,
            may_have_run: error.may_have_run,
            retry_after: (error.retry_after_ms > 0)
                .then(|| Duration::from_millis(u64::from(error.retry_after_ms))),
        }
    }
}

impl From<ValueError> for IkcError {
    fn from(error: ValueError) -> Self {
        Self::new(ErrorKind::BadRequest, format!("bad argument: {error}"))
    }
}

impl fmt::Display for IkcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for IkcError {}

/// An error and all its sources, joined by `: `, for log lines and error
/// messages (`Display` of a well-behaved error shows only its own level).
#[must_use]
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
