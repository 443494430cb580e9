//! [`Crash`]: why a channel callback failed, with its whole error chain.
//!
//! A handler that returns `Err` or panics crashes its channel, as an
//! exception crashes a Phoenix channel process. The error is kept as it
//! was returned (not flattened to a string), so the crash log and
//! [`Terminate::Crashed`](crate::channel::Terminate::Crashed) carry its
//! source chain.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The error type a handler may return, boxed: anything that converts into
/// it with `?` (every `std::error::Error + Send + Sync + 'static`,
/// `anyhow::Error`, `String`, `&str`).
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why a channel callback crashed: the error it returned, or the message it
/// panicked with. Cheap to clone.
///
/// `Display` prints the error and its sources, outermost first, joined by
/// `": "` (as `anyhow` does with `{:#}`), so one log field holds the chain.
///
/// ```
/// # use phx_channels_runtime as phx_channels;
/// use phx_channels::crash::Crash;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("saving the comment failed")]
/// struct SaveFailed(#[source] std::io::Error);
///
/// let io = std::io::Error::new(std::io::ErrorKind::Other, "disk full");
/// let crash = Crash::from(SaveFailed(io));
/// assert_eq!(crash.to_string(), "saving the comment failed: disk full");
/// assert!(!crash.is_panic());
/// assert!(crash.error().unwrap().source().is_some());
/// ```
#[derive(Clone)]
pub struct Crash(Arc<Kind>);

enum Kind {
    Error(BoxError),
    Panic(String),
}

impl Crash {
    /// A crash from a panic, with its message.
    pub fn panic(message: impl Into<String>) -> Self {
        Crash(Arc::new(Kind::Panic(message.into())))
    }

    /// Whether the callback panicked (rather than returned `Err`).
    pub fn is_panic(&self) -> bool {
        matches!(*self.0, Kind::Panic(_))
    }

    /// The error the callback returned, for its type and sources; `None`
    /// for a panic.
    pub fn error(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        match &*self.0 {
            Kind::Error(error) => Some(error.as_ref()),
            Kind::Panic(_) => None,
        }
    }

    /// The outermost message only: the error's own `Display`, or the panic
    /// message.
    pub fn message(&self) -> String {
        match &*self.0 {
            Kind::Error(error) => error.to_string(),
            Kind::Panic(message) => message.clone(),
        }
    }
}

impl<E: Into<BoxError>> From<E> for Crash {
    fn from(error: E) -> Self {
        Crash(Arc::new(Kind::Error(error.into())))
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Kind::Panic(message) => write!(f, "panicked: {message}"),
            Kind::Error(error) => {
                write!(f, "{error}")?;
                let mut source = error.source();
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Kind::Panic(message) => f.debug_tuple("Panic").field(message).finish(),
            Kind::Error(error) => f.debug_tuple("Error").field(error).finish(),
        }
    }
}

/// Two crashes are equal when they say the same: same kind, same chain.
impl PartialEq for Crash {
    fn eq(&self, other: &Self) -> bool {
        self.is_panic() == other.is_panic() && self.to_string() == other.to_string()
    }
}

impl Eq for Crash {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn the_chain_is_kept_and_displayed() {
        let crash = Crash::from(Outer(Middle(std::io::Error::other("inner"))));
        assert_eq!(crash.to_string(), "outer: middle: inner");
        assert_eq!(crash.message(), "outer");
        let error = crash.error().unwrap();
        assert!(error.downcast_ref::<Outer>().is_some(), "the error keeps its type");
    }

    #[test]
    fn strings_and_panics() {
        assert_eq!(Crash::from("db down").to_string(), "db down");
        assert_eq!(Crash::from(String::from("db down")), Crash::from("db down"));
        let panic = Crash::panic("boom");
        assert!(panic.is_panic() && panic.error().is_none());
        assert_eq!(panic.to_string(), "panicked: boom");
        assert_eq!(panic.message(), "boom");
        assert_ne!(panic, Crash::from("boom"));
    }
}
