//! Writing a network-order image, as `nfreeze` writes the same Perl data.

use ikc_proto::Value;

use super::{KEY_UTF8, SHORT_STRING, StorableError, op};

pub(super) fn write_object(
    out: &mut Vec<u8>,
    value: &Value,
    root: bool,
) -> Result<(), StorableError> {
    match value {
        Value::Null => out.push(op::UNDEF),
        Value::Bool(true) => write_bytes(out, b"1", false)?,
        Value::Bool(false) => write_bytes(out, b"", false)?,
        Value::Int(int) => write_int(out, *int)?,
        Value::Float(float) => write_bytes(out, float_text(*float).as_bytes(), false)?,
        Value::String(text) => write_bytes(out, text.as_bytes(), !text.is_ascii())?,
        Value::Bytes(bytes) => write_bytes(out, bytes, false)?,
        Value::List(items) => {
            if !root {
                out.push(op::REF);
            }
            out.push(op::ARRAY);
            write_len(out, items.len())?;
            for item in items {
                write_object(out, item, false)?;
            }
        }
        Value::Map(entries) => {
            if !root {
                out.push(op::REF);
            }
            // Storable flags a hash only when one of its keys needs it.
            let flagged = entries.keys().any(|key| !key.is_ascii());
            if flagged {
                out.extend_from_slice(&[op::FLAG_HASH, 0]);
            } else {
                out.push(op::HASH);
            }
            write_len(out, entries.len())?;
            for (key, value) in entries {
                write_object(out, value, false)?;
                if flagged {
                    out.push(if key.is_ascii() { 0 } else { KEY_UTF8 });
                }
                write_len(out, key.len())?;
                out.extend_from_slice(key.as_bytes());
            }
        }
    }
    Ok(())
}

fn write_int(out: &mut Vec<u8>, int: i64) -> Result<(), StorableError> {
    if let Ok(byte) = i8::try_from(int) {
        out.push(op::BYTE);
        out.push((byte as u8) ^ 0x80);
    } else if let Ok(int) = i32::try_from(int) {
        out.push(op::NETINT);
        out.extend_from_slice(&int.to_be_bytes());
    } else {
        // Network order has no 64-bit integers: Storable writes a string.
        write_bytes(out, int.to_string().as_bytes(), false)?;
    }
    Ok(())
}

/// A float as Perl would read it back as the same number.
pub(super) fn float_text(float: f64) -> String {
    if float.is_nan() {
        "NaN".to_owned()
    } else if float.is_infinite() {
        if float > 0.0 { "Inf" } else { "-Inf" }.to_owned()
    } else if float.fract() == 0.0 && float.abs() < 1e15 {
        // Whole numbers print as Perl prints them: `3`, not `3.0`.
        #[allow(clippy::cast_possible_truncation)] // checked: |float| < 1e15
        let int = float as i64;
        int.to_string()
    } else if (1e-5..1e21).contains(&float.abs()) {
        float.to_string()
    } else {
        format!("{float:e}")
    }
}

fn write_bytes(out: &mut Vec<u8>, bytes: &[u8], utf8: bool) -> Result<(), StorableError> {
    if bytes.len() <= SHORT_STRING {
        out.push(if utf8 { op::UTF8STR } else { op::SCALAR });
        #[allow(clippy::cast_possible_truncation)] // checked: at most 255
        out.push(bytes.len() as u8);
    } else {
        out.push(if utf8 { op::LUTF8STR } else { op::LSCALAR });
        write_len(out, bytes.len())?;
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn write_len(out: &mut Vec<u8>, len: usize) -> Result<(), StorableError> {
    // Storable reads lengths as signed 32-bit integers.
    let len32 = i32::try_from(len).map_err(|_| StorableError::TooLong { len })?;
    out.extend_from_slice(&len32.to_be_bytes());
    Ok(())
}
