//! [`Specifier`]: the address of a session or event, `poe://kernel/session/event`.
//!
//! The forms IKC users write are all accepted:
//!
//! | text                         | kernel        | session   | event  |
//! |------------------------------|---------------|-----------|--------|
//! | `poe://Server/calc/add`      | `Server`      | `calc`    | `add`  |
//! | `poe://Server/calc`          | `Server`      | `calc`    | none   |
//! | `Server/calc/add`            | `Server`      | `calc`    | `add`  |
//! | `calc/add`                   | this kernel   | `calc`    | `add`  |
//! | `poe://*/calc/add`           | any kernel    | `calc`    | `add`  |
//!
//! ```
//! use ikc_core::{KernelTarget, Specifier};
//!
//! let spec: Specifier = "poe://Server/calc/add".parse()?;
//! assert_eq!(spec.kernel(), &KernelTarget::Named("Server".to_owned()));
//! assert_eq!((spec.session(), spec.event()), ("calc", Some("add")));
//! assert_eq!(spec.to_string(), "poe://Server/calc/add");
//! # Ok::<(), ikc_core::ParseSpecifierError>(())
//! ```

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

/// Longest kernel, session or event name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest specifier text accepted, in bytes.
pub const MAX_SPECIFIER_LEN: usize = 1024;

const SCHEME: &str = "poe://";

/// Which kernel a [`Specifier`] points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KernelTarget {
    /// The kernel that resolves the specifier (no kernel part was written).
    Local,
    /// `*`: the local kernel if it publishes the session, else the first
    /// connected kernel that does.
    Any,
    /// A kernel by name or alias.
    Named(String),
}

/// The part of a specifier a [`ParseSpecifierError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The kernel name.
    Kernel,
    /// The session name.
    Session,
    /// The event name.
    Event,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Kernel => "kernel",
            Part::Session => "session",
            Part::Event => "event",
        })
    }
}

/// Why a text is not a valid specifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSpecifierError {
    /// The text is empty.
    #[error("specifier is empty")]
    Empty,
    /// The text is longer than [`MAX_SPECIFIER_LEN`].
    #[error("specifier is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the text.
        len: usize,
        /// [`MAX_SPECIFIER_LEN`].
        max: usize,
    },
    /// A text without `poe://` needs at least `session/event`.
    #[error("specifier {text:?} names no event: write session/event or poe://kernel/session")]
    MissingEvent {
        /// The text.
        text: String,
    },
    /// More than `kernel/session/event`.
    #[error("specifier {text:?} has too many parts: at most kernel/session/event")]
    TooManyParts {
        /// The text.
        text: String,
    },
    /// A part is empty (`poe:///calc`, `calc//x`).
    #[error("the {part} name is empty")]
    EmptyPart {
        /// Which part.
        part: Part,
    },
    /// A part is longer than [`MAX_NAME_LEN`].
    #[error("the {part} name is {len} bytes long, the maximum is {max}")]
    PartTooLong {
        /// Which part.
        part: Part,
        /// Its length.
        len: usize,
        /// [`MAX_NAME_LEN`].
        max: usize,
    },
    /// A part contains `/`, whitespace or a control character.
    #[error("the {part} name contains {ch:?}, which names may not contain")]
    BadChar {
        /// Which part.
        part: Part,
        /// The character.
        ch: char,
    },
}

/// The address of a session, or of an event of a session.
///
/// Session and event names share one allocation (`session/event`), and
/// [`Specifier::parse_owned`] reuses the string it is given: a request's
/// target costs no allocation beyond the one it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Specifier {
    kernel: KernelTarget,
    /// `session`, or `session/event`.
    names: Box<str>,
    /// Where the event name starts in `names`, if there is one. Small
    /// fields keep a `Request` within 128 bytes, which the compiler moves
    /// without a `memcpy` call as it passes through a service stack.
    event_at: Option<NonZeroU32>,
}

impl Specifier {
    /// `session/event` on the local kernel.
    ///
    /// # Errors
    ///
    /// When a name is empty, too long, or has a forbidden character.
    pub fn local(session: &str, event: &str) -> Result<Self, ParseSpecifierError> {
        Specifier::with_names(KernelTarget::Local, session, Some(event))
    }

    /// `poe://kernel/session/event`.
    ///
    /// # Errors
    ///
    /// When a name is empty, too long, or has a forbidden character.
    pub fn remote(kernel: &str, session: &str, event: &str) -> Result<Self, ParseSpecifierError> {
        Specifier::with_names(kernel_target(kernel)?, session, Some(event))
    }

    fn with_names(
        kernel: KernelTarget,
        session: &str,
        event: Option<&str>,
    ) -> Result<Self, ParseSpecifierError> {
        check(Part::Session, session)?;
        let Some(event) = event else {
            return Ok(Specifier {
                kernel,
                names: session.into(),
                event_at: None,
            });
        };
        check(Part::Event, event)?;
        let mut names = String::with_capacity(session.len() + 1 + event.len());
        names.push_str(session);
        names.push('/');
        names.push_str(event);
        Ok(Specifier {
            kernel,
            names: names.into_boxed_str(),
            event_at: position(session.len() + 1),
        })
    }

    /// Parses `text` like [`str::parse`], keeping `text`'s allocation for
    /// the names: the way to parse a target that arrived as a `String`.
    ///
    /// # Errors
    ///
    /// As [`str::parse`]: see [`ParseSpecifierError`].
    ///
    /// ```
    /// use ikc_core::Specifier;
    ///
    /// let spec = Specifier::parse_owned("poe://Server/calc/add".to_owned())?;
    /// assert_eq!(spec, "poe://Server/calc/add".parse()?);
    /// # Ok::<(), ikc_core::ParseSpecifierError>(())
    /// ```
    pub fn parse_owned(mut text: String) -> Result<Self, ParseSpecifierError> {
        let Layout {
            kernel,
            names_at,
            event_at,
        } = layout(&text)?;
        if names_at > 0 {
            // In place; giving back the spare room is a shrinking realloc,
            // which allocators do in place.
            text.drain(..names_at);
        }
        let names = text.into_boxed_str();
        Ok(Specifier {
            kernel,
            names,
            event_at: event_at.and_then(|at| position(at - names_at)),
        })
    }

    /// Which kernel this points at.
    #[must_use]
    pub fn kernel(&self) -> &KernelTarget {
        &self.kernel
    }

    /// The session name.
    #[must_use]
    pub fn session(&self) -> &str {
        match self.event_at {
            Some(at) => &self.names[..index(at) - 1],
            None => &self.names,
        }
    }

    /// The session and event names as written after the kernel:
    /// `session/event`, or `session` when no event was given. One string
    /// that tells two targets apart, cheaper to compare than its parts.
    #[must_use]
    pub fn names(&self) -> &str {
        &self.names
    }

    /// The event name, if one was given.
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        self.event_at.map(|at| &self.names[index(at)..])
    }

    /// The same session with `event`.
    ///
    /// # Errors
    ///
    /// When `event` is not a valid name.
    pub fn with_event(&self, event: &str) -> Result<Self, ParseSpecifierError> {
        Specifier::with_names(self.kernel.clone(), self.session(), Some(event))
    }
}

/// An event's position in `names`: never 0 (a session name comes first),
/// and within `u32` (a specifier is at most [`MAX_SPECIFIER_LEN`] bytes).
fn position(at: usize) -> Option<NonZeroU32> {
    u32::try_from(at).ok().and_then(NonZeroU32::new)
}

fn index(at: NonZeroU32) -> usize {
    at.get() as usize
}

/// Checks that `text` may be a `part` name.
fn check(part: Part, text: &str) -> Result<(), ParseSpecifierError> {
    check_len(part, text)?;
    // Names are nearly always ASCII: look at bytes, not chars, then.
    let bad = if text.is_ascii() {
        text.bytes().find(|&b| !plain(b)).map(char::from)
    } else {
        text.chars()
            .find(|&c| c == '/' || c.is_whitespace() || c.is_control())
    };
    match bad {
        Some(ch) => Err(ParseSpecifierError::BadChar { part, ch }),
        None => Ok(()),
    }
}

/// An ASCII byte that may be in a name.
fn plain(byte: u8) -> bool {
    byte.is_ascii() && byte != b' ' && byte != b'/' && !byte.is_ascii_control()
}

/// Checks that `text` is not empty and not too long for a `part` name.
fn check_len(part: Part, text: &str) -> Result<(), ParseSpecifierError> {
    if text.is_empty() {
        return Err(ParseSpecifierError::EmptyPart { part });
    }
    if text.len() > MAX_NAME_LEN {
        return Err(ParseSpecifierError::PartTooLong {
            part,
            len: text.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

/// Checks that `text` may be a `part` name, and copies it.
pub(crate) fn name(part: Part, text: &str) -> Result<String, ParseSpecifierError> {
    check(part, text).map(|()| text.to_owned())
}

fn kernel_target(text: &str) -> Result<KernelTarget, ParseSpecifierError> {
    if text == "*" {
        Ok(KernelTarget::Any)
    } else {
        name(Part::Kernel, text).map(KernelTarget::Named)
    }
}

/// Where the parts of a specifier's text are.
struct Layout {
    kernel: KernelTarget,
    /// Where `session[/event]` starts.
    names_at: usize,
    /// Where the event name starts, if there is one.
    event_at: Option<usize>,
}

/// `session/event` in printable ASCII within the length limits, the shape
/// nearly every request's target has, in one pass over its bytes. `None`
/// sends the text through the general parser, which also names every error.
fn local_event(text: &[u8]) -> Option<Layout> {
    let mut slash = None;
    for (at, &byte) in text.iter().enumerate() {
        if byte == b'/' {
            if slash.is_some() {
                return None;
            }
            slash = Some(at);
        } else if !(0x21..=0x7e).contains(&byte) {
            // What `plain` accepts, in one comparison: not a space, a
            // control byte or a byte outside ASCII.
            return None;
        }
    }
    let at = slash?;
    let (session, event) = (at, text.len() - at - 1);
    ((1..=MAX_NAME_LEN).contains(&session) && (1..=MAX_NAME_LEN).contains(&event)).then_some(
        Layout {
            kernel: KernelTarget::Local,
            names_at: 0,
            event_at: Some(at + 1),
        },
    )
}

fn layout(text: &str) -> Result<Layout, ParseSpecifierError> {
    if text.len() <= MAX_SPECIFIER_LEN
        && let Some(layout) = local_event(text.as_bytes())
    {
        return Ok(layout);
    }
    if text.is_empty() {
        return Err(ParseSpecifierError::Empty);
    }
    if text.len() > MAX_SPECIFIER_LEN {
        return Err(ParseSpecifierError::TooLong {
            len: text.len(),
            max: MAX_SPECIFIER_LEN,
        });
    }
    let (with_scheme, rest) = match text.strip_prefix(SCHEME) {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    // Up to three parts; a fourth means too many. When every other byte
    // is plain ASCII, the names need no check of their characters.
    let mut slashes = [rest.len(); 3];
    let mut found = 0;
    let mut all_plain = true;
    for (at, byte) in rest.bytes().enumerate() {
        if byte == b'/' {
            slashes[found] = at;
            found += 1;
            if found == slashes.len() {
                break;
            }
        } else {
            all_plain &= plain(byte);
        }
    }
    let check = if all_plain { check_len } else { check };
    let part = |n: usize| -> Option<&str> {
        let start = if n == 0 { 0 } else { slashes[n - 1] + 1 };
        (n <= found).then(|| &rest[start..slashes.get(n).copied().unwrap_or(rest.len())])
    };
    let first = part(0).unwrap_or_default();
    let (second, third) = (part(1), part(2));
    let fourth = (found == 3).then_some(());
    // Where the second and third parts start in `text`.
    let second_at = text.len() - rest.len() + first.len() + 1;
    let third_at = second_at + second.map_or(0, str::len) + 1;
    let names = |kernel, (session, session_at): (&str, usize), event: Option<(&str, usize)>| {
        check(Part::Session, session)?;
        if let Some((event, _)) = event {
            check(Part::Event, event)?;
        }
        Ok(Layout {
            kernel,
            names_at: session_at,
            event_at: event.map(|(_, at)| at),
        })
    };
    match (with_scheme, second, third, fourth) {
        (_, _, _, Some(_)) => Err(ParseSpecifierError::TooManyParts {
            text: text.to_owned(),
        }),
        (true, Some(session), None, None) => {
            names(kernel_target(first)?, (session, second_at), None)
        }
        (_, Some(session), Some(event), None) => names(
            kernel_target(first)?,
            (session, second_at),
            Some((event, third_at)),
        ),
        (false, Some(event), None, None) => names(
            KernelTarget::Local,
            (first, second_at - first.len() - 1),
            Some((event, second_at)),
        ),
        (true, None, ..) => {
            kernel_target(first)?;
            Err(ParseSpecifierError::EmptyPart {
                part: Part::Session,
            })
        }
        (false, None, ..) => Err(ParseSpecifierError::MissingEvent {
            text: text.to_owned(),
        }),
    }
}

impl FromStr for Specifier {
    type Err = ParseSpecifierError;

    fn from_str(text: &str) -> Result<Self, ParseSpecifierError> {
        let Layout {
            kernel,
            names_at,
            event_at,
        } = layout(text)?;
        Ok(Specifier {
            kernel,
            names: Box::from(&text[names_at..]),
            event_at: event_at.and_then(|at| position(at - names_at)),
        })
    }
}

impl fmt::Display for Specifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kernel {
            KernelTarget::Local => {}
            KernelTarget::Any => f.write_str("poe://*/")?,
            KernelTarget::Named(kernel) => write!(f, "{SCHEME}{kernel}/")?,
        }
        f.write_str(&self.names)
    }
}
