//! The fast path for the frames nearly all traffic is made of: a `Request`
//! or a `Reply` whose value is a scalar (null, bool, int, float, string,
//! bytes).
//!
//! prost's generic code computes each nested message's length once per
//! level of nesting and decodes through a loop that handles every field of
//! every message. For these few shapes the frame's layout is known, so it
//! is written in one pass into a slice and read in one pass from one: a
//! varint reader that takes the one-byte case first (prost's generic one
//! goes through `Buf` a byte at a time), and every key, one byte for each
//! field of these shapes, written and matched as that byte. Anything else
//! (a list or map value, an unknown field, fields out of order, a string
//! that is not UTF-8) is left to prost: the
//! fast path only ever answers what prost would have answered, and the
//! tests check exactly that, byte for byte and value for value.

use bytes::{Bytes, BytesMut};
use prost::encoding::WireType;
use prost::encoding::{encoded_len_varint, key_len};

use super::CodecError;
use super::delimited::HEAD_LEN;
use super::frame::RequestParts;
use crate::Value;
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
const REQUEST_TRACEPARENT: u32 = 6;
const REPLY_VALUE: u32 = 2;

/// The one-byte key of field `field` (at most 15) with `wire_type`: the
/// reader matches whole key bytes, the writer writes them.
const fn key_byte(field: u32, wire_type: WireType) -> u8 {
    assert!(field > 0 && field < 16, "a one-byte key");
    (field << 3 | wire_type as u32) as u8
}

const KEY_FRAME_REQUEST: u8 = key_byte(FRAME_REQUEST, WireType::LengthDelimited);
const KEY_FRAME_REPLY: u8 = key_byte(FRAME_REPLY, WireType::LengthDelimited);
const KEY_ID: u8 = key_byte(ID, WireType::Varint);
const KEY_REQUEST_TARGET: u8 = key_byte(REQUEST_TARGET, WireType::LengthDelimited);
const KEY_REQUEST_ARG: u8 = key_byte(REQUEST_ARG, WireType::LengthDelimited);
const KEY_REQUEST_FROM: u8 = key_byte(REQUEST_FROM, WireType::LengthDelimited);
const KEY_REQUEST_DEADLINE: u8 = key_byte(REQUEST_DEADLINE, WireType::Varint);
const KEY_REQUEST_TRACEPARENT: u8 = key_byte(REQUEST_TRACEPARENT, WireType::LengthDelimited);
const KEY_REPLY_VALUE: u8 = key_byte(REPLY_VALUE, WireType::LengthDelimited);
/// `Value`'s fields, one per kind.
const KEY_NULL: u8 = key_byte(1, WireType::Varint);
const KEY_BOOL: u8 = key_byte(2, WireType::Varint);
const KEY_INT: u8 = key_byte(3, WireType::Varint);
const KEY_FLOAT: u8 = key_byte(4, WireType::SixtyFourBit);
const KEY_STRING: u8 = key_byte(5, WireType::LengthDelimited);
const KEY_BYTES: u8 = key_byte(6, WireType::LengthDelimited);

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

/// What a fast-shape frame's encoding holds besides its target, sender and
/// value, at the most: eight fields, each a key and a varint of fifteen
/// bytes at the most.
const FIXED_MAX: usize = 8 * 15;

/// At least the length of `frame`'s encoding, if it has one of the fast
/// shapes: its strings' lengths and its value's, without measuring its
/// keys and varints one by one.
pub(super) fn len_bound(frame: &pb::Frame) -> Option<usize> {
    let value = |value: &Option<pb::Value>| value.as_ref().map_or(Some(0), value_len);
    let variable = match frame.kind.as_ref()? {
        Kind::Request(request) => {
            request.target.len()
                + request.from.len()
                + request.traceparent.len()
                + value(&request.arg)?
        }
        Kind::Reply(reply) => value(&reply.value)?,
        _ => return None,
    };
    Some(variable.saturating_add(FIXED_MAX))
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
    Some(write_frame(field, body_len, max, dst, |w| match body {
        Body::Request(request) => w.request(request),
        Body::Reply(reply) => w.reply(reply),
    }))
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
    Scalar::of_proto(value).map(Scalar::len)
}

/// A scalar value as the fast path writes it: from a `pb::Value`, or from
/// the [`Value`] that `Value::into_proto` turns into one.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    /// A `pb::Value` with no kind: an empty body.
    Empty,
    Null(i32),
    Bool(bool),
    Int(i64),
    Float(f64),
    String(&'a [u8]),
    Bytes(&'a [u8]),
}

impl<'a> Scalar<'a> {
    /// `None` for a list or a map.
    fn of_proto(value: &'a pb::Value) -> Option<Self> {
        let Some(kind) = &value.kind else {
            return Some(Scalar::Empty);
        };
        Some(match kind {
            ValueKind::Null(null) => Scalar::Null(*null),
            ValueKind::Bool(b) => Scalar::Bool(*b),
            ValueKind::Int(int) => Scalar::Int(*int),
            ValueKind::Float(float) => Scalar::Float(*float),
            ValueKind::String(text) => Scalar::String(text.as_bytes()),
            ValueKind::Bytes(bytes) => Scalar::Bytes(bytes),
            ValueKind::List(_) | ValueKind::Map(_) => return None,
        })
    }

    /// `None` for a list or a map.
    fn of_value(value: &'a Value) -> Option<Self> {
        Some(match value {
            // `pb::Null::Value`, the enum's zero.
            Value::Null => Scalar::Null(0),
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Int(int) => Scalar::Int(*int),
            Value::Float(float) => Scalar::Float(*float),
            Value::String(text) => Scalar::String(text.as_bytes()),
            Value::Bytes(bytes) => Scalar::Bytes(bytes),
            Value::List(_) | Value::Map(_) => return None,
        })
    }

    /// The length of its `pb::Value` body.
    fn len(self) -> usize {
        match self {
            Scalar::Empty => 0,
            // An enum is an int32: negative values take ten bytes.
            Scalar::Null(null) => 1 + encoded_len_varint(i64::from(null) as u64),
            Scalar::Bool(_) => 2,
            Scalar::Int(int) => 1 + encoded_len_varint(zigzag(int)),
            Scalar::Float(_) => 9,
            Scalar::String(text) => delimited_len(5, text.len()),
            Scalar::Bytes(bytes) => delimited_len(6, bytes.len()),
        }
    }
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
    if !request.traceparent.is_empty() {
        len += delimited_len(REQUEST_TRACEPARENT, request.traceparent.len());
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

/// A `Request` frame written straight from its parts, with its head: the
/// bytes `encode` writes for the `pb::Frame` holding the same request
/// (`arg` as `Value::into_proto` makes it), without building that frame.
/// `None` when `arg` is a list or a map, which is left to prost.
pub(super) fn encode_request(
    request: &RequestParts<'_>,
    arg: &Value,
    max: usize,
    dst: &mut BytesMut,
) -> Option<Result<(), CodecError>> {
    let mut body_len = 0;
    if request.id != 0 {
        body_len += key_len(ID) + encoded_len_varint(request.id);
    }
    if !request.target.is_empty() {
        body_len += delimited_len(REQUEST_TARGET, request.target.len());
    }
    let arg = Scalar::of_value(arg)?;
    body_len += delimited_len(REQUEST_ARG, arg.len());
    if !request.from.is_empty() {
        body_len += delimited_len(REQUEST_FROM, request.from.len());
    }
    if request.deadline_ms != 0 {
        body_len += key_len(REQUEST_DEADLINE) + encoded_len_varint(u64::from(request.deadline_ms));
    }
    if !request.traceparent.is_empty() {
        body_len += delimited_len(REQUEST_TRACEPARENT, request.traceparent.len());
    }
    Some(write_frame(FRAME_REQUEST, body_len, max, dst, |w| {
        if request.id != 0 {
            w.byte(KEY_ID);
            w.varint(request.id);
        }
        if !request.target.is_empty() {
            w.delimited(KEY_REQUEST_TARGET, request.target.as_bytes());
        }
        w.value(KEY_REQUEST_ARG, arg);
        if !request.from.is_empty() {
            w.delimited(KEY_REQUEST_FROM, request.from.as_bytes());
        }
        if request.deadline_ms != 0 {
            w.byte(KEY_REQUEST_DEADLINE);
            w.varint(u64::from(request.deadline_ms));
        }
        if !request.traceparent.is_empty() {
            w.delimited(KEY_REQUEST_TRACEPARENT, request.traceparent.as_bytes());
        }
    }))
}

/// A `Reply` frame written straight from its id and value, with its head:
/// the bytes `encode` writes for the `pb::Frame` holding
/// `pb::Reply { id, value: Some(value.into_proto()) }`. `None` when `value`
/// is a list or a map, which is left to prost.
pub(super) fn encode_reply(
    id: u64,
    value: &Value,
    max: usize,
    dst: &mut BytesMut,
) -> Option<Result<(), CodecError>> {
    let value = Scalar::of_value(value)?;
    let mut body_len = delimited_len(REPLY_VALUE, value.len());
    if id != 0 {
        body_len += key_len(ID) + encoded_len_varint(id);
    }
    Some(write_frame(FRAME_REPLY, body_len, max, dst, |w| {
        if id != 0 {
            w.byte(KEY_ID);
            w.varint(id);
        }
        w.value(KEY_REPLY_VALUE, value);
    }))
}

/// Appends a frame holding field `field` of `Frame`, whose body of
/// `body_len` bytes `body` writes, head included; over `max` it is
/// refused and `dst` left as it was.
fn write_frame(
    field: u32,
    body_len: usize,
    max: usize,
    dst: &mut BytesMut,
    body: impl FnOnce(&mut Writer<'_>),
) -> Result<(), CodecError> {
    let len = delimited_len(field, body_len);
    let head = match u32::try_from(len) {
        Ok(head) if len <= max => head,
        _ => return Err(too_large(len, max)),
    };
    // Zeroing a frame's worth of buffer is one short `memset`; it lets the
    // frame be written through a bounds-checked slice.
    let start = dst.len();
    dst.resize(start + HEAD_LEN + len, 0);
    let mut w = Writer {
        buf: &mut dst[start..],
        pos: 0,
    };
    w.slice(&head.to_be_bytes());
    w.byte(key_byte(field, WireType::LengthDelimited));
    w.varint(body_len as u64);
    body(&mut w);
    debug_assert_eq!(
        w.pos,
        HEAD_LEN + len,
        "the measured length is the written one"
    );
    Ok(())
}

/// A value `fast` measured: a scalar.
fn scalar(value: &pb::Value) -> Scalar<'_> {
    Scalar::of_proto(value).expect("only scalar values take the fast path")
}

/// Writes a frame into a slice measured for it.
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn byte(&mut self, byte: u8) {
        self.buf[self.pos] = byte;
        self.pos += 1;
    }

    fn slice(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.buf[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte((value as u8) | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    /// A length-delimited field: its one-byte `key`, then `bytes`.
    fn delimited(&mut self, key: u8, bytes: &[u8]) {
        self.byte(key);
        self.varint(bytes.len() as u64);
        self.slice(bytes);
    }

    fn value(&mut self, key: u8, value: Scalar<'_>) {
        self.byte(key);
        self.varint(value.len() as u64);
        match value {
            Scalar::Empty => {}
            Scalar::Null(null) => {
                self.byte(KEY_NULL);
                self.varint(i64::from(null) as u64);
            }
            Scalar::Bool(b) => {
                self.byte(KEY_BOOL);
                self.byte(u8::from(b));
            }
            Scalar::Int(int) => {
                self.byte(KEY_INT);
                self.varint(zigzag(int));
            }
            Scalar::Float(float) => {
                self.byte(KEY_FLOAT);
                self.slice(&float.to_le_bytes());
            }
            Scalar::String(text) => self.delimited(KEY_STRING, text),
            Scalar::Bytes(bytes) => self.delimited(KEY_BYTES, bytes),
        }
    }

    fn request(&mut self, request: &pb::Request) {
        if request.id != 0 {
            self.byte(KEY_ID);
            self.varint(request.id);
        }
        if !request.target.is_empty() {
            self.delimited(KEY_REQUEST_TARGET, request.target.as_bytes());
        }
        if let Some(arg) = &request.arg {
            self.value(KEY_REQUEST_ARG, scalar(arg));
        }
        if !request.from.is_empty() {
            self.delimited(KEY_REQUEST_FROM, request.from.as_bytes());
        }
        if request.deadline_ms != 0 {
            self.byte(KEY_REQUEST_DEADLINE);
            self.varint(u64::from(request.deadline_ms));
        }
        if !request.traceparent.is_empty() {
            self.delimited(KEY_REQUEST_TRACEPARENT, request.traceparent.as_bytes());
        }
    }

    fn reply(&mut self, reply: &pb::Reply) {
        if reply.id != 0 {
            self.byte(KEY_ID);
            self.varint(reply.id);
        }
        if let Some(value) = &reply.value {
            self.value(KEY_REPLY_VALUE, scalar(value));
        }
    }
}

/// Reads a varint from the front of `buf`. Only what prost would read the
/// same way: a varint of ten bytes (where prost checks the last byte's
/// range) is left to prost, like any other case this path is unsure of.
#[inline]
fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    match buf.split_first() {
        Some((&first, rest)) if first < 0x80 => {
            *buf = rest;
            Some(u64::from(first))
        }
        _ => read_long_varint(buf),
    }
}

/// A varint of two bytes or more (or none at all).
#[cold]
fn read_long_varint(buf: &mut &[u8]) -> Option<u64> {
    let (&first, rest) = buf.split_first()?;
    let mut value = u64::from(first & 0x7f);
    for (i, &byte) in rest.iter().enumerate().take(8) {
        value |= u64::from(byte & 0x7f) << (7 * (i + 1));
        if byte < 0x80 {
            *buf = &rest[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Decodes `message` (a frame without its head) if it has one of the fast
/// shapes; `None` leaves it to prost.
pub(super) fn decode(message: &Bytes) -> Option<pb::Frame> {
    decode_from(Reader {
        message: Some(message),
        buf: message,
    })
}

/// [`decode`] for a frame that stays where it is: its `bytes` fields are
/// copied out of it.
pub(super) fn decode_copied(message: &[u8]) -> Option<pb::Frame> {
    decode_from(Reader {
        message: None,
        buf: message,
    })
}

fn decode_from(mut reader: Reader<'_>) -> Option<pb::Frame> {
    let Next::Key(key) = reader.next_key(0) else {
        return None;
    };
    let len = usize::try_from(read_varint(&mut reader.buf)?).ok()?;
    if len != reader.buf.len() {
        return None;
    }
    // The frame is made first and its fields are read into it where it
    // lies: built inside out, a request or reply is moved (copied) once
    // per level of nesting on its way out.
    let mut frame = pb::Frame {
        kind: Some(match key {
            KEY_FRAME_REQUEST => Kind::Request(pb::Request::default()),
            KEY_FRAME_REPLY => Kind::Reply(pb::Reply::default()),
            _ => return None,
        }),
    };
    match &mut frame.kind {
        Some(Kind::Request(request)) => reader.request(request)?,
        Some(Kind::Reply(reply)) => reader.reply(reply)?,
        _ => unreachable!("made just above"),
    }
    Some(frame)
}

/// What comes next in a message's body.
enum Next {
    /// Its end.
    End,
    /// The one-byte key of a field with a number above the last one's
    /// (fields in order, each once: what prost writes). Its wire type is
    /// checked by matching the whole byte.
    Key(u8),
    /// Anything else (a key of more bytes is of a field no fast shape
    /// has): left to prost.
    Other,
}

/// Reads fields from a slice of `message`; a `bytes` field is a slice of
/// `message` itself, not a copy, or a copy when there is no `message`.
struct Reader<'a> {
    message: Option<&'a Bytes>,
    /// What is left to read of the current body.
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn next_key(&mut self, after: u32) -> Next {
        match self.buf.split_first() {
            None => Next::End,
            // Field 0 is never above `after`.
            Some((&key, rest)) if key < 0x80 && u32::from(key >> 3) > after => {
                self.buf = rest;
                Next::Key(key)
            }
            Some(_) => Next::Other,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        read_varint(&mut self.buf)
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
        self.delimited().map(|field| match self.message {
            Some(message) => message.slice_ref(field),
            None => Bytes::copy_from_slice(field),
        })
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
        let key = match self.next_key(0) {
            Next::End => return Some(pb::Value { kind: None }),
            Next::Key(key) => key,
            Next::Other => return None,
        };
        let kind = match key {
            // An int32 read from a wider varint keeps its low bits, as
            // prost does.
            KEY_NULL => ValueKind::Null(self.varint()? as i32),
            KEY_BOOL => ValueKind::Bool(self.varint()? != 0),
            KEY_INT => ValueKind::Int(unzigzag(self.varint()?)),
            KEY_FLOAT => {
                let (float, rest) = self.buf.split_first_chunk::<8>()?;
                self.buf = rest;
                ValueKind::Float(f64::from_le_bytes(*float))
            }
            KEY_STRING => ValueKind::String(self.string()?),
            KEY_BYTES => ValueKind::Bytes(self.bytes()?),
            _ => return None,
        };
        // One field and nothing after it (`nested` checks).
        Some(pb::Value { kind: Some(kind) })
    }

    fn request(&mut self, request: &mut pb::Request) -> Option<()> {
        let mut last = 0;
        loop {
            let key = match self.next_key(last) {
                Next::End => return Some(()),
                Next::Key(key) => key,
                Next::Other => return None,
            };
            match key {
                KEY_ID => request.id = self.varint()?,
                KEY_REQUEST_TARGET => request.target = self.string()?,
                KEY_REQUEST_ARG => request.arg = Some(self.nested(Self::value)?),
                KEY_REQUEST_FROM => request.from = self.string()?,
                KEY_REQUEST_DEADLINE => {
                    // A uint32 read from a wider varint keeps its low bits,
                    // as prost does.
                    request.deadline_ms = self.varint()? as u32;
                }
                KEY_REQUEST_TRACEPARENT => request.traceparent = self.string()?,
                _ => return None,
            }
            last = u32::from(key >> 3);
        }
    }

    fn reply(&mut self, reply: &mut pb::Reply) -> Option<()> {
        let mut last = 0;
        loop {
            let key = match self.next_key(last) {
                Next::End => return Some(()),
                Next::Key(key) => key,
                Next::Other => return None,
            };
            match key {
                KEY_ID => reply.id = self.varint()?,
                KEY_REPLY_VALUE => reply.value = Some(self.nested(Self::value)?),
                _ => return None,
            }
            last = u32::from(key >> 3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &pb::Frame) -> Bytes {
        let mut dst = BytesMut::new();
        encode(frame, usize::MAX, &mut dst)
            .expect("a fast shape")
            .expect("encodes");
        dst.split_off(HEAD_LEN).freeze()
    }

    /// The property tests check that this path answers as prost does; this
    /// checks that it answers at all for the frames real traffic is made of,
    /// so a change that quietly sends them all to prost fails here.
    #[test]
    fn requests_and_replies_of_every_id_width_take_the_fast_path() {
        for id in [1, 127, 128, 300, 1 << 21, 1 << 35, (1 << 63) - 1] {
            let request: pb::Frame = pb::Request {
                id,
                target: "poe://Kernel/echo/say".to_owned(),
                arg: Some(pb::Value {
                    kind: Some(ValueKind::Bytes(Bytes::from(vec![7; 200]))),
                }),
                from: "me".to_owned(),
                deadline_ms: 30_000,
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            }
            .into();
            assert_eq!(decode(&encoded(&request)), Some(request), "id {id}");
            let reply: pb::Frame = pb::Reply {
                id,
                value: Some(pb::Value {
                    kind: Some(ValueKind::Float(0.5)),
                }),
            }
            .into();
            assert_eq!(decode(&encoded(&reply)), Some(reply), "id {id}");
        }
    }

    #[test]
    fn the_bound_is_never_under_the_length() {
        let longest: pb::Frame = pb::Request {
            id: u64::MAX,
            target: "t".repeat(300),
            arg: Some(pb::Value {
                kind: Some(ValueKind::Null(-1)),
            }),
            from: "f".repeat(200),
            deadline_ms: u32::MAX,
            traceparent: "p".repeat(55),
        }
        .into();
        let reply: pb::Frame = pb::Reply {
            id: u64::MAX,
            value: Some(pb::Value {
                kind: Some(ValueKind::Int(i64::MIN)),
            }),
        }
        .into();
        for frame in [longest, reply] {
            let bound = len_bound(&frame).expect("a fast shape");
            assert!(bound >= encoded_len(&frame), "{frame:?}");
        }
    }

    #[test]
    fn varints_read_as_written() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            (1 << 63) - 1,
        ] {
            let mut buf = [0; 10];
            let mut w = Writer {
                buf: &mut buf,
                pos: 0,
            };
            w.varint(value);
            let len = w.pos;
            assert_eq!(len, encoded_len_varint(value));
            let mut read: &[u8] = &buf[..len];
            assert_eq!(read_varint(&mut read), Some(value));
            assert!(read.is_empty());
        }
        // Ten bytes are left to prost, as is a varint cut short.
        let mut ten: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint(&mut ten), None);
        let mut cut: &[u8] = &[0x80, 0x80];
        assert_eq!(read_varint(&mut cut), None);
    }
}
