//! Conversions that make the generated messages pleasant to build.

use crate::pb;

macro_rules! frame_from {
    ($($variant:ident($ty:ident)),* $(,)?) => {
        $(
            impl From<pb::$ty> for pb::Frame {
                fn from(message: pb::$ty) -> Self {
                    pb::Frame { kind: Some(pb::frame::Kind::$variant(message)) }
                }
            }
        )*
    };
}

frame_from!(
    Request(Request),
    Reply(Reply),
    Error(Error),
    Cancel(Cancel),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Ping(Ping),
    Pong(Pong),
    GoAway(GoAway),
);

macro_rules! handshake_from {
    ($($variant:ident($ty:ident)),* $(,)?) => {
        $(
            impl From<pb::$ty> for pb::Handshake {
                fn from(message: pb::$ty) -> Self {
                    pb::Handshake { kind: Some(pb::handshake::Kind::$variant(message)) }
                }
            }
        )*
    };
}

handshake_from!(
    Hello(Hello),
    Welcome(Welcome),
    Refuse(Refuse),
    Challenge(Challenge),
    Proof(Proof),
);
