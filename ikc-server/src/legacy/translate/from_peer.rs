//! Messages from the peer, turned into frames for our channel.

use ikc_core::{ErrorKind, IkcError, KernelTarget, Part, Specifier};
use ikc_proto::{Value, pb};

use super::{Incoming, Outgoing, Output, Translator};
use crate::legacy::message::{
    Address, IKC_SESSION, LITE_SESSION, PROXY_STATE, RESPONSE_PREFIX, RequestNames, is_true,
    kind_of_error, reply, request_of_error, specifier_name,
};
use crate::legacy::storable::StorableError;

impl Translator {
    /// A message from the peer (or why it could not be read).
    pub(crate) fn on_peer_message(
        &mut self,
        message: Result<Value, StorableError>,
        out: &mut Output,
    ) {
        let message = match message {
            Ok(Value::Map(message)) => message,
            Ok(other) => {
                let text = format!("message is a {}, not a hash", other.type_name());
                return self.emit_error(out, text, Value::Null, "thaw");
            }
            Err(error) => {
                tracing::debug!(peer = %self.peer.kernel, %error, "unreadable message from a legacy peer");
                let text = format!("cannot read the message: {error}");
                return self.emit_error(out, text, Value::Null, "thaw");
            }
        };
        let field = |key: &str| message.get(key).filter(|v| !v.is_null());
        let event = field("event").cloned().unwrap_or_default();
        let address = Address::parse(&event);
        let is_error = is_true(field("is_error"))
            || address
                .as_ref()
                .is_some_and(|a| a.session == IKC_SESSION && a.state == "remote_error");
        if is_error {
            return self.on_remote_error(field("params"), out);
        }
        if let Some(id) = address.as_ref().and_then(|a| self.our_response(a)) {
            let params = field("params").cloned().unwrap_or_default();
            return self.on_response(id, params, out);
        }
        let from = field("from");
        let names = RequestNames {
            event: address
                .as_ref()
                .map_or_else(|| "poe:".to_owned(), |a| specifier_name(&a.to_value())),
            from: from.map(specifier_name),
            kernel: address
                .as_ref()
                .map_or(Value::Null, |a| Value::from(a.kernel.as_str())),
            session: address
                .as_ref()
                .map(|a| a.session.clone())
                .unwrap_or_default(),
            state: address
                .as_ref()
                .map(|a| a.state.clone())
                .unwrap_or_default(),
        };
        let Some(address) = address else {
            // Perl words an unreadable target as an unpublished session ''.
            let (text, when) = names.error_text(ErrorKind::NoSession, "");
            return self.emit_error(out, text, names.kernel, when);
        };
        let rsvp = field("rsvp").cloned();
        let params = field("params").cloned().unwrap_or_default();
        if address.session == IKC_SESSION {
            match address.state.as_str() {
                "ping" => {
                    if let Some(rsvp) = rsvp {
                        let answer =
                            reply(rsvp, Value::from("PONG"), self.kernel.name(), IKC_SESSION);
                        let _ = self.emit(out, &answer);
                    }
                    return;
                }
                "do_you_have" => return self.on_do_you_have(rsvp, &params, names, out),
                _ => {}
            }
        }
        let (state, arg) = if address.state == PROXY_STATE {
            match params {
                Value::List(mut items) if items.len() == 2 && items[0].as_str().is_some() => {
                    let args = items.pop().unwrap_or_default();
                    let state = items.pop().and_then(|s| s.as_str().map(str::to_owned));
                    let arg = match args {
                        Value::List(mut args) if args.len() == 1 => args.pop().unwrap_or_default(),
                        other => other,
                    };
                    (state.unwrap_or_default(), arg)
                }
                _ => {
                    let (text, when) = names.error_text(
                        ErrorKind::BadRequest,
                        "IKC:proxy needs params [state, [arguments]]",
                    );
                    return self.emit_error(out, text, names.kernel, when);
                }
            }
        } else {
            (address.state.clone(), params)
        };
        let names = RequestNames { state, ..names };
        let target = match self.target(&address.kernel, &names) {
            Ok(target) => target,
            Err(kind) => {
                let (text, when) = names.error_text(kind, "");
                return self.emit_error(out, text, names.kernel, when);
            }
        };
        // Informational, as `kernel/session` when the sender named both.
        let from_text = from
            .and_then(Address::parse)
            .filter(|a| !a.kernel.is_empty())
            .map(|a| format!("{}/{}", a.kernel, a.session))
            .unwrap_or_default();
        // A call: `rsvp` given, or ClientLite's post_respond, whose reply
        // address travels as the last of two params.
        let (call, arg) = match (rsvp, arg) {
            (Some(rsvp), arg) => (Some((rsvp, is_true(field("wantarray")))), arg),
            (None, Value::List(mut items)) if self.is_post_respond(&items) => {
                let rsvp = items.pop().unwrap_or_default();
                let data = items.pop().unwrap_or_default();
                (Some((rsvp, false)), data)
            }
            (None, arg) => (None, arg),
        };
        let request = |id| pb::Request {
            id,
            target: target.to_string(),
            arg: Some(arg.into_proto()),
            from: from_text,
            deadline_ms: 0,
            // Perl peers carry no trace context.
            traceparent: String::new(),
        };
        match call {
            Some((rsvp, wantarray)) => {
                let id = self.next_incoming;
                self.next_incoming += 1;
                self.incoming.insert(
                    id,
                    Incoming::Call {
                        rsvp,
                        wantarray,
                        names,
                    },
                );
                out.inbound.push_back(request(id).into());
            }
            None => {
                // Perl checks a post's target and reports a bad one.
                let checked = match target.kernel() {
                    KernelTarget::Local => self.check_local(&names.session, &names.state),
                    _ => Ok(()),
                };
                if let Err(kind) = checked {
                    let (text, when) = names.error_text(kind, "");
                    return self.emit_error(out, text, names.kernel, when);
                }
                out.inbound.push_back(request(0).into());
            }
        }
    }

    /// The specifier for a legacy target: local, unless the kernel part
    /// names another kernel connected here.
    fn target(&self, kernel: &str, names: &RequestNames) -> Result<Specifier, ErrorKind> {
        let elsewhere = kernel == "*"
            || (!kernel.is_empty()
                && !self.kernel.is_named(kernel)
                && !self.peer.names().any(|n| n == kernel)
                && self.kernel.peer(kernel).is_some());
        let spec = if elsewhere {
            Specifier::remote(kernel, &names.session, &names.state)
        } else {
            Specifier::local(&names.session, &names.state)
        };
        spec.map_err(|error| match error {
            ikc_core::ParseSpecifierError::EmptyPart { part: Part::Event }
            | ikc_core::ParseSpecifierError::BadChar {
                part: Part::Event, ..
            }
            | ikc_core::ParseSpecifierError::PartTooLong {
                part: Part::Event, ..
            } => ErrorKind::NoEvent,
            _ => ErrorKind::NoSession,
        })
    }

    fn check_local(&self, session: &str, state: &str) -> Result<(), ErrorKind> {
        if !self.kernel.is_published(session) {
            return Err(ErrorKind::NoSession);
        }
        let published = self.kernel.published();
        let allowed = published
            .iter()
            .any(|(name, events)| name == session && events.iter().any(|e| e == state));
        if allowed {
            Ok(())
        } else {
            Err(ErrorKind::NoEvent)
        }
    }

    /// `[data, {kernel, session, state}]` whose kernel is the peer: the
    /// reply address ClientLite's `post_respond` sends along.
    fn is_post_respond(&self, items: &[Value]) -> bool {
        let [_, Value::Map(rsvp)] = items else {
            return false;
        };
        let keys_ok = rsvp.len() == 3
            && ["kernel", "session", "state"]
                .iter()
                .all(|k| rsvp.get(*k).is_some_and(|v| v.as_str().is_some()));
        keys_ok
            && rsvp
                .get("kernel")
                .and_then(Value::as_str)
                .is_some_and(|kernel| self.peer.names().any(|n| n == kernel))
    }

    /// The id of our call that `address` is the reply address of.
    fn our_response(&self, address: &Address) -> Option<u64> {
        if address.session != LITE_SESSION {
            return None;
        }
        let id = address.state.strip_prefix(RESPONSE_PREFIX)?.parse().ok()?;
        self.outgoing.contains_key(&id).then_some(id)
    }

    fn on_response(&mut self, id: u64, params: Value, out: &mut Output) {
        let frame = match self.outgoing.remove(&id) {
            Some(Outgoing::Call { .. }) => pb::Reply {
                id,
                value: Some(params.into_proto()),
            }
            .into(),
            // Perl answers `[session, kernel id]`, or a refusal as text.
            Some(Outgoing::Subscribe) => match params {
                Value::List(_) => pb::Reply { id, value: None }.into(),
                other => {
                    let text = other.as_str().unwrap_or("subscription refused").to_owned();
                    IkcError::new(ErrorKind::NoSession, text)
                        .to_proto(id)
                        .into()
                }
            },
            None => return,
        };
        out.inbound.push_back(frame);
    }

    fn on_remote_error(&mut self, params: Option<&Value>, out: &mut Output) {
        let text = match params {
            Some(Value::List(items)) => items.first().and_then(Value::as_str),
            Some(Value::String(text)) => Some(text.as_str()),
            _ => None,
        }
        .unwrap_or("remote error")
        .to_owned();
        let call = request_of_error(&text).and_then(|event| {
            self.outgoing
                .iter()
                .find(|(_, call)| matches!(call, Outgoing::Call { event: e } if e == event))
                .map(|(id, _)| *id)
        });
        tracing::debug!(peer = %self.peer.kernel, %text, "remote error from a legacy peer");
        let id = match call {
            Some(id) => {
                self.outgoing.remove(&id);
                id
            }
            None => 0,
        };
        let error = IkcError::new(kind_of_error(&text), text);
        out.inbound.push_back(error.to_proto(id).into());
    }

    fn on_do_you_have(
        &mut self,
        rsvp: Option<Value>,
        params: &Value,
        names: RequestNames,
        out: &mut Output,
    ) {
        let session = match params {
            Value::List(items) => items.first().and_then(Address::parse),
            other => Address::parse(other),
        };
        let (Some(rsvp), Some(session)) = (rsvp, session) else {
            let (text, when) = names.error_text(ErrorKind::BadRequest, "bad subscription request");
            return self.emit_error(out, text, names.kernel, when);
        };
        let id = self.next_incoming;
        self.next_incoming += 1;
        let subscribe = pb::Subscribe {
            id,
            session: session.session.clone(),
        };
        self.incoming
            .insert(id, Incoming::Subscribe { rsvp, session });
        out.inbound.push_back(subscribe.into());
    }
}
