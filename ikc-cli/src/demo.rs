//! The demo `echo` session that `ikc serve` publishes, so a fresh server is
//! useful at once.
//!
//! | event   | argument      | answer                          |
//! |---------|---------------|---------------------------------|
//! | `say`   | anything      | the argument, unchanged         |
//! | `upper` | a string      | the string in upper case        |

use ikc::core::{
    BoxError, ErrorKind, IkcError, Kernel, ParseSpecifierError, Request, Value, service_fn,
};

/// The session name.
pub const ECHO_SESSION: &str = "echo";

/// The session's events.
pub const ECHO_EVENTS: [&str; 2] = ["say", "upper"];

/// Publishes `echo` on `kernel`.
///
/// # Errors
///
/// Never in practice: the names are valid.
pub fn publish_echo(kernel: &Kernel) -> Result<(), ParseSpecifierError> {
    kernel.publish(
        ECHO_SESSION,
        ECHO_EVENTS,
        service_fn(|req: Request| async move { echo(req) }),
    )
}

fn echo(req: Request) -> Result<Value, BoxError> {
    match req.event() {
        "upper" => match req.arg() {
            Value::String(text) => Ok(Value::from(text.to_uppercase())),
            other => Err(IkcError::new(
                ErrorKind::BadRequest,
                format!("upper needs a string, got {}", other.type_name()),
            )
            .into()),
        },
        _ => Ok(req.into_arg()),
    }
}
