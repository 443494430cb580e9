//! What a `handle_in` answers: [`Reply`] and the types that convert into it.

use serde::Serialize;

use crate::crash::{BoxError, Crash};
use crate::protocol::{IntoPayload, Payload, PayloadError};

/// The answer of a `handle_in` handler: Phoenix's `{:reply, ..}`,
/// `{:noreply, ..}` and `{:stop, ..}`.
///
/// ```
/// use phx_channels_runtime::reply::Reply;
/// use serde_json::json;
///
/// #[derive(serde::Serialize)]
/// struct Saved { id: u64 }
///
/// let ok = Reply::ok(json!({"id": 7}));
/// let typed = Reply::ok(&Saved { id: 7 });
/// let binary = Reply::ok(vec![0u8, 1, 2]);
/// let err = Reply::error(json!({"errors": {"content": ["can't be blank"]}}));
/// let silent = Reply::none();
/// let bye = Reply::ok(json!({})).and_stop();
/// # let _ = (ok, typed, binary, err, silent, bye);
/// ```
#[must_use = "a Reply does nothing unless returned from a handler"]
#[derive(Debug, Clone)]
pub struct Reply {
    pub(crate) status: Option<(Status, Payload)>,
    pub(crate) stop: bool,
}

/// The status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `"ok"`: phoenix.js calls the push's `receive("ok", ..)` hook.
    Ok,
    /// `"error"`: phoenix.js calls the push's `receive("error", ..)` hook.
    Error,
}

impl Status {
    /// The status as it travels.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

impl Reply {
    /// Reply `ok` with `response`, JSON or binary (see [`IntoPayload`]; use
    /// `json!({})` for a bare ok).
    pub fn ok(response: impl IntoPayload) -> Self {
        Self::with_status(Status::Ok, response)
    }

    /// Reply `error` with `response`.
    pub fn error(response: impl IntoPayload) -> Self {
        Self::with_status(Status::Error, response)
    }

    /// Reply with a status chosen at run time.
    pub fn with_status(status: Status, response: impl IntoPayload) -> Self {
        match response.into_payload() {
            Ok(payload) => Reply { status: Some((status, payload)), stop: false },
            Err(error) => {
                tracing::error!(%error, "reply could not be encoded as JSON");
                Reply { status: Some((Status::Error, reason("reply could not be encoded"))), stop: false }
            }
        }
    }

    /// Send no reply (phoenix.js times the push out after its timeout).
    pub fn none() -> Self {
        Reply { status: None, stop: false }
    }

    /// Stop the channel after this reply: the client gets `phx_close` and
    /// does not rejoin. The socket and its other channels are unaffected.
    pub fn and_stop(mut self) -> Self {
        self.stop = true;
        self
    }

    /// Stop the channel without replying.
    pub fn stop() -> Self {
        Reply::none().and_stop()
    }

    /// The reply to a payload that does not fit the handler's type.
    pub fn invalid_payload(error: &PayloadError) -> Self {
        #[derive(Serialize)]
        struct Invalid<'a> {
            reason: &'static str,
            path: &'a str,
            message: &'a str,
        }
        Reply::error(&Invalid { reason: "invalid payload", path: error.path(), message: error.message() })
    }

    /// The reply to an event no handler is declared for.
    pub fn unknown_event() -> Self {
        Reply::error(reason("unknown event"))
    }

    /// The status and response, if this reply sends one.
    pub fn response(&self) -> Option<(Status, &Payload)> {
        self.status.as_ref().map(|(s, p)| (*s, p))
    }

    /// Whether the channel stops after this reply.
    pub fn stops(&self) -> bool {
        self.stop
    }
}

/// `{"reason": reason}`, the shape of every error Phoenix itself sends.
pub(crate) fn reason(reason: &str) -> Payload {
    #[derive(Serialize)]
    struct Reason<'a> {
        reason: &'a str,
    }
    // A struct of one string field always serializes.
    Payload::json(&Reason { reason }).expect("a reason always serializes")
}

/// The outcome of a handler: what a `#[handle_in]` method may return.
///
/// - [`Reply`]: as given.
/// - `()`: no reply.
/// - `Result<R, E>` with `R: IntoReply` and any error `E` that converts
///   into a [`BoxError`] (every `std::error::Error + Send + Sync + 'static`,
///   `anyhow::Error`, `String`): `Ok` as `R`; `Err` crashes the channel like
///   an exception in Phoenix (logged with the error and its sources, the
///   client gets `phx_error` and rejoins).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a reply",
    label = "handlers return a `Reply`, `()` or a `Result<Reply, E>`",
    note = "return `Reply::ok(..)`, `Reply::error(..)` or `Reply::none()`"
)]
pub trait IntoReply {
    /// Converts into a reply, or the crash it stands for.
    fn into_reply(self) -> Result<Reply, Crash>;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Result<Reply, Crash> {
        Ok(self)
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Result<Reply, Crash> {
        Ok(Reply::none())
    }
}

impl<R: IntoReply, E: Into<BoxError>> IntoReply for Result<R, E> {
    fn into_reply(self) -> Result<Reply, Crash> {
        match self {
            Ok(reply) => reply.into_reply(),
            Err(error) => Err(Crash::from(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constructors() {
        let r = Reply::ok(json!({"a": 1}));
        assert_eq!(r.response().map(|(s, p)| (s, p.as_json())), Some((Status::Ok, Some(r#"{"a":1}"#))));
        assert!(!r.stops());
        assert!(Reply::none().response().is_none());
        assert!(Reply::stop().stops());
        assert_eq!(Reply::unknown_event().response().unwrap().1.as_json(), Some(r#"{"reason":"unknown event"}"#));
    }

    #[test]
    fn unencodable_responses_become_errors() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        let r = Reply::ok(&bad);
        assert_eq!(r.response().unwrap().0, Status::Error);
    }

    #[test]
    fn into_reply() {
        assert!(().into_reply().unwrap().response().is_none());
        let ok: Result<Reply, String> = Ok(Reply::ok(json!({})));
        assert!(ok.into_reply().is_ok());
        let err: Result<Reply, &str> = Err("db down");
        assert_eq!(err.into_reply().unwrap_err().to_string(), "db down");
        let io: Result<(), std::io::Error> = Err(std::io::Error::other("disk full"));
        let crash = io.into_reply().unwrap_err();
        assert!(crash.error().unwrap().downcast_ref::<std::io::Error>().is_some(), "not flattened to a string");
    }
}
