//! Frames from our channel, turned into messages for the peer.

use std::collections::BTreeMap;

use ikc_core::{ErrorKind, IkcError, KernelTarget, Specifier};
use ikc_proto::{Value, pb};

use super::{Incoming, Outgoing, Output, Translator};
use crate::legacy::message::{
    IKC_SESSION, LITE_SESSION, RESPONSE_PREFIX, hash, reply, specifier_name,
};

impl Translator {
    /// A frame our channel sends to the peer.
    pub(crate) fn on_our_frame(&mut self, frame: pb::Frame, out: &mut Output) {
        use pb::frame::Kind;
        match frame.kind {
            Some(Kind::Request(request)) => self.send_request(request, out),
            Some(Kind::Reply(answer)) => self.send_reply(answer, out),
            Some(Kind::Error(error)) => self.send_error(&error, out),
            Some(Kind::Cancel(cancel)) => {
                // Perl cannot cancel; a late answer is dropped.
                self.outgoing.remove(&cancel.id);
            }
            Some(Kind::Subscribe(subscribe)) => self.send_subscribe(subscribe, out),
            // Perl peers have no keepalive: answer our pings for them.
            Some(Kind::Ping(ping)) => out.inbound.push_back(pb::Pong { nonce: ping.nonce }.into()),
            Some(Kind::Unsubscribe(_) | Kind::Pong(_) | Kind::GoAway(_)) | None => {}
        }
    }

    fn send_reply(&mut self, answer: pb::Reply, out: &mut Output) {
        let ours = self.kernel.name().to_owned();
        let message = match self.incoming.remove(&answer.id) {
            Some(Incoming::Call {
                rsvp,
                wantarray,
                names,
            }) => {
                let value = match Value::from_proto(answer.value) {
                    Ok(value) => value,
                    Err(error) => {
                        let (text, when) = names.error_text(ErrorKind::Handler, &error.to_string());
                        return self.emit_error(out, text, names.kernel, when);
                    }
                };
                // List context wants an array, as Perl's `wantarray`.
                let params = match (wantarray, value) {
                    (true, Value::List(items)) => Value::List(items),
                    (true, Value::Null) => Value::List(Vec::new()),
                    (true, value) => Value::List(vec![value]),
                    (false, value) => value,
                };
                let message = reply(rsvp, params, &ours, &names.session);
                if let Err(len) = self.emit(out, &message) {
                    let (text, when) = names.error_text(ErrorKind::Handler, &self.too_large(len));
                    self.emit_error(out, text, names.kernel, when);
                }
                return;
            }
            Some(Incoming::Subscribe { rsvp, session }) => {
                let params = Value::List(vec![session.to_value(), Value::from(ours.as_str())]);
                reply(rsvp, params, &ours, IKC_SESSION)
            }
            None => return,
        };
        let _ = self.emit(out, &message);
    }

    fn send_error(&mut self, error: &pb::Error, out: &mut Output) {
        let kind = ErrorKind::from(pb::ErrorKind::try_from(error.kind).unwrap_or_default());
        if error.id == 0 {
            // Ours about the connection (it is about to close).
            return self.emit_error(out, error.message.clone(), Value::Null, "protocol");
        }
        match self.incoming.remove(&error.id) {
            Some(Incoming::Call { names, .. }) => {
                let (text, when) = names.error_text(kind, &error.message);
                self.emit_error(out, text, names.kernel, when);
            }
            Some(Incoming::Subscribe { rsvp, session }) => {
                let text = format!(
                    "Refused subscription {}",
                    specifier_name(&session.to_value())
                );
                let message = reply(rsvp, Value::from(text), self.kernel.name(), IKC_SESSION);
                let _ = self.emit(out, &message);
            }
            None => {}
        }
    }

    /// The peer's address for a target of ours: its kernel part names the
    /// peer when we wrote none.
    fn event_text(&self, target: &str) -> Option<String> {
        let spec: Specifier = target.parse().ok()?;
        let kernel = match spec.kernel() {
            KernelTarget::Named(kernel) => kernel.clone(),
            KernelTarget::Any => "*".to_owned(),
            KernelTarget::Local => self.peer.kernel.clone(),
        };
        Some(format!(
            "poe://{kernel}/{}/{}",
            spec.session(),
            spec.event().unwrap_or_default()
        ))
    }

    fn our_address(&self, state: Option<String>) -> Value {
        let mut address = BTreeMap::from([
            ("kernel".to_owned(), Value::from(self.kernel.name())),
            ("session".to_owned(), Value::from(LITE_SESSION)),
        ]);
        if let Some(state) = state {
            address.insert("state".to_owned(), Value::from(state));
        }
        Value::Map(address)
    }

    fn send_request(&mut self, request: pb::Request, out: &mut Output) {
        let id = request.id;
        let fail = |out: &mut Output, error: IkcError| {
            if id != 0 {
                out.inbound.push_back(error.to_proto(id).into());
            }
        };
        let Some(event) = self.event_text(&request.target) else {
            let error = IkcError::new(
                ErrorKind::BadRequest,
                format!("bad target {:?}", request.target),
            );
            return fail(out, error);
        };
        let params = match Value::from_proto(request.arg) {
            Ok(params) => params,
            Err(error) => return fail(out, IkcError::from(error)),
        };
        let mut message = BTreeMap::from([
            ("event".to_owned(), Value::from(event.as_str())),
            ("params".to_owned(), params),
            ("from".to_owned(), self.our_address(None)),
        ]);
        if id != 0 {
            // As ClientLite asks: the answer goes to IKCLite/response<id>.
            let rsvp = self.our_address(Some(format!("{RESPONSE_PREFIX}{id}")));
            message.insert("rsvp".to_owned(), rsvp);
            message.insert("wantarray".to_owned(), Value::from(""));
        }
        match self.emit(out, &Value::Map(message)) {
            Ok(()) if id != 0 => {
                self.outgoing.insert(id, Outgoing::Call { event });
            }
            Ok(()) => {}
            Err(len) => fail(
                out,
                IkcError::new(ErrorKind::BadRequest, self.too_large(len)),
            ),
        }
    }

    fn send_subscribe(&mut self, subscribe: pb::Subscribe, out: &mut Output) {
        let id = subscribe.id;
        let peer = self.peer.kernel.clone();
        let message = hash([
            (
                "event",
                hash([
                    ("kernel", Value::from(peer.as_str())),
                    ("session", Value::from(IKC_SESSION)),
                    ("state", Value::from("do_you_have")),
                ]),
            ),
            (
                "params",
                Value::List(vec![
                    hash([
                        ("kernel", Value::from(peer.as_str())),
                        ("session", Value::from(subscribe.session.as_str())),
                        ("state", Value::from("")),
                    ]),
                    Value::from(self.kernel.name()),
                ]),
            ),
            ("from", self.our_address(None)),
            (
                "rsvp",
                self.our_address(Some(format!("{RESPONSE_PREFIX}{id}"))),
            ),
        ]);
        if self.emit(out, &message).is_ok() {
            self.outgoing.insert(id, Outgoing::Subscribe);
        }
    }
}
