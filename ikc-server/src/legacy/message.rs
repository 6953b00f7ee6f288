//! The legacy message hashes: addresses, requests, replies and
//! `IKC/remote_error` messages, as Perl IKC 0.2402 writes them.

use std::collections::BTreeMap;

use ikc_core::ErrorKind;
use ikc_proto::Value;

/// The session Perl IKC's own states live in.
pub(crate) const IKC_SESSION: &str = "IKC";

/// The session ClientLite names as the sender of its requests and as the
/// target of its replies; ours does the same.
pub(crate) const LITE_SESSION: &str = "IKCLite";

/// The state a reply names as its sender, as Perl IKC does.
pub(crate) const PROXY_STATE: &str = "IKC:proxy";

/// Prefix of the reply states of our calls (`response<id>`, as ClientLite).
pub(crate) const RESPONSE_PREFIX: &str = "response";

/// A Perl IKC address: `poe://kernel/session/state` or
/// `{kernel, session, state}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    /// The kernel part as written (empty when there was none).
    pub(crate) kernel: String,
    pub(crate) session: String,
    /// Empty for a session address.
    pub(crate) state: String,
}

impl Address {
    /// Reads an address from its string or hash form; `None` when it is
    /// neither, or names no session.
    pub(crate) fn parse(value: &Value) -> Option<Address> {
        let address = match value {
            Value::String(text) => Self::parse_str(text)?,
            Value::Map(map) => {
                let part = |key: &str| match map.get(key) {
                    None | Some(Value::Null) => Some(String::new()),
                    Some(Value::String(text)) => Some(text.clone()),
                    Some(_) => None,
                };
                Address {
                    kernel: part("kernel")?,
                    session: part("session")?,
                    state: part("state")?,
                }
            }
            _ => return None,
        };
        (!address.session.is_empty()).then_some(address)
    }

    /// `poe://kernel/session/state`, `//kernel/session/state`,
    /// `poe:/session/state`, `session/state`, with the characters Perl
    /// IKC's `specifier_parse` allows; a `?args` suffix is dropped.
    fn parse_str(text: &str) -> Option<Address> {
        let path = text.split_once('?').map_or(text, |(path, _)| path);
        let (poe, path) = match path.strip_prefix("poe:") {
            Some(rest) => (true, rest),
            None => (false, path),
        };
        let (kernel, path) = match path.strip_prefix("//") {
            Some(rest) => rest.split_once('/').unwrap_or((rest, "")),
            None if poe => ("", path.strip_prefix('/').unwrap_or(path)),
            None => ("", path),
        };
        let (session, state) = match path.split_once('/') {
            Some(parts) => parts,
            None if poe => (path, ""),
            // Perl reads a lone name as a state of no session.
            None => return None,
        };
        let name_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | ' ');
        let kernel_ok = kernel == "*"
            || kernel
                .chars()
                .all(|c| name_char(c) || matches!(c, '.' | ':'));
        if !kernel_ok || !session.chars().all(name_char) || !state.chars().all(name_char) {
            return None;
        }
        Some(Address {
            kernel: kernel.to_owned(),
            session: session.to_owned(),
            state: state.to_owned(),
        })
    }

    /// The hash form.
    pub(crate) fn to_value(&self) -> Value {
        hash([
            ("kernel", Value::from(self.kernel.as_str())),
            ("session", Value::from(self.session.as_str())),
            ("state", Value::from(self.state.as_str())),
        ])
    }
}

/// Perl IKC's `specifier_name`: a string stays as written; a hash becomes
/// `poe://kernel/session/state`, leaving out empty parts.
pub(crate) fn specifier_name(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Map(map) => {
            let part = |key: &str| match map.get(key) {
                Some(Value::String(text)) if !text.is_empty() => Some(text.as_str()),
                _ => None,
            };
            let mut name = "poe:".to_owned();
            if let Some(kernel) = part("kernel") {
                name.push_str("//");
                name.push_str(kernel);
            }
            for key in ["session", "state"] {
                if let Some(text) = part(key) {
                    name.push('/');
                    name.push_str(text);
                }
            }
            name
        }
        _ => "poe:".to_owned(),
    }
}

/// A hash from `(key, value)` pairs.
pub(crate) fn hash<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Whether a Perl value is true (`wantarray`, `is_error`).
pub(crate) fn is_true(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Int(i)) => *i != 0,
        Some(Value::Float(f)) => *f != 0.0,
        Some(Value::String(s)) => !s.is_empty() && s != "0",
        Some(Value::Bytes(b)) => !b.is_empty() && &b[..] != b"0",
        Some(Value::List(_) | Value::Map(_)) => true,
    }
}

/// The answer to a call, sent to its `rsvp` (WIRE.md §5.2).
pub(crate) fn reply(rsvp: Value, params: Value, kernel: &str, session: &str) -> Value {
    hash([
        ("event", rsvp),
        ("params", params),
        (
            "from",
            hash([
                ("kernel", Value::from(kernel)),
                ("session", Value::from(session)),
                ("state", Value::from(PROXY_STATE)),
            ]),
        ),
    ])
}

/// An error message, sent to the peer's `IKC/remote_error` (WIRE.md §5.5).
pub(crate) fn remote_error(peer: &str, text: String, kernel: Value, when: &str) -> Value {
    hash([
        (
            "event",
            hash([
                ("kernel", Value::from(peer)),
                ("session", Value::from(IKC_SESSION)),
                ("state", Value::from("remote_error")),
            ]),
        ),
        (
            "params",
            Value::List(vec![Value::from(text), kernel, Value::from(when)]),
        ),
        ("is_error", Value::Int(1)),
    ])
}

/// What a request that failed is remembered by, to word its error as Perl
/// IKC does: `<what>.  Request <event> sent by <from>`.
#[derive(Debug, Clone)]
pub(crate) struct RequestNames {
    /// `specifier_name` of the request's event.
    pub(crate) event: String,
    /// `specifier_name` of its `from`, when it had one.
    pub(crate) from: Option<String>,
    /// The kernel part as the sender wrote it; null when the event could
    /// not be read at all.
    pub(crate) kernel: Value,
    pub(crate) session: String,
    pub(crate) state: String,
}

impl RequestNames {
    /// The text and the "when" (`check` for a target that is not
    /// published, as in Perl; `resolve` for every later failure) of the
    /// error message for `kind`.
    pub(crate) fn error_text(&self, kind: ErrorKind, message: &str) -> (String, &'static str) {
        let (what, when) = match kind {
            ErrorKind::NoSession => (
                format!(
                    "Session '{}' is not available for remote kernels",
                    self.session
                ),
                "check",
            ),
            ErrorKind::NoEvent => (
                format!(
                    "Session '{}' has not published state '{}'",
                    self.session, self.state
                ),
                "check",
            ),
            ErrorKind::BadRequest => (message.to_owned(), "check"),
            _ => (message.to_owned(), "resolve"),
        };
        let mut text = format!("{what}.  Request {}", self.event);
        if let Some(from) = &self.from {
            text.push_str(" sent by ");
            text.push_str(from);
        }
        (text, when)
    }
}

/// Reads the `Request <event>` part back out of a Perl IKC error text.
pub(crate) fn request_of_error(text: &str) -> Option<&str> {
    let (_, request) = text.rsplit_once(".  Request ")?;
    Some(
        request
            .rsplit_once(" sent by ")
            .map_or(request, |(event, _)| event),
    )
}

/// The error kind a Perl IKC error text stands for.
pub(crate) fn kind_of_error(text: &str) -> ErrorKind {
    if text.contains("is not available for remote kernels") {
        ErrorKind::NoSession
    } else if text.contains("has not published state") {
        ErrorKind::NoEvent
    } else {
        ErrorKind::Handler
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(kernel: &str, session: &str, state: &str) -> Address {
        Address {
            kernel: kernel.to_owned(),
            session: session.to_owned(),
            state: state.to_owned(),
        }
    }

    #[test]
    fn every_specifier_form_perl_accepts_parses() {
        let cases = [
            ("poe://K/echo/say", address("K", "echo", "say")),
            ("//K/echo/say", address("K", "echo", "say")),
            ("poe:/echo/say", address("", "echo", "say")),
            ("echo/say", address("", "echo", "say")),
            ("poe://K/echo", address("K", "echo", "")),
            ("poe://K/echo/say?x", address("K", "echo", "say")),
        ];
        for (text, expected) in cases {
            assert_eq!(Address::parse(&Value::from(text)), Some(expected), "{text}");
        }
        for bad in ["not a spec!", "poe://K", "", "a/b/c", "echo", "K/echo/say"] {
            assert_eq!(Address::parse(&Value::from(bad)), None, "{bad}");
        }
    }

    #[test]
    fn hash_addresses_parse_with_missing_parts_empty() {
        let value = hash([
            ("session", Value::from("echo")),
            ("state", Value::from("say")),
        ]);
        assert_eq!(Address::parse(&value), Some(address("", "echo", "say")));
    }

    #[test]
    fn specifier_names_match_perl() {
        let from = hash([
            ("kernel", Value::from("Probe")),
            ("session", Value::from("IKCLite")),
        ]);
        assert_eq!(specifier_name(&from), "poe://Probe/IKCLite");
        assert_eq!(specifier_name(&Value::Map(BTreeMap::new())), "poe:");
        assert_eq!(specifier_name(&Value::from("poe://K/s/e")), "poe://K/s/e");
    }

    #[test]
    fn error_texts_read_back_their_request() {
        let names = RequestNames {
            event: "poe://K/echo/nope".to_owned(),
            from: Some("poe://Probe/IKCLite".to_owned()),
            kernel: Value::from("K"),
            session: "echo".to_owned(),
            state: "nope".to_owned(),
        };
        let (text, when) = names.error_text(ErrorKind::NoEvent, "ignored");
        assert_eq!(
            text,
            "Session 'echo' has not published state 'nope'.  Request poe://K/echo/nope sent by poe://Probe/IKCLite"
        );
        assert_eq!(when, "check");
        assert_eq!(request_of_error(&text), Some("poe://K/echo/nope"));
        assert_eq!(kind_of_error(&text), ErrorKind::NoEvent);
    }
}
