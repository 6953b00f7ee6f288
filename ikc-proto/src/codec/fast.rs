//! The fast path for the frames nearly all traffic is made of: a `Request`
//! or a `Reply` whose value is a scalar (null, bool, int, float, string,
//! bytes).
//!
//! prost's generic code computes each nested message's length once per
//! level of nesting and decodes through a loop that handles every field of
//! every message. For these few shapes the frame's layout is known, so it
//! is written in one pass and read in one pass, with prost's own varint and
//! key functions. Anything else (a list or map value, an unknown field,
//! fields out of order, a string that is not UTF-8) is left to prost: the
//! fast path only ever answers what prost would have answered, and the
//! tests check exactly that, byte for byte and value for value.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use prost::encoding::{encoded_len_varint, key_len};

use super::CodecError;
use super::delimited::HEAD_LEN;
use crate::pb;
use crate::pb::frame::Kind;
use crate::pb::value::Kind as ValueKind;

/// Field numbers, as in `ikc.proto`.
const FRAME_REQUEST: u32 = 1;
const FRAME_REPLY: u32 = 2;
const ID: u32 = 1;
const REQUEST_TARGET: u32 = 2;
const REQUEST_ARG: u32 = 3;
const REQUEST_FROM: u32 = 4;
const REQUEST_DEADLINE: u32 = 5;
const REPLY_VALUE: u32 = 2;

/// A frame of one of the fast shapes, measured.
struct Fast<'a> {
    /// Its field number in `Frame`.
    field: u32,
    /// The length of the request's or reply's body.
    body_len: usize,
    body: Body<'a>,
}

enum Body<'a> {
    Request(&'a pb::Request),
    Reply(&'a pb::Reply),
}

/// `frame` measured, if it has one of the fast shapes.
fn fast(frame: &pb::Frame) -> Option<Fast<'_>> {
    match frame.kind.as_ref()? {
        Kind::Request(request) => Some(Fast {
            field: FRAME_REQUEST,
            body_len: request_len(request)?,
            body: Body::Request(request),
        }),
        Kind::Reply(reply) => Some(Fast {
            field: FRAME_REPLY,
            body_len: reply_len(reply)?,
            body: Body::Reply(reply),
        }),
        _ => None,
    }
}

/// The length of `frame`'s protobuf encoding (without the head), as
/// prost's `encoded_len` computes it, in one pass for the fast shapes.
pub(super) fn encoded_len(frame: &pb::Frame) -> usize {
    match fast(frame) {
        Some(fast) => delimited_len(fast.field, fast.body_len),
        None => prost::Message::encoded_len(frame),
    }
}

/// Encodes `frame` with its 4-byte head if it has one of the fast shapes;
/// `None` leaves it to prost.
pub(super) fn encode(
    frame: &pb::Frame,
    max: usize,
    dst: &mut BytesMut,
) -> Option<Result<(), CodecError>> {
    let Fast {
        field,
        body_len,
        body,
    } = fast(frame)?;
    let len = delimited_len(field, body_len);
    let Ok(head) = u32::try_from(len) else {
        return Some(Err(too_large(len, max)));
    };
    if len > max {
        return Some(Err(too_large(len, max)));
    }
    dst.reserve(HEAD_LEN + len);
    dst.put_u32(head);
    encode_key(field, WireType::LengthDelimited, dst);
    encode_varint(body_len as u64, dst);
    match body {
        Body::Request(request) => put_request(request, dst),
        Body::Reply(reply) => put_reply(reply, dst),
    }
    Some(Ok(()))
}

fn too_large(len: usize, max: usize) -> CodecError {
    CodecError::FrameTooLarge {
        len: len as u64,
        max,
    }
}

/// Length of a field holding a length-delimited body of `len` bytes.
fn delimited_len(field: u32, len: usize) -> usize {
    key_len(field) + encoded_len_varint(len as u64) + len
}

/// Length of a scalar value's body; `None` for a list or a map.
fn value_len(value: &pb::Value) -> Option<usize> {
    let Some(kind) = &value.kind else {
        return Some(0);
    };
    Some(match kind {
        // An enum is an int32: negative values take ten bytes.
        ValueKind::Null(null) => 1 + encoded_len_varint(i64::from(*null) as u64),
        ValueKind::Bool(_) => 2,
        ValueKind::Int(int) => 1 + encoded_len_varint(zigzag(*int)),
        ValueKind::Float(_) => 9,
        ValueKind::String(text) => delimited_len(5, text.len()),
        ValueKind::Bytes(bytes) => delimited_len(6, bytes.len()),
        ValueKind::List(_) | ValueKind::Map(_) => return None,
    })
}

fn zigzag(int: i64) -> u64 {
    ((int << 1) ^ (int >> 63)) as u64
}

fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

fn request_len(request: &pb::Request) -> Option<usize> {
    let mut len = 0;
    if request.id != 0 {
        len += key_len(ID) + encoded_len_varint(request.id);
    }
    if !request.target.is_empty() {
        len += delimited_len(REQUEST_TARGET, request.target.len());
    }
    if let Some(arg) = &request.arg {
        len += delimited_len(REQUEST_ARG, value_len(arg)?);
    }
    if !request.from.is_empty() {
        len += delimited_len(REQUEST_FROM, request.from.len());
    }
    if request.deadline_ms != 0 {
        len += key_len(REQUEST_DEADLINE) + encoded_len_varint(u64::from(request.deadline_ms));
    }
    Some(len)
}

fn reply_len(reply: &pb::Reply) -> Option<usize> {
    let mut len = 0;
    if reply.id != 0 {
        len += key_len(ID) + encoded_len_varint(reply.id);
    }
    if let Some(value) = &reply.value {
        len += delimited_len(REPLY_VALUE, value_len(value)?);
    }
    Some(len)
}

fn put_delimited(field: u32, bytes: &[u8], dst: &mut BytesMut) {
    encode_key(field, WireType::LengthDelimited, dst);
    encode_varint(bytes.len() as u64, dst);
    dst.put_slice(bytes);
}

fn put_value(field: u32, value: &pb::Value, dst: &mut BytesMut) {
    let len = value_len(value).expect("only scalar values take the fast path");
    encode_key(field, WireType::LengthDelimited, dst);
    encode_varint(len as u64, dst);
    match &value.kind {
        None => {}
        Some(ValueKind::Null(null)) => {
            encode_key(1, WireType::Varint, dst);
            encode_varint(i64::from(*null) as u64, dst);
        }
        Some(ValueKind::Bool(b)) => {
            encode_key(2, WireType::Varint, dst);
            dst.put_u8(u8::from(*b));
        }
        Some(ValueKind::Int(int)) => {
            encode_key(3, WireType::Varint, dst);
            encode_varint(zigzag(*int), dst);
        }
        Some(ValueKind::Float(float)) => {
            encode_key(4, WireType::SixtyFourBit, dst);
            dst.put_f64_le(*float);
        }
        Some(ValueKind::String(text)) => put_delimited(5, text.as_bytes(), dst),
        Some(ValueKind::Bytes(bytes)) => put_delimited(6, bytes, dst),
        Some(ValueKind::List(_) | ValueKind::Map(_)) => {
            unreachable!("only scalar values take the fast path")
        }
    }
}

fn put_request(request: &pb::Request, dst: &mut BytesMut) {
    if request.id != 0 {
        encode_key(ID, WireType::Varint, dst);
        encode_varint(request.id, dst);
    }
    if !request.target.is_empty() {
        put_delimited(REQUEST_TARGET, request.target.as_bytes(), dst);
    }
    if let Some(arg) = &request.arg {
        put_value(REQUEST_ARG, arg, dst);
    }
    if !request.from.is_empty() {
        put_delimited(REQUEST_FROM, request.from.as_bytes(), dst);
    }
    if request.deadline_ms != 0 {
        encode_key(REQUEST_DEADLINE, WireType::Varint, dst);
        encode_varint(u64::from(request.deadline_ms), dst);
    }
}

fn put_reply(reply: &pb::Reply, dst: &mut BytesMut) {
    if reply.id != 0 {
        encode_key(ID, WireType::Varint, dst);
        encode_varint(reply.id, dst);
    }
    if let Some(value) = &reply.value {
        put_value(REPLY_VALUE, value, dst);
    }
}

/// Decodes `message` (a frame without its head) if it has one of the fast
/// shapes; `None` leaves it to prost.
pub(super) fn decode(message: &Bytes) -> Option<pb::Frame> {
    let mut reader = Reader {
        message,
        buf: message,
    };
    let (field, wire_type) = decode_key(&mut reader.buf).ok()?;
    if wire_type != WireType::LengthDelimited {
        return None;
    }
    let len = usize::try_from(decode_varint(&mut reader.buf).ok()?).ok()?;
    if len != reader.buf.len() {
        return None;
    }
    let kind = match field {
        FRAME_REQUEST => Kind::Request(reader.request()?),
        FRAME_REPLY => Kind::Reply(reader.reply()?),
        _ => return None,
    };
    Some(pb::Frame { kind: Some(kind) })
}

/// What comes next in a message's body.
enum Next {
    /// Its end.
    End,
    /// A field with a number above the last one's (fields in order, each
    /// once: what prost writes).
    Field(u32, WireType),
    /// Anything else: left to prost.
    Other,
}

/// Reads fields from a slice of `message`; a `bytes` field is a slice of
/// `message` itself, not a copy.
struct Reader<'a> {
    message: &'a Bytes,
    /// What is left to read of the current body.
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn next_key(&mut self, after: u32) -> Next {
        if self.buf.is_empty() {
            return Next::End;
        }
        match decode_key(&mut self.buf) {
            Ok((field, wire_type)) if field > after => Next::Field(field, wire_type),
            _ => Next::Other,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        decode_varint(&mut self.buf).ok()
    }

    /// A length-delimited field's bytes.
    fn delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let (field, rest) = self.buf.split_at_checked(len)?;
        self.buf = rest;
        Some(field)
    }

    fn string(&mut self) -> Option<String> {
        std::str::from_utf8(self.delimited()?)
            .ok()
            .map(str::to_owned)
    }

    fn bytes(&mut self) -> Option<Bytes> {
        self.delimited().map(|field| self.message.slice_ref(field))
    }

    /// Reads the body `delimited` returned next, then carries on after it.
    fn nested<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let body = self.delimited()?;
        let rest = std::mem::replace(&mut self.buf, body);
        let value = read(self);
        let finished = self.buf.is_empty();
        self.buf = rest;
        value.filter(|_| finished)
    }

    fn value(&mut self) -> Option<pb::Value> {
        let (field, wire_type) = match self.next_key(0) {
            Next::End => return Some(pb::Value { kind: None }),
            Next::Field(field, wire_type) => (field, wire_type),
            Next::Other => return None,
        };
        let kind = match (field, wire_type) {
            // An int32 read from a wider varint keeps its low bits, as
            // prost does.
            (1, WireType::Varint) => ValueKind::Null(self.varint()? as i32),
            (2, WireType::Varint) => ValueKind::Bool(self.varint()? != 0),
            (3, WireType::Varint) => ValueKind::Int(unzigzag(self.varint()?)),
            (4, WireType::SixtyFourBit) if self.buf.len() >= 8 => {
                ValueKind::Float(self.buf.get_f64_le())
            }
            (5, WireType::LengthDelimited) => ValueKind::String(self.string()?),
            (6, WireType::LengthDelimited) => ValueKind::Bytes(self.bytes()?),
            _ => return None,
        };
        // One field and nothing after it (`nested` checks).
        Some(pb::Value { kind: Some(kind) })
    }

    fn request(&mut self) -> Option<pb::Request> {
        let mut request = pb::Request::default();
        let mut last = 0;
        loop {
            let (field, wire_type) = match self.next_key(last) {
                Next::End => return Some(request),
                Next::Field(field, wire_type) => (field, wire_type),
                Next::Other => return None,
            };
            match (field, wire_type) {
                (ID, WireType::Varint) => request.id = self.varint()?,
                (REQUEST_TARGET, WireType::LengthDelimited) => request.target = self.string()?,
                (REQUEST_ARG, WireType::LengthDelimited) => {
                    request.arg = Some(self.nested(Self::value)?);
                }
                (REQUEST_FROM, WireType::LengthDelimited) => request.from = self.string()?,
                (REQUEST_DEADLINE, WireType::Varint) => {
                    // A uint32 read from a wider varint keeps its low bits,
                    // as prost does.
                    request.deadline_ms = self.varint()? as u32;
                }
                _ => return None,
            }
            last = field;
        }
    }

    fn reply(&mut self) -> Option<pb::Reply> {
        let mut reply = pb::Reply::default();
        let mut last = 0;
        loop {
            let (field, wire_type) = match self.next_key(last) {
                Next::End => return Some(reply),
                Next::Field(field, wire_type) => (field, wire_type),
                Next::Other => return None,
            };
            match (field, wire_type) {
                (ID, WireType::Varint) => reply.id = self.varint()?,
                (REPLY_VALUE, WireType::LengthDelimited) => {
                    reply.value = Some(self.nested(Self::value)?);
                }
                _ => return None,
            }
            last = field;
        }
    }
}
