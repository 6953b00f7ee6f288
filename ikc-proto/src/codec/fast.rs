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

/// Encodes `frame` with its 4-byte head if it has one of the fast shapes;
/// `None` leaves it to prost.
pub(super) fn encode(
    frame: &pb::Frame,
    max: usize,
    dst: &mut BytesMut,
) -> Option<Result<(), CodecError>> {
    let (field, body_len) = match frame.kind.as_ref()? {
        Kind::Request(request) => (FRAME_REQUEST, request_len(request)?),
        Kind::Reply(reply) => (FRAME_REPLY, reply_len(reply)?),
        _ => return None,
    };
    let len = key_len(field) + encoded_len_varint(body_len as u64) + body_len;
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
    match frame.kind.as_ref()? {
        Kind::Request(request) => put_request(request, dst),
        Kind::Reply(reply) => put_reply(reply, dst),
        _ => unreachable!("the shape was checked above"),
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
    let mut buf = message.clone();
    let (field, wire_type) = decode_key(&mut buf).ok()?;
    if wire_type != WireType::LengthDelimited {
        return None;
    }
    let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
    if len != buf.remaining() {
        return None;
    }
    let kind = match field {
        FRAME_REQUEST => Kind::Request(read_request(buf)?),
        FRAME_REPLY => Kind::Reply(read_reply(buf)?),
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

fn next_key(buf: &mut Bytes, after: u32) -> Next {
    if !buf.has_remaining() {
        return Next::End;
    }
    match decode_key(buf) {
        Ok((field, wire_type)) if field > after => Next::Field(field, wire_type),
        _ => Next::Other,
    }
}

/// A length-delimited field's bytes, sharing `buf`'s memory.
fn read_delimited(buf: &mut Bytes) -> Option<Bytes> {
    let len = usize::try_from(decode_varint(buf).ok()?).ok()?;
    (len <= buf.remaining()).then(|| buf.split_to(len))
}

fn read_string(buf: &mut Bytes) -> Option<String> {
    String::from_utf8(read_delimited(buf)?.into()).ok()
}

fn read_value(buf: &mut Bytes) -> Option<pb::Value> {
    let mut body = read_delimited(buf)?;
    let (field, wire_type) = match next_key(&mut body, 0) {
        Next::End => return Some(pb::Value { kind: None }),
        Next::Field(field, wire_type) => (field, wire_type),
        Next::Other => return None,
    };
    let kind = match (field, wire_type) {
        (1, WireType::Varint) => ValueKind::Null(decode_varint(&mut body).ok()? as i32),
        (2, WireType::Varint) => ValueKind::Bool(decode_varint(&mut body).ok()? != 0),
        (3, WireType::Varint) => ValueKind::Int(unzigzag(decode_varint(&mut body).ok()?)),
        (4, WireType::SixtyFourBit) if body.remaining() >= 8 => ValueKind::Float(body.get_f64_le()),
        (5, WireType::LengthDelimited) => ValueKind::String(read_string(&mut body)?),
        (6, WireType::LengthDelimited) => ValueKind::Bytes(read_delimited(&mut body)?),
        _ => return None,
    };
    // One field and nothing after it.
    (!body.has_remaining()).then_some(pb::Value { kind: Some(kind) })
}

fn read_request(mut buf: Bytes) -> Option<pb::Request> {
    let mut request = pb::Request::default();
    let mut last = 0;
    loop {
        let (field, wire_type) = match next_key(&mut buf, last) {
            Next::End => break,
            Next::Field(field, wire_type) => (field, wire_type),
            Next::Other => return None,
        };
        match (field, wire_type) {
            (ID, WireType::Varint) => request.id = decode_varint(&mut buf).ok()?,
            (REQUEST_TARGET, WireType::LengthDelimited) => request.target = read_string(&mut buf)?,
            (REQUEST_ARG, WireType::LengthDelimited) => request.arg = Some(read_value(&mut buf)?),
            (REQUEST_FROM, WireType::LengthDelimited) => request.from = read_string(&mut buf)?,
            (REQUEST_DEADLINE, WireType::Varint) => {
                // A uint32 read from a wider varint keeps its low bits, as
                // prost does.
                request.deadline_ms = decode_varint(&mut buf).ok()? as u32;
            }
            _ => return None,
        }
        last = field;
    }
    Some(request)
}

fn read_reply(mut buf: Bytes) -> Option<pb::Reply> {
    let mut reply = pb::Reply::default();
    let mut last = 0;
    loop {
        let (field, wire_type) = match next_key(&mut buf, last) {
            Next::End => break,
            Next::Field(field, wire_type) => (field, wire_type),
            Next::Other => return None,
        };
        match (field, wire_type) {
            (ID, WireType::Varint) => reply.id = decode_varint(&mut buf).ok()?,
            (REPLY_VALUE, WireType::LengthDelimited) => reply.value = Some(read_value(&mut buf)?),
            _ => return None,
        }
        last = field;
    }
    Some(reply)
}
