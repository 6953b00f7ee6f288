//! Why a conversion to or from a [`Value`](super::Value) failed.

/// Why a conversion to or from a [`Value`](super::Value) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value has another type than the one asked for.
    #[error("expected {expected}, found {found}")]
    Type {
        /// The type asked for.
        expected: &'static str,
        /// The value's actual type.
        found: &'static str,
    },
    /// An integer does not fit the asked-for Rust type.
    #[error("integer out of range for {target}")]
    OutOfRange {
        /// The Rust type asked for.
        target: &'static str,
    },
    /// Lists and maps nest deeper than the limit.
    #[error("value nests deeper than {max} levels")]
    TooDeep {
        /// The limit, [`MAX_DEPTH`](super::MAX_DEPTH).
        max: usize,
    },
    /// A serde `Serialize` or `Deserialize` implementation failed.
    #[error("{0}")]
    Serde(String),
}
