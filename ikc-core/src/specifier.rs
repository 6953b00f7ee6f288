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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Specifier {
    kernel: KernelTarget,
    session: String,
    event: Option<String>,
}

impl Specifier {
    /// `session/event` on the local kernel.
    ///
    /// # Errors
    ///
    /// When a name is empty, too long, or has a forbidden character.
    pub fn local(session: &str, event: &str) -> Result<Self, ParseSpecifierError> {
        Ok(Specifier {
            kernel: KernelTarget::Local,
            session: name(Part::Session, session)?,
            event: Some(name(Part::Event, event)?),
        })
    }

    /// `poe://kernel/session/event`.
    ///
    /// # Errors
    ///
    /// When a name is empty, too long, or has a forbidden character.
    pub fn remote(kernel: &str, session: &str, event: &str) -> Result<Self, ParseSpecifierError> {
        Ok(Specifier {
            kernel: kernel_target(kernel)?,
            session: name(Part::Session, session)?,
            event: Some(name(Part::Event, event)?),
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
        &self.session
    }

    /// The event name, if one was given.
    #[must_use]
    pub fn event(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The same session with `event`.
    ///
    /// # Errors
    ///
    /// When `event` is not a valid name.
    pub fn with_event(&self, event: &str) -> Result<Self, ParseSpecifierError> {
        Ok(Specifier {
            event: Some(name(Part::Event, event)?),
            ..self.clone()
        })
    }
}

pub(crate) fn name(part: Part, text: &str) -> Result<String, ParseSpecifierError> {
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
    if let Some(ch) = text
        .chars()
        .find(|&c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(ParseSpecifierError::BadChar { part, ch });
    }
    Ok(text.to_owned())
}

fn kernel_target(text: &str) -> Result<KernelTarget, ParseSpecifierError> {
    if text == "*" {
        Ok(KernelTarget::Any)
    } else {
        name(Part::Kernel, text).map(KernelTarget::Named)
    }
}

impl FromStr for Specifier {
    type Err = ParseSpecifierError;

    fn from_str(text: &str) -> Result<Self, ParseSpecifierError> {
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
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        let too_many = || ParseSpecifierError::TooManyParts {
            text: text.to_owned(),
        };
        match (with_scheme, parts.as_slice()) {
            (true, [kernel, session]) => Ok(Specifier {
                kernel: kernel_target(kernel)?,
                session: name(Part::Session, session)?,
                event: None,
            }),
            (_, [kernel, session, event]) => Ok(Specifier {
                kernel: kernel_target(kernel)?,
                session: name(Part::Session, session)?,
                event: Some(name(Part::Event, event)?),
            }),
            (false, [session, event]) => Ok(Specifier {
                kernel: KernelTarget::Local,
                session: name(Part::Session, session)?,
                event: Some(name(Part::Event, event)?),
            }),
            (true, [kernel]) => {
                kernel_target(kernel)?;
                Err(ParseSpecifierError::EmptyPart {
                    part: Part::Session,
                })
            }
            (false, [_]) => Err(ParseSpecifierError::MissingEvent {
                text: text.to_owned(),
            }),
            _ => Err(too_many()),
        }
    }
}

impl fmt::Display for Specifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kernel {
            KernelTarget::Local => {}
            KernelTarget::Any => f.write_str("poe://*/")?,
            KernelTarget::Named(kernel) => write!(f, "{SCHEME}{kernel}/")?,
        }
        f.write_str(&self.session)?;
        if let Some(event) = &self.event {
            write!(f, "/{event}")?;
        }
        Ok(())
    }
}
